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


def extractive_sentences(
    question: str,
    passages: Sequence[Passage],
    max_sentences: int = 3,
    encoder: str = "all-MiniLM-L6-v2",
) -> list[tuple[int, str]]:
    """(1-based passage number, sentence) for the passage sentences most similar to the
    question (cosine of MiniLM embeddings), best first. A list, so that the answer can be
    streamed one sentence at a time."""
    from specrag.indexing.encoders.models import load_model

    if max_sentences < 1:
        raise ValueError("max_sentences must be >= 1")
    units = [(n, s) for n, p in enumerate(passages, 1) for s in split_sentences(p.text)]
    if not units:
        return []
    model = load_model(encoder)
    emb = model.encode([question] + [s for _, s in units], normalize_embeddings=True)
    sims = emb[1:] @ emb[0]
    best = np.argsort(-sims, kind="stable")[:max_sentences]
    return [units[i] for i in best]


def cite(number: int, sentence: str) -> str:
    """One answer sentence with its citation marker, as the answer text shows it."""
    return f"{sentence} [{number}]"


def extractive_answer(
    question: str,
    passages: Sequence[Passage],
    max_sentences: int = 3,
    encoder: str = "all-MiniLM-L6-v2",
) -> tuple[str, list[int]]:
    """(answer text, 1-based numbers of the cited passages). Sentences are ranked by cosine
    similarity to the question and listed best first, each followed by [n]."""
    units = extractive_sentences(question, passages, max_sentences, encoder)
    return " ".join(cite(n, s) for n, s in units), sorted({n for n, _ in units})
