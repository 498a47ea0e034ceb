"""RAG reader tasks on SciFact, shared by train_reader_lm.py and bench_generation.py.

Every example is a real RAG prompt (generation/prompt.py's format) and an answer:
- ``quote``: the answer quotes a span of one passage in the prompt, starting at a sentence
  named by its first words in the question (scenario A);
- ``continue``: the question gives a few words of a *memorized* corpus document and the
  answer continues it; the document is not among the passages (scenario B) or is there
  but truncated, so the answer first quotes then runs past the prompt (scenario C).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from specrag.generation.prompt import Passage, build_prompt

MAX_PASSAGE_TOKENS = 64
N_PASSAGES = 3
MAX_PROMPT_TOKENS = 360


@dataclass
class Example:
    kind: str  # quote | continue-absent | continue-truncated
    prompt_ids: list[int]
    answer_text: str
    doc_ids: list[str]


def load_corpus(data_dir: Path) -> list[dict]:
    docs = []
    with open(Path(data_dir) / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            if len(d["text"].split()) >= 80:
                docs.append(d)
    return docs


def memorized_docs(docs: list[dict], n: int) -> list[dict]:
    """A fixed subset (the first ``n`` long documents) the reader learns by heart."""
    return docs[:n]


def _sentences(text: str) -> list[tuple[int, str]]:
    out, start = [], 0
    for m in re.finditer(r"(?<=[.!?])\s+(?=[A-Z])", text):
        out.append((start, text[start : m.start()]))
        start = m.end()
    out.append((start, text[start:]))
    return [(s, t) for s, t in out if len(t.split()) >= 6]


def _cut_words(text: str, n_words: int) -> str:
    return " ".join(text.split()[:n_words])


def quote_example(
    tokenizer,
    docs: list[dict],
    rng: random.Random,
    answer_words: int = 32,
    quoted_from: list[dict] | None = None,
) -> Example | None:
    """``quoted_from``: draw the quoted passage from these documents (e.g. the memorized
    ones, which a small reader quotes reliably), the other passages from ``docs``."""
    picked = rng.sample(docs, N_PASSAGES)
    target = rng.randrange(N_PASSAGES)
    if quoted_from:
        picked[target] = rng.choice(quoted_from)
    passages = [Passage(d["_id"], d["text"], d["title"]) for d in picked]
    probe = build_prompt(tokenizer, "x", passages, MAX_PROMPT_TOKENS, MAX_PASSAGE_TOKENS)
    if len(probe.passages) <= target:
        return None
    shown = probe.passages[target].text
    sents = [(s, t) for s, t in _sentences(shown) if len(shown[s:].split()) >= 12]
    if not sents:
        return None
    start, sent = rng.choice(sents)
    head = _cut_words(sent, 4)
    answer = f" [{target + 1}] " + _cut_words(shown[start:], answer_words)
    question = f"What does [{target + 1}] say about {head}?"
    built = build_prompt(tokenizer, question, passages, MAX_PROMPT_TOKENS, MAX_PASSAGE_TOKENS)
    return Example("quote", built.ids, answer, [d["_id"] for d in picked])


def _memorized_span(
    memorized: list[dict], rng: random.Random, answer_words: int, prefix_words: int
) -> tuple[dict, str, str]:
    """A memorized document, a ``prefix_words`` prefix drawn in it and the
    ``answer_words`` that follow (with a leading space): a continue question's parts."""
    doc = rng.choice(memorized)
    words = doc["text"].split()
    start = rng.randrange(0, max(1, len(words) - prefix_words - answer_words))
    prefix = " ".join(words[start : start + prefix_words])
    answer = " " + " ".join(words[start + prefix_words : start + prefix_words + answer_words])
    return doc, prefix, answer


def continue_example(
    tokenizer,
    docs: list[dict],
    memorized: list[dict],
    rng: random.Random,
    truncated: bool,
    answer_words: int = 32,
    prefix_words: int = 8,
) -> Example:
    doc, prefix, answer = _memorized_span(memorized, rng, answer_words, prefix_words)
    others = [
        d for d in rng.sample(docs, N_PASSAGES + 2) if d["_id"] not in {m["_id"] for m in memorized}
    ]
    picked = others[:N_PASSAGES]
    if truncated:
        picked[rng.randrange(N_PASSAGES)] = doc
    passages = [Passage(d["_id"], d["text"], d["title"]) for d in picked]
    question = f"Continue: {prefix}"
    built = build_prompt(tokenizer, question, passages, MAX_PROMPT_TOKENS, MAX_PASSAGE_TOKENS)
    kind = "continue-truncated" if truncated else "continue-absent"
    return Example(kind, built.ids, answer, [d["_id"] for d in picked])


def recite_example(
    tokenizer,
    memorized: list[dict],
    rng: random.Random,
    answer_words: int = 32,
    prefix_words: int = 8,
) -> Example:
    """A ``continue`` question with no passages: the same answer as continue-absent for a
    ~7x shorter sequence, so memorization training is cheaper per answer token. Training
    shifts its positions to where a full prompt's answer sits (position ids are absolute)."""
    doc, prefix, answer = _memorized_span(memorized, rng, answer_words, prefix_words)
    built = build_prompt(
        tokenizer, f"Continue: {prefix}", [], MAX_PROMPT_TOKENS, MAX_PASSAGE_TOKENS
    )
    return Example("recite", built.ids, answer, [doc["_id"]])


def sample_example(
    tokenizer, docs, memorized, rng: random.Random, p_continue: float = 0.4
) -> Example:
    while True:
        if rng.random() < p_continue:
            return continue_example(tokenizer, docs, memorized, rng, truncated=rng.random() < 0.5)
        ex = quote_example(
            tokenizer, docs, rng, quoted_from=memorized if rng.random() < 0.5 else None
        )
        if ex is not None:
            return ex
