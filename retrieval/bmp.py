"""Numba kernels over an impact index: exhaustive term-at-a-time scoring and Block-Max
Pruning (BMP; Mallia, Suel, Tonellotto, SIGIR 2024).

Both kernels take a batch of queries as a CSR (``q_offsets``, ``q_terms``, ``q_weights``:
unique term ids with positive finite weights) and return the top-k per query as
``(rows int32[nq, k], scores float64[nq, k], counts int32[nq])`` in impact units (the
caller multiplies by the index scale), ordered by score descending, then row ascending.

Exactness. Scores accumulate in float64 over the query's terms in the same order in both
kernels, so a document's score is bitwise the same in both. A block's upper bound sums
``weight * block_max`` in that same order; since rounding is monotone, the bound is never
below the score of any document in the block, and safe BMP (``alpha == 1``) returns exactly
the exhaustive top-k, ties included: blocks are visited by bound descending, then block id
ascending, and the search stops at the first block whose bound is below the k-th score, or
equal to it while its first row is above the k-th row (then no later block can enter).

Unlike the authors' Rust ``bmp`` package, every candidate block can be scored (the last
one too), accumulators are float64 (no wrap-around), term and doc ids are int32/int64,
block sizes are unrestricted, and an empty query simply returns no hits.
"""

from __future__ import annotations

import numba
import numpy as np

# ---------------------------------------------------------------------------------------
# Top-k heap: the root is the *worst* kept hit (lower score, or equal score and higher row).


@numba.njit(inline="always")
def _worse(s1, d1, s2, d2):
    return s1 < s2 or (s1 == s2 and d1 > d2)


