"""Document reordering by recursive graph bisection (BP; Dhulipala et al., KDD 2016, as
refined by Mackenzie et al., 2019-2021), for block-max pruning.

Block-max bounds are tight only when documents that share terms share blocks; BP puts
them next to each other. The document set is split in two halves and documents are swapped
between the halves to minimise the estimated cost of the term-major postings (the log-gap
cost: a term with ``d1`` of the ``n1`` documents of one half costs ``d1 * log2(n1 / (d1 + 1))``
there); then each half is bisected the same way, down to leaves of ``leaf_size`` documents.

The result is a permutation only: ``perm[i]`` is the corpus row stored as internal row
``i``. Searching translates back (``retrieval/sparse.py``), so callers never see it.
"""

from __future__ import annotations

import numba
import numpy as np

from specrag.indexing.kinds.impact.index import term_major


def bp_order(
    term_ids: np.ndarray,
    doc_ids: np.ndarray,
    n_docs: int,
    n_terms: int,
    *,
    leaf_size: int = 64,
    iterations: int = 20,
    min_df: int = 2,
) -> np.ndarray:
    """The BP permutation (int32 [n_docs]: internal row -> corpus row) of a doc-term graph
    given as (term, doc) pairs, one per posting. Terms with df < ``min_df`` cannot move a
    cost and are ignored. Deterministic for a given input."""
    if n_docs < 1:
        raise ValueError(f"n_docs must be >= 1, got {n_docs}")
    if leaf_size < 1 or iterations < 0:
        raise ValueError("leaf_size must be >= 1 and iterations >= 0")
    term_ids = _as_ids(term_ids)
    doc_ids = _as_ids(doc_ids)
    if len(term_ids) != len(doc_ids):
        raise ValueError("term_ids and doc_ids must have the same length")
    if len(doc_ids) and (doc_ids.min() < 0 or doc_ids.max() >= n_docs):
        raise ValueError(f"doc ids must lie in [0, {n_docs})")
    keep = (np.bincount(term_ids, minlength=n_terms) >= min_df)[term_ids]
    # Doc-major forward index (each doc's terms), by the same counting sort as the postings.
    fwd_offsets, fwd_terms, _ = term_major(
        doc_ids[keep],
        term_ids[keep].astype(np.int32, copy=False),
        np.zeros(int(keep.sum()), np.uint8),
        n_docs,
    )
    order = np.arange(n_docs, dtype=np.int32)
    _bisect_all(fwd_offsets, fwd_terms, n_terms, order, np.int64(leaf_size), np.int64(iterations))
    return order


def _as_ids(ids) -> np.ndarray:
    """Integer ids keep their dtype (an int64 copy costs 8 bytes a posting); others
    become int64."""
    ids = np.asarray(ids)
    return ids if ids.dtype.kind in "iu" else ids.astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _move_gain(d_from, n_from, d_to, n_to):
    """Decrease of the log-gap cost when one document with the term moves between halves."""
    before = d_from * np.log2(n_from / (d_from + 1.0)) + d_to * np.log2(n_to / (d_to + 1.0))
    after = (d_from - 1) * np.log2(n_from / d_from) + (d_to + 1) * np.log2(n_to / (d_to + 2.0))
    return before - after


