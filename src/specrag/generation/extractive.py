"""The honest no-LLM answer: the passage sentences most similar to the question (MiniLM
embeddings, cosine), each with its citation number. Nothing is generated."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from specrag.generation.prompt import Passage

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if len(s.split()) >= 3]


def extractive_answer(
    question: str,
    passages: Sequence[Passage],
    max_sentences: int = 3,
    encoder: str = "all-MiniLM-L6-v2",
) -> tuple[str, list[int]]:
    """(answer text, 1-based numbers of the cited passages). Sentences are ranked by cosine
    similarity to the question and listed best first, each followed by [n]."""
    from specrag.indexing.encoders.models import load_model

    if max_sentences < 1:
        raise ValueError("max_sentences must be >= 1")
    units = [(n, s) for n, p in enumerate(passages, 1) for s in split_sentences(p.text)]
    if not units:
        return "", []
    model = load_model(encoder)
    emb = model.encode([question] + [s for _, s in units], normalize_embeddings=True)
    sims = emb[1:] @ emb[0]
    best = np.argsort(-sims, kind="stable")[:max_sentences]
    parts = [f"{units[i][1]} [{units[i][0]}]" for i in best]
    cited = sorted({units[i][0] for i in best})
    return " ".join(parts), cited