@numba.njit(cache=True, nogil=True)
def _topk_sift_down(hs, hd, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and _worse(hs[right], hd[right], hs[left], hd[left]):
            child = right
        if _worse(hs[child], hd[child], hs[i], hd[i]):
            hs[i], hs[child] = hs[child], hs[i]
            hd[i], hd[child] = hd[child], hd[i]
            i = child
        else:
            return


@numba.njit(cache=True, nogil=True)
def _topk_push(hs, hd, size, k, s, d):
    """Offer (score, row); returns the new heap size."""
    if size < k:
        i = size
        hs[i] = s
        hd[i] = d
        while i > 0:
            parent = (i - 1) // 2
            if _worse(hs[i], hd[i], hs[parent], hd[parent]):
                hs[i], hs[parent] = hs[parent], hs[i]
                hd[i], hd[parent] = hd[parent], hd[i]
                i = parent
            else:
                break
        return size + 1
    if _worse(hs[0], hd[0], s, d):
        hs[0] = s
        hd[0] = d
        _topk_sift_down(hs, hd, size, 0)
    return size


@numba.njit(inline="always")
def _offer(hs, hd, size, k, s, d, allowed, use_mask, row_key, use_key):
    """Offer row ``d`` with score ``s`` unless the mask excludes it; the heap keys rows by
    corpus row (``row_key[d]`` under a reordering), so ties go to the lower corpus row."""
    if use_mask and not allowed[d]:
        return size
    key = row_key[d] if use_key else d
    if size < k or _worse(hs[0], hd[0], s, key):
        size = _topk_push(hs, hd, size, k, s, key)
    return size


@numba.njit(cache=True, nogil=True)
def _topk_drain(hs, hd, size, out_rows, out_scores):
    """Empty the heap into outputs, best first."""
    n = size
    while size > 0:
        size -= 1
        out_scores[size] = hs[0]
        out_rows[size] = hd[0]
        hs[0] = hs[size]
        hd[0] = hd[size]
        _topk_sift_down(hs, hd, size, 0)
    return n


# ---------------------------------------------------------------------------------------
# Exhaustive


@numba.njit(cache=True, nogil=True)
def _score_all(
    offsets, docs, impacts, n_docs, q_terms, q_weights, q_lo, q_hi, k, allowed, use_mask,
    row_key, use_key, acc, hs, hd,
):  # fmt: skip
    """Exhaustive top-k of one query into the empty heap (hs, hd); returns its size."""
    for j in range(q_lo, q_hi):
        t = q_terms[j]
        w = q_weights[j]
        for p in range(offsets[t], offsets[t + 1]):
            acc[docs[p]] += w * impacts[p]
    size = 0
    n_postings = 0
    for j in range(q_lo, q_hi):
        t = q_terms[j]
        n_postings += offsets[t + 1] - offsets[t]
    if n_postings < n_docs:
        # Select and reset in one pass over the same postings (each doc taken once).
        for j in range(q_lo, q_hi):
            t = q_terms[j]
            for p in range(offsets[t], offsets[t + 1]):
                d = docs[p]
                s = acc[d]
                if s > 0.0:
                    acc[d] = 0.0
                    size = _offer(hs, hd, size, k, s, d, allowed, use_mask, row_key, use_key)
    else:
        # Long postings: one sequential scan of the accumulators is cheaper.
        for d in range(n_docs):
            s = acc[d]
            if s > 0.0:
                acc[d] = 0.0
                size = _offer(hs, hd, size, k, s, d, allowed, use_mask, row_key, use_key)
    return size


@numba.njit(cache=True, nogil=True)
def exhaustive_search(
    offsets, docs, impacts, n_docs, q_offsets, q_terms, q_weights, k, allowed, use_mask,
    row_key, use_key, acc,
):  # fmt: skip
    """Score every posting of every query term (term at a time), then select the top-k.
    ``acc`` (float64, one zero per document) is scratch, left zero again."""
    nq = len(q_offsets) - 1
    out_rows = np.full((nq, k), -1, dtype=np.int32)
    out_scores = np.zeros((nq, k), dtype=np.float64)
    counts = np.zeros(nq, dtype=np.int32)
    hs = np.empty(k, dtype=np.float64)
    hd = np.empty(k, dtype=np.int64)
    for q in range(nq):
        size = _score_all(
            offsets, docs, impacts, n_docs, q_terms, q_weights, q_offsets[q], q_offsets[q + 1],
            k, allowed, use_mask, row_key, use_key, acc, hs, hd,
        )  # fmt: skip
        counts[q] = _topk_drain(hs, hd, size, out_rows[q], out_scores[q])
    return out_rows, out_scores, counts


# ---------------------------------------------------------------------------------------
# Block-Max Pruning


@numba.njit(inline="always")
def _better_block(u1, b1, u2, b2):
    return u1 > u2 or (u1 == u2 and b1 < b2)


@numba.njit(cache=True, nogil=True)
def _block_sift_down(hu, hb, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and _better_block(hu[right], hb[right], hu[left], hb[left]):
            child = right
        if _better_block(hu[child], hb[child], hu[i], hb[i]):
            hu[i], hu[child] = hu[child], hu[i]
            hb[i], hb[child] = hb[child], hb[i]
            i = child
        else:
            return


@numba.njit(cache=True, nogil=True)
def _find_entry(block_ids, lo, hi, b):
    """Index of block ``b`` in the sorted ``block_ids[lo:hi]``, or -1."""
    end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if block_ids[mid] < b:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and block_ids[lo] == b:
        return lo
    return -1


@numba.njit(cache=True, nogil=True)
def block_allowed_counts(allowed, block_size, n_blocks):
    """Allowed rows per block (blocks with none are never visited)."""
    counts = np.zeros(n_blocks, dtype=np.int64)
    for d in range(len(allowed)):
        if allowed[d]:
            counts[d // block_size] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def bmp_search(
    offsets,
    docs,
    impacts,
    block_offsets,
    block_ids,
    block_max,
    block_starts,
    n_docs,
    block_size,
    q_offsets,
    q_terms,
    q_weights,
    k,
    alpha,
    allowed,
    block_allowed,
    use_mask,
    blocks_scored,
    probe_blocks,
    fallback_blocks,
    scratch_acc,
    row_key,
    block_key,
    use_key,
):
    """Block-Max Pruning. ``alpha == 1`` is safe (exact); ``alpha < 1`` stops as soon as
    ``alpha * bound <= k-th score``. ``blocks_scored[q]`` receives the number of blocks
    fully scored for query q (for benchmarks).

    After ``probe_blocks`` blocks have been scored one by one (in bound order, which
    raises the k-th score quickly), every remaining block that the stopping rule would
    still visit is selected at once and scored term at a time over the term-major
    postings: the same set of documents and the same per-document addition order, but
    sequential reads instead of one random access per (term, block). If those blocks
    number ``fallback_blocks`` or more, the query is scored exhaustively instead (the
    heap is refilled from scratch). ``scratch_acc`` (float64, zeros) has one slot per
    document.

    With a document reordering (``use_key``), rows are internal and ``row_key[row]`` is the
    corpus row used for ties and returned; ``block_key[b]`` is the lowest corpus row of
    block b. A block whose bound only ties the k-th score is then skipped rather than
    ending the search (a later block may hold a lower corpus row)."""
    nq = len(q_offsets) - 1
    n_blocks = (n_docs + block_size - 1) // block_size
    out_rows = np.full((nq, k), -1, dtype=np.int32)
    out_scores = np.zeros((nq, k), dtype=np.float64)
    counts = np.zeros(nq, dtype=np.int32)
    ub = np.zeros(n_blocks, dtype=np.float64)
    touched = np.empty(n_blocks, dtype=np.int64)
    hu = np.empty(n_blocks, dtype=np.float64)
    hb = np.empty(n_blocks, dtype=np.int64)
    acc = np.zeros(block_size, dtype=np.float64)
    slots = np.empty(block_size, dtype=np.int64)  # rows of the block touched so far
    hs = np.empty(k, dtype=np.float64)
    hd = np.empty(k, dtype=np.int64)
    selected = np.zeros(n_blocks, dtype=np.bool_)
    sel_list = np.empty(n_blocks, dtype=np.int64)
    safe = alpha >= 1.0
    for q in range(nq):
        q_lo = q_offsets[q]
        q_hi = q_offsets[q + 1]
        # 1. Upper bound of every block the query touches, 2. candidate blocks (with an
        # allowed row) in a max-heap by bound, then block id. Many block entries: add into
        # the dense bound array without branches and scan it; few: track the touched blocks.
        n_entries = 0
        for j in range(q_lo, q_hi):
            t = q_terms[j]
            n_entries += block_offsets[t + 1] - block_offsets[t]
        n_cand = 0
        if n_entries * 4 >= n_blocks:
            for j in range(q_lo, q_hi):
                t = q_terms[j]
                w = q_weights[j]
                for e in range(block_offsets[t], block_offsets[t + 1]):
                    ub[block_ids[e]] += w * block_max[e]
            for b in range(n_blocks):
                u = ub[b]
                if u > 0.0:
                    ub[b] = 0.0
                    if not use_mask or block_allowed[b] > 0:
                        hu[n_cand] = u
                        hb[n_cand] = b
                        n_cand += 1
        else:
            n_touched = 0
            for j in range(q_lo, q_hi):
                t = q_terms[j]
                w = q_weights[j]
                for e in range(block_offsets[t], block_offsets[t + 1]):
                    b = block_ids[e]
                    if ub[b] == 0.0:
                        touched[n_touched] = b
                        n_touched += 1
                    ub[b] += w * block_max[e]
            for i in range(n_touched):
                b = touched[i]
                if not use_mask or block_allowed[b] > 0:
                    hu[n_cand] = ub[b]
                    hb[n_cand] = b
                    n_cand += 1
                ub[b] = 0.0
        for i in range(n_cand // 2 - 1, -1, -1):
            _block_sift_down(hu, hb, n_cand, i)
        # 3. Visit blocks by bound until none can enter the top-k.
        size = 0
        n_scored = 0
        while n_cand > 0:
            u = hu[0]
            b = hb[0]
            n_cand -= 1
            hu[0] = hu[n_cand]
            hb[0] = hb[n_cand]
            _block_sift_down(hu, hb, n_cand, 0)
            if size == k:
                bound = alpha * u
                if bound < hs[0]:
                    break
                if bound == hs[0]:
                    if not safe:
                        break
                    if (block_key[b] if use_key else b * block_size) > hd[0]:
                        if use_key:
                            continue
                        break
                if n_scored >= probe_blocks:
                    # Enough blocks probed for a good k-th score: take every block that can
                    # still enter (same rule) and score them term at a time (sequential reads).
                    # One linear pass over the heap's array: the rule is monotone in heap
                    # order, so testing each block alone selects exactly the popped prefix.
                    selected[b] = True
                    sel_list[0] = b
                    n_sel = 1
                    for i in range(n_cand):
                        bound = alpha * hu[i]
                        if bound < hs[0]:
                            continue
                        if bound == hs[0] and (
                            not safe
                            or (block_key[hb[i]] if use_key else hb[i] * block_size) > hd[0]
                        ):
                            continue
                        selected[hb[i]] = True
                        sel_list[n_sel] = hb[i]
                        n_sel += 1
                    if n_scored + n_sel >= fallback_blocks:
                        # The bounds prune too little: one exhaustive pass is cheaper than
                        # block-restricted scoring (same scores, so the same top-k).
                        for i in range(n_sel):
                            selected[sel_list[i]] = False
                        size = _score_all(
                            offsets, docs, impacts, n_docs, q_terms, q_weights, q_lo, q_hi,
                            k, allowed, use_mask, row_key, use_key, scratch_acc, hs, hd,
                        )  # fmt: skip
                        n_scored = n_blocks
                        break
                    size = _score_selected(
                        offsets, docs, impacts, block_offsets, block_ids, block_starts,
                        q_terms, q_weights, q_lo, q_hi, selected, sel_list, n_sel, block_size,
                        n_docs, scratch_acc, allowed, use_mask, hs, hd, size, k, row_key,
                        use_key,
                    )  # fmt: skip
                    for i in range(n_sel):
                        selected[sel_list[i]] = False
                    n_scored += n_sel
                    break
            first = b * block_size
            n_slots = 0
            for j in range(q_lo, q_hi):
                t = q_terms[j]
                e = _find_entry(block_ids, block_offsets[t], block_offsets[t + 1], b)
                if e < 0:
                    continue
                lo = offsets[t] + block_starts[e]
                hi = (
                    offsets[t] + block_starts[e + 1]
                    if e + 1 < block_offsets[t + 1]
                    else offsets[t + 1]
                )
                w = q_weights[j]
                for p in range(lo, hi):
                    slot = docs[p] - first
                    if acc[slot] == 0.0:
                        slots[n_slots] = slot
                        n_slots += 1
                    acc[slot] += w * impacts[p]
            for i in range(n_slots):
                slot = slots[i]
                s = acc[slot]
                acc[slot] = 0.0
                d = first + slot
                size = _offer(hs, hd, size, k, s, d, allowed, use_mask, row_key, use_key)
            n_scored += 1
        blocks_scored[q] = n_scored
        counts[q] = _topk_drain(hs, hd, size, out_rows[q], out_scores[q])
    return out_rows, out_scores, counts


@numba.njit(cache=True, nogil=True)
def _score_selected(
    offsets, docs, impacts, block_offsets, block_ids, block_starts, q_terms, q_weights,
    q_lo, q_hi, selected, sel_list, n_sel, block_size, n_docs, acc, allowed, use_mask,
    hs, hd, size, k, row_key, use_key,
):  # fmt: skip
    """Term-at-a-time scoring of the postings that fall in ``selected`` blocks, then one
    sequential scan of those blocks' rows (no data-dependent branch per posting). A term
    with many more block entries than there are selected blocks finds them by binary
    search (``sel_list`` is sorted first) instead of reading every entry."""
    sel_list[:n_sel].sort()
    for j in range(q_lo, q_hi):
        t = q_terms[j]
        w = q_weights[j]
        e_lo = block_offsets[t]
        e_hi = block_offsets[t + 1]
        if n_sel * 16 < e_hi - e_lo:
            for i in range(n_sel):
                b = sel_list[i]
                lo, hi = e_lo, e_hi  # first entry with block id >= b
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if block_ids[mid] < b:
                        lo = mid + 1
                    else:
                        hi = mid
                e_lo = lo
                if lo == e_hi:
                    break
                if block_ids[lo] == b:
                    p_lo = offsets[t] + block_starts[lo]
                    p_hi = offsets[t] + block_starts[lo + 1] if lo + 1 < e_hi else offsets[t + 1]
                    for p in range(p_lo, p_hi):
                        acc[docs[p]] += w * impacts[p]
            continue
        for e in range(e_lo, e_hi):
            if not selected[block_ids[e]]:
                continue
            lo = offsets[t] + block_starts[e]
            hi = offsets[t] + block_starts[e + 1] if e + 1 < e_hi else offsets[t + 1]
            for p in range(lo, hi):
                acc[docs[p]] += w * impacts[p]
    for i in range(n_sel):
        first = sel_list[i] * block_size
        for d in range(first, min(first + block_size, n_docs)):
            s = acc[d]
            if s > 0.0:
                acc[d] = 0.0
                size = _offer(hs, hd, size, k, s, d, allowed, use_mask, row_key, use_key)
    return size