@numba.njit(cache=True, nogil=True)
def _bisect_all(fwd_offsets, fwd_terms, n_terms, order, leaf_size, iterations):
    n = len(order)
    deg = np.zeros((2, n_terms), dtype=np.int64)
    gain_to = np.zeros((2, n_terms), dtype=np.float64)  # gain of leaving side s, per term
    seen = np.zeros(n_terms, dtype=np.bool_)
    touched = np.empty(n_terms, dtype=np.int64)
    gains = np.empty(n, dtype=np.float64)
    stack_lo = np.empty(128, dtype=np.int64)
    stack_hi = np.empty(128, dtype=np.int64)
    stack_lo[0] = 0
    stack_hi[0] = n
    top = 1
    while top > 0:
        top -= 1
        lo = stack_lo[top]
        hi = stack_hi[top]
        if hi - lo <= leaf_size:
            continue
        mid = lo + (hi - lo) // 2
        n_side = (mid - lo, hi - mid)
        # Degrees of every term in each half, and the terms the segment touches.
        n_touched = 0
        for i in range(lo, hi):
            side = 0 if i < mid else 1
            doc = order[i]
            for p in range(fwd_offsets[doc], fwd_offsets[doc + 1]):
                t = fwd_terms[p]
                if not seen[t]:
                    seen[t] = True
                    touched[n_touched] = t
                    n_touched += 1
                deg[side, t] += 1
        for _ in range(iterations):
            for j in range(n_touched):
                t = touched[j]
                d0 = deg[0, t]
                d1 = deg[1, t]
                gain_to[0, t] = _move_gain(d0, n_side[0], d1, n_side[1]) if d0 > 0 else 0.0
                gain_to[1, t] = _move_gain(d1, n_side[1], d0, n_side[0]) if d1 > 0 else 0.0
            for i in range(lo, hi):
                side = 0 if i < mid else 1
                doc = order[i]
                g = 0.0
                for p in range(fwd_offsets[doc], fwd_offsets[doc + 1]):
                    g += gain_to[side, fwd_terms[p]]
                gains[i] = g
            # Best candidates of each side first (ties by position: deterministic).
            left = lo + np.argsort(-gains[lo:mid], kind="mergesort")
            right = mid + np.argsort(-gains[mid:hi], kind="mergesort")
            left_docs = order[left]
            right_docs = order[right]
            n_swaps = 0
            for i in range(min(len(left), len(right))):
                if gains[left[i]] + gains[right[i]] <= 0.0:
                    break
                a = left_docs[i]
                b = right_docs[i]
                order[left[i]] = b
                order[right[i]] = a
                for p in range(fwd_offsets[a], fwd_offsets[a + 1]):
                    t = fwd_terms[p]
                    deg[0, t] -= 1
                    deg[1, t] += 1
                for p in range(fwd_offsets[b], fwd_offsets[b + 1]):
                    t = fwd_terms[p]
                    deg[1, t] -= 1
                    deg[0, t] += 1
                n_swaps += 1
            if n_swaps == 0:
                break
        for j in range(n_touched):
            t = touched[j]
            deg[0, t] = 0
            deg[1, t] = 0
            seen[t] = False
        # Right half first on the stack, so the left half is bisected first (depth first).
        stack_lo[top] = mid
        stack_hi[top] = hi
        stack_lo[top + 1] = lo
        stack_hi[top + 1] = mid
        top += 2


def apply_order(
    perm: np.ndarray, term_ids: np.ndarray, doc_ids: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(term, corpus row, value) triples -> the same triples over internal rows, in
    increasing internal row order (what ``term_major`` needs for sorted postings)."""
    perm = np.asarray(perm)
    inverse = np.empty(len(perm), dtype=np.int32)
    inverse[perm] = np.arange(len(perm), dtype=np.int32)
    term_ids, values = np.asarray(term_ids), np.asarray(values)
    rows = inverse[np.asarray(doc_ids)]
    starts = np.zeros(len(perm) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(perm)), out=starts[1:])
    out_terms = np.empty_like(term_ids)
    out_rows = np.empty_like(rows)
    out_values = np.empty_like(values)
    _scatter_by_row(term_ids, rows, values, starts, out_terms, out_rows, out_values)
    return out_terms, out_rows, out_values


@numba.njit(cache=True, nogil=True)
def _scatter_by_row(term_ids, rows, values, starts, out_terms, out_rows, out_values):
    """Stable counting sort of the triples by internal row (O(n), no argsort index)."""
    cursor = starts[:-1].copy()
    for i in range(len(rows)):
        r = rows[i]
        p = cursor[r]
        out_terms[p] = term_ids[i]
        out_rows[p] = r
        out_values[p] = values[i]
        cursor[r] = p + 1


#: "auto" reorders from this many documents on. Below it, block-max bounds prune little
#: in any order (SciFact, 5k docs: BMP falls back to one exhaustive pass) and BP would be
#: wasted build time; at 1M documents BP is what makes them prune (docs/benchmarks.md).
AUTO_BP_MIN_DOCS = 50_000


def reorder_triples(
    method: str,
    term_ids: np.ndarray,
    doc_ids: np.ndarray,
    values: np.ndarray,
    n_docs: int,
    n_terms: int,
    *,
    leaf_size: int,
    iterations: int = 20,
    progress=None,
):
    """Doc-major (term, corpus row, value) triples -> (term_ids, internal rows, values,
    perm or None) for a build-time reordering ``method``: "none", "bp", or "auto" (bp from
    AUTO_BP_MIN_DOCS documents on). ``progress(done, total, stage)`` hears when BP starts
    and ends (minutes per million documents)."""
    if method not in ("none", "bp", "auto"):
        raise ValueError(f"reorder must be 'none', 'bp' or 'auto', got {method!r}")
    if method == "none" or (method == "auto" and n_docs < AUTO_BP_MIN_DOCS):
        return term_ids, doc_ids, values, None
    if progress is not None:
        progress(0, n_docs, "reorder: bp")
    perm = bp_order(term_ids, doc_ids, n_docs, n_terms, leaf_size=leaf_size, iterations=iterations)
    if progress is not None:
        progress(n_docs, n_docs, "reorder: bp")
    return (*apply_order(perm, term_ids, doc_ids, values), perm)
