"""The reranker interface and what every reranker shares: top-N hits in, the same hits
re-scored and re-ordered out, each keeping its first-stage ``scores`` plus its own."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from specrag.types import Hit


class Reranker(Protocol):
    name: str
    #: Whether ``rerank`` needs ``texts`` (else ``rows`` suffice).
    needs_texts: bool

    def rerank(
        self,
        query: str,
        hits: list[Hit],
        texts: list[str] | None = None,
        rows: np.ndarray | None = None,
        k: int | None = None,
    ) -> list[Hit]: ...


def reorder(
    hits: list[Hit], final: np.ndarray, extra: dict[str, np.ndarray], k: int | None
) -> list[Hit]:
    """New hits sorted by ``final`` (ties keep the first stage's order), top ``k``."""
    order = np.lexsort((np.arange(len(hits)), -np.asarray(final, dtype=np.float64)))
    if k is not None:
        order = order[:k]
    out = []
    for i in order.tolist():
        scores = dict(hits[i].scores)
        scores.update({name: float(v[i]) for name, v in extra.items()})
        out.append(Hit(hits[i].doc_id, float(final[i]), scores))
    return out


def check_lengths(hits, texts, rows) -> None:
    for name, seq in (("texts", texts), ("rows", rows)):
        if seq is not None and len(seq) != len(hits):
            raise ValueError(f"{name} has {len(seq)} entries for {len(hits)} hits")
