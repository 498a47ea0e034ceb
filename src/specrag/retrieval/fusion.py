"""Rank fusion: small pure functions over ranked lists, independent of any searcher.

Both functions return ``[(doc, fused_score), ...]`` best first. Documents are any
hashable ids (the pipeline fuses internal rows). Ties in the fused score are broken by
``tie_key(doc)`` when given (the pipeline passes the internal row, so ties go to the lower
row as inside every searcher), else by first appearance: scanning the lists in order,
each best first.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

Normalization = Literal["minmax", "zscore", "none"]

#: The constant of Cormack et al. (SIGIR 2009); it damps the weight of the very top ranks.
RRF_K = 60.0


def rrf(
    ranked_lists: Sequence[Sequence[Hashable]],
    weights: Sequence[float] | None = None,
    k: float = RRF_K,
    tie_key: Callable[[Hashable], Any] | None = None,
) -> list[tuple[Hashable, float]]:
    """Weighted reciprocal rank fusion: ``score(d) = sum_i w_i / (k + rank_i(d))`` with
    1-based ranks. A document missing from list ``i`` gets nothing from it (its rank there
    is unknown and below the list's end, so its reciprocal rank is below ``1/(k+len)``;
    zero is the usual choice and keeps RRF a function of the lists alone)."""
    weights = _check_weights(weights, len(ranked_lists))
    if k <= 0:
        raise ValueError(f"rrf k must be positive, got {k}")
    fused: dict[Hashable, float] = {}
    for docs, weight in zip(ranked_lists, weights, strict=True):
        seen: set[Hashable] = set()
        for rank, doc in enumerate(docs, start=1):
            if doc in seen:
                raise ValueError(f"document {doc!r} appears twice in one ranked list")
            seen.add(doc)
            fused[doc] = fused.get(doc, 0.0) + weight / (k + rank)
    return _sorted(fused, tie_key)


def normalize(scores: Sequence[float], normalization: Normalization) -> np.ndarray:
    """Scale one list's scores. ``minmax`` maps to [0, 1]; ``zscore`` to mean 0, std 1; a
    constant list carries no ranking information and maps to all zeros. ``none`` keeps
    scores already on one scale (calibrated probabilities)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return values
    if not np.all(np.isfinite(values)):
        raise ValueError("cannot normalize non-finite scores")
    if normalization == "minmax":
        low, high = values.min(), values.max()
        return (values - low) / (high - low) if high > low else np.zeros_like(values)
    if normalization == "zscore":
        return zscore(values)
    if normalization == "none":
        return values
    raise ValueError(f"unknown normalization {normalization!r}; use minmax, zscore or none")


def zscore(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Mean 0, std 1 over the finite scores; -inf (cannot match) stays -inf, the lowest; a
    list with fewer than two distinct finite scores maps them to 0."""
    x = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(x)
    out = np.where(finite, 0.0, -np.inf)
    if finite.sum() >= 2:
        mu, sd = x[finite].mean(), x[finite].std()
        if sd > 0:
            out[finite] = (x[finite] - mu) / sd
    return out


def convex(
    score_lists: Sequence[Sequence[tuple[Hashable, float]] | Mapping[Hashable, float]],
    weights: Sequence[float] | None = None,
    normalization: Normalization = "minmax",
    tie_key: Callable[[Hashable], Any] | None = None,
) -> list[tuple[Hashable, float]]:
    """Convex combination of normalized scores: ``score(d) = sum_i w_i * norm_i(d)`` with
    the weights scaled to sum to 1 (so minmax-fused scores stay in [0, 1]).

    A document missing from list ``i`` gets that list's *minimum normalized score* (0 for
    minmax). Why: a retriever that did not return ``d`` in its top-k scored it at most as
    high as its last hit, so the list's minimum is the best bound we have without scoring
    ``d`` again; it never lifts a missing document above one the retriever did return, and
    for minmax it is the same as the list contributing nothing.

    Vectorized (the default hybrid fuses two lists of 1000 per query): each document gets
    a column index in first-appearance order, each list scatters its normalized scores over
    its floor, and the weighted columns are added list by list, the same additions in the
    same order as summing per document."""
    weights = _check_weights(weights, len(score_lists))
    total = sum(weights)
    weights = [w / total for w in weights]
    column: dict[Hashable, int] = {}
    scattered: list[tuple[np.ndarray, np.ndarray]] = []
    for scores in score_lists:
        pairs = list(scores.items()) if isinstance(scores, Mapping) else list(scores)
        at = np.fromiter(
            (column.setdefault(doc, len(column)) for doc, _ in pairs), np.int64, len(pairs)
        )
        if len(np.unique(at)) != len(at):
            raise ValueError("a document appears twice in one score list")
        scattered.append((at, normalize([s for _, s in pairs], normalization)))
    fused = np.zeros(len(column))
    for (at, norm), w in zip(scattered, weights, strict=True):
        values = np.full(len(column), norm.min() if norm.size else 0.0)
        values[at] = norm
        fused += w * values
    docs = list(column)
    return [(docs[i], float(fused[i])) for i in _best_first(fused, docs, tie_key)]


def _best_first(
    scores: np.ndarray, docs: list[Hashable], tie_key: Callable[[Hashable], Any] | None
) -> list[int]:
    """Indices of ``scores`` best first; ties by ``tie_key(doc)``, else by index (first
    appearance), as ``_sorted`` orders a dict."""
    if tie_key is None:
        return np.argsort(-scores, kind="stable").tolist()
    keys = [tie_key(doc) for doc in docs]
    try:  # numpy infers a signed integer array only when every key is an int64 integer
        key_array = np.array(keys)
    except (ValueError, OverflowError):  # keys numpy cannot hold in one array
        key_array = None
    if key_array is not None and key_array.ndim == 1 and key_array.dtype.kind == "i":
        return np.lexsort((key_array, -scores)).tolist()
    return sorted(range(len(docs)), key=lambda i: (-scores[i], keys[i]))


def _check_weights(weights: Sequence[float] | None, n_lists: int) -> list[float]:
    if weights is None:
        weights = [1.0] * n_lists
    weights = [float(w) for w in weights]
    if len(weights) != n_lists:
        raise ValueError(f"{len(weights)} weights given for {n_lists} lists")
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"fusion weights must be finite and >= 0, got {weights}")
    if n_lists and sum(weights) == 0:
        raise ValueError("fusion weights must not all be zero")
    return weights


def _sorted(
    fused: dict[Hashable, float], tie_key: Callable[[Hashable], Any] | None
) -> list[tuple[Hashable, float]]:
    """Best first; ``fused`` is in first-appearance order, which ``sorted`` keeps on ties
    when no ``tie_key`` is given (it is stable)."""
    if tie_key is None:
        return sorted(fused.items(), key=lambda item: -item[1])
    return sorted(fused.items(), key=lambda item: (-item[1], tie_key(item[0])))
