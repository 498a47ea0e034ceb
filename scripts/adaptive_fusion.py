"""Query-adaptive fusion rules that need no tuned weights (issue #19), for the
leave-one-collection-out benchmark (``bench_relevance.py``).

Each rule fuses one query's lists ``[(row, score), ...]`` (best first, one per retriever)
into ``[(row, fused), ...]`` best first, ties to the lower row as the pipeline breaks them.
Every rule ends in ``fusion.convex`` (``normalization="none"`` over values normalized
here), so a document missing from a list gets that list's lowest value, the pipeline's
convention. They live here, not in ``retrieval/fusion.py``, until one wins out of sample
and enters the pipeline.

- ``minmax@n`` / ``zscore@n``: min-max or z-score with the statistics of the top ``n``
  only (the head where relevant documents are), applied to every candidate: a long tail
  of near-zero scores then no longer sets the scale.
- ``combmnz``: min-max sum times the number of lists that returned the document (Fox and
  Shaw 1994).
- ``gap`` weights: each retriever's weight for this query is how far its top score
  stands out of its own top ``k``, ``(s_1 - mean(s_1..s_k)) / std(s_1..s_k)`` (scale-free;
  a flat head means the retriever cannot tell its candidates apart).
- ``topz`` weights: the top score's z-score within the retriever's whole list.
- ``rank-biased``: half min-max, half the reciprocal rank scaled to 1 at rank 1
  (``61 / (60 + rank)``), per list, then the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from specrag.retrieval.fusion import RRF_K, convex

Pairs = Sequence[tuple[int, float]]


def head_minmax(scores: np.ndarray, n: int) -> np.ndarray:
    """Min-max with the min and max of the top ``n`` (scores best first): 1 at the top, 0
    at rank ``n``, below 0 further down."""
    head = scores[:n]
    if head.size == 0:  # a retriever that found nothing (no query term in the index)
        return scores.copy()
    low, high = head.min(), head.max()
    return (scores - low) / (high - low) if high > low else np.zeros_like(scores)


def head_zscore(scores: np.ndarray, n: int) -> np.ndarray:
    """z-score with the mean and standard deviation of the top ``n``."""
    head = scores[:n]
    sd = head.std() if head.size else 0.0
    return (scores - head.mean()) / sd if sd > 0 else np.zeros_like(scores)


def gap_weight(scores: np.ndarray, k: int = 10) -> float:
    """How far the top score stands out of the top ``k``, in their standard deviations."""
    head = scores[:k]
    sd = head.std() if head.size else 0.0
    return float((head[0] - head.mean()) / sd) if sd > 0 else 0.0


def topz_weight(scores: np.ndarray) -> float:
    """The top score's z-score within the whole list."""
    sd = scores.std() if scores.size else 0.0
    return float((scores[0] - scores.mean()) / sd) if sd > 0 else 0.0


def _normalized(scores: np.ndarray, normalization: str, head: int | None) -> np.ndarray:
    n = head or len(scores)
    if normalization == "minmax":
        return head_minmax(scores, n)
    if normalization == "zscore":
        return head_zscore(scores, n)
    raise ValueError(f"unknown normalization {normalization!r}")


def fuse(
    lists: Sequence[Pairs],
    normalization: str = "minmax",
    head: int | None = None,
    weighting: str = "equal",
    gap_k: int = 10,
) -> list[tuple[int, float]]:
    """Convex fusion of ``lists`` normalized over their top ``head`` (all when None), with
    weights ``equal``, ``gap`` (:func:`gap_weight`) or ``topz`` (:func:`topz_weight`);
    equal weights when every retriever's weight is 0 (all flat)."""
    values = [np.array([s for _, s in pairs], dtype=np.float64) for pairs in lists]
    if weighting == "equal":
        weights = [1.0] * len(lists)
    elif weighting == "gap":
        weights = [max(gap_weight(v, gap_k), 0.0) for v in values]
    elif weighting == "topz":
        weights = [max(topz_weight(v), 0.0) for v in values]
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    if sum(weights) == 0:
        weights = [1.0] * len(lists)
    normalized = [
        [(row, float(x)) for (row, _), x in zip(pairs, _normalized(v, normalization, head), strict=True)]
        for pairs, v in zip(lists, values, strict=True)
    ]  # fmt: skip
    return convex(normalized, weights, "none", tie_key=int)


def combmnz(lists: Sequence[Pairs]) -> list[tuple[int, float]]:
    """CombMNZ: the sum of min-max scores times the number of lists holding the document."""
    count: dict[int, int] = {}
    for pairs in lists:
        for row, _ in pairs:
            count[row] = count.get(row, 0) + 1
    summed = convex(lists, None, "minmax", tie_key=int)  # mean = sum / len(lists)
    return sorted(((row, s * count[row]) for row, s in summed), key=lambda x: (-x[1], x[0]))


def rank_biased(lists: Sequence[Pairs], k: float = RRF_K) -> list[tuple[int, float]]:
    """Per list, half its min-max score and half ``(k + 1) / (k + rank)``; then the mean."""
    blended = []
    for pairs in lists:
        values = head_minmax(np.array([s for _, s in pairs], dtype=np.float64), len(pairs))
        blended.append([
            (row, 0.5 * float(x) + 0.5 * (k + 1) / (k + rank))
            for rank, ((row, _), x) in enumerate(zip(pairs, values, strict=True), start=1)
        ])  # fmt: skip
    return convex(blended, None, "none", tie_key=int)
