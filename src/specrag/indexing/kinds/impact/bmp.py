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
equal to it while its first row is above the k-th row (then no later block can enter). A
term stored with dense block maxima (impact_index.py) adds ``weight * 0`` to the blocks it
is absent from, which changes no bound.

Where the time goes (1M SPLADE-like documents, ~23 query terms, queries run in sequence,
docs/benchmarks.md): 0.17 of 0.57 ms in the bound pass (dense rows vectorized, sparse
entries one by one plus the postings table), 0.08 in banding and heaping, the rest in
scoring the few hundred admitted blocks, whose postings are prefetched one block ahead
(retrieval/prefetch.py).

Unlike the authors' Rust ``bmp`` package, every candidate block can be scored (the last
one too), accumulators are float64 (no wrap-around), term and doc ids are int32/int64,
block sizes go up to 65,536, and an empty query simply returns no hits.
"""

from __future__ import annotations

import numba
import numpy as np

from specrag.indexing.kinds.impact.index import COUNT_BITS, POSTING_BITS
from specrag.indexing.kinds.impact.prefetch import prefetch, prefetch2

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
def _offer(hs, hd, size, k, s, d, row_key, use_key):
    """Offer row ``d`` with score ``s``; the heap keys rows by corpus row (``row_key[d]``
    under a reordering), so ties go to the lower corpus row.

    Callers test ``size < k or s >= hs[0]``, and the mask, before calling: most offers
    fail them, and the call itself, even inlined, costs ~15 ns (numba reference-counts its
    array arguments), which made the scans that offer every document ~10x slower (and,
    under a mask that keeps few rows, the heap fills late, so the score test alone let
    nearly every matched document through: the exhaustive pass ran 10x slower at 0.5%)."""
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

_SMALLEST_SCORE = np.nextafter(0.0, 1.0)  # a matched document scores at least this


@numba.njit(cache=True, nogil=True)
def _score_all(
    offsets, postings, doc_bits, n_docs, q_terms, q_weights, q_lo, q_hi, k, allowed, use_mask,
    row_key, use_key, acc, hs, hd,
):  # fmt: skip
    """Exhaustive top-k of one query into the empty heap (hs, hd); returns its size."""
    doc_mask = (np.int64(1) << doc_bits) - 1
    for j in range(q_lo, q_hi):
        t = q_terms[j]
        w = q_weights[j]
        for p in range(offsets[t], offsets[t + 1]):
            x = np.int64(postings[p])
            acc[x & doc_mask] += w * (x >> doc_bits)
    size = 0
    n_postings = 0
    for j in range(q_lo, q_hi):
        t = q_terms[j]
        n_postings += offsets[t + 1] - offsets[t]
    # Select and reset: one branch per document, rarely taken once the heap is full
    # (a reset or unmatched slot holds 0.0, below any score). A branch on "matched" was
    # unpredictable and made the scan ~4x slower.
    least = _SMALLEST_SCORE
    if n_postings < n_docs:
        # Over the same postings (a document seen again holds 0.0 by then).
        for j in range(q_lo, q_hi):
            t = q_terms[j]
            for p in range(offsets[t], offsets[t + 1]):
                d = np.int64(postings[p]) & doc_mask
                s = acc[d]
                acc[d] = 0.0
                if s >= least and (not use_mask or allowed[d]):
                    size = _offer(hs, hd, size, k, s, d, row_key, use_key)
                    least = hs[0] if size == k else _SMALLEST_SCORE
    else:
        # Long postings: one sequential scan of the accumulators is cheaper.
        for d in range(n_docs):
            s = acc[d]
            acc[d] = 0.0
            if s >= least and (not use_mask or allowed[d]):
                size = _offer(hs, hd, size, k, s, d, row_key, use_key)
                least = hs[0] if size == k else _SMALLEST_SCORE
    return size


@numba.njit(cache=True, nogil=True)
def exhaustive_search(
    offsets, postings, doc_bits, n_docs, q_offsets, q_terms, q_weights, k, allowed, use_mask,
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
            offsets, postings, doc_bits, n_docs, q_terms, q_weights, q_offsets[q],
            q_offsets[q + 1], k, allowed, use_mask, row_key, use_key, acc, hs, hd,
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


#: Candidate blocks are heaped in bands: bounds >= BAND * (the highest), then the next
#: band down, until MIN_BAND * highest, then all the rest.
BAND = 0.5
MIN_BAND = 1 / 64

# A query's (term, block) -> postings table for its *sparse* terms (impact_index.py):
# ``ranges[j, b]`` is the index's ``block_postings`` word of query term j in block b (first
# posting | count << POSTING_BITS) with a stamp above it naming the query that wrote it.
# The bound pass reads every block entry of the query's terms anyway, so it copies the
# word into the table; scoring a block then costs one table read per term instead of a
# binary search in each term's block list. Stale entries of earlier queries are told apart
# by their stamp, so the table is only cleared when the stamps run out (every MAX_STAMP
# queries). Dense terms need no table: their postings start is indexed by block.
STAMP_SHIFT = POSTING_BITS + COUNT_BITS
MAX_STAMP = (1 << (63 - STAMP_SHIFT)) - 1
_FIRST_MASK = (1 << POSTING_BITS) - 1
_COUNT_MASK = (1 << COUNT_BITS) - 1


@numba.njit(inline="always")
def _term_range(j, t, b, q_lo, offsets, ranges, stamp_id, dense_slot, dense_starts):
    """Postings [lo, hi) of query term j (term t) in block b."""
    slot = dense_slot[t]
    if slot >= 0:
        return offsets[t] + dense_starts[slot, b], offsets[t] + dense_starts[slot, b + 1]
    v = ranges[j - q_lo, b]
    if (v >> STAMP_SHIFT) != stamp_id:
        return 0, 0
    lo = v & _FIRST_MASK
    return lo, lo + ((v >> POSTING_BITS) & _COUNT_MASK)


@numba.njit(cache=True, nogil=True)
def bmp_search(
    offsets,
    postings,
    doc_bits,
    block_offsets,
    block_ids,
    block_max,
    block_postings,
    dense_slot,
    dense_max,
    dense_starts,
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
    paths,
    probe_blocks,
    fallback_blocks,
    early_blocks,
    early_fallback_blocks,
    term_block_cost,
    blocks_per_hit,
    n_allowed,
    allowed_blocks,
    scratch_acc,
    ranges,
    stamp_state,
    row_key,
    block_key,
    use_key,
):
    """Block-Max Pruning. ``alpha == 1`` is safe (exact); ``alpha < 1`` stops as soon as
    ``alpha * bound <= k-th score``. ``blocks_scored[q]`` receives the number of blocks
    fully scored for query q (for benchmarks), ``paths[q]`` the path it took (``PATH_*``).

    Before its bound pass, a query whose expected BMP work (``_expected_bmp_cost``, with
    ``blocks_per_hit``; 0: no such check) is at least its postings is scored exhaustively
    at once: under a mask keeping ``n_allowed`` rows in ``allowed_blocks`` blocks, bounds
    over all rows prune little, and the probe below would only fall back after work the
    exhaustive pass does not need.

    Blocks are scored one at a time in bound order; while one is scored, the postings of
    the next and the table entries of the two after it are prefetched. Sparse terms are
    found through the query's ``ranges`` table (int64, a row per term of the longest
    query, a column per block; zeros or left by an earlier call whose last stamp is
    ``stamp_state[0]``). After ``probe_blocks`` blocks, when the blocks the stopping rule
    could still visit (with the k-th score reached so far, so a superset) number
    ``fallback_blocks`` or more, or cost more than an exhaustive pass by the model
    ``blocks * query terms * term_block_cost >= the query's postings`` (0: no model), the
    query is scored exhaustively instead (same scores, so the same top-k): bounds that
    prune that little make block-by-block scoring dearer than one pass. An earlier check
    after ``early_blocks`` blocks falls back when the heaped band alone still holds
    ``early_fallback_blocks`` admitted blocks: where bounds prune nothing, it saves
    scoring the rest of the probe. ``scratch_acc`` (float64, zeros) has one slot
    per document.

    With a document reordering (``use_key``), rows are internal and ``row_key[row]`` is the
    corpus row used for ties and returned; ``block_key[b]`` is the lowest corpus row of
    block b. A block whose bound only ties the k-th score is then skipped rather than
    ending the search (a later block may hold a lower corpus row)."""
    nq = len(q_offsets) - 1
    n_blocks = (n_docs + block_size - 1) // block_size
    doc_mask = (np.int64(1) << doc_bits) - 1
    out_rows = np.full((nq, k), -1, dtype=np.int32)
    out_scores = np.zeros((nq, k), dtype=np.float64)
    counts = np.zeros(nq, dtype=np.int32)
    ub = np.zeros(n_blocks, dtype=np.float64)
    touched = np.empty(n_blocks, dtype=np.int64)
    hu = np.empty(n_blocks, dtype=np.float64)
    hb = np.empty(n_blocks, dtype=np.int64)
    acc = np.zeros(block_size, dtype=np.float64)
    hs = np.empty(k, dtype=np.float64)
    hd = np.empty(k, dtype=np.int64)
    # Postings runs [lo, hi) per query term of up to two blocks, found while prefetching
    # the next block and reused when it is scored.
    max_terms = 0
    for q in range(nq):
        max_terms = max(max_terms, q_offsets[q + 1] - q_offsets[q])
    run_lo = np.empty((2, max_terms), dtype=np.int64)
    run_hi = np.empty((2, max_terms), dtype=np.int64)
    run_block = np.full(2, -1, dtype=np.int64)
    safe = alpha >= 1.0
    for q in range(nq):
        q_lo = q_offsets[q]
        q_hi = q_offsets[q + 1]
        stamp_id = stamp_state[0] + 1
        if stamp_id > MAX_STAMP:
            ranges[:, :] = 0
            stamp_id = 1
        stamp_state[0] = stamp_id
        stamp = np.int64(stamp_id) << STAMP_SHIFT
        # 1. Upper bound of every block the query touches (in query term order, as the
        # document scores are summed), and the ranges table of its sparse terms. A dense
        # term or many block entries: later passes scan the dense bound array; else only
        # the touched blocks.
        n_entries = 0
        n_postings = 0
        n_dense = 0
        for j in range(q_lo, q_hi):
            t = q_terms[j]
            n_entries += block_offsets[t + 1] - block_offsets[t]
            n_postings += offsets[t + 1] - offsets[t]
            n_dense += dense_slot[t] >= 0
        if blocks_per_hit > 0.0 and n_postings <= _expected_bmp_cost(
            n_entries, n_dense, n_blocks, q_hi - q_lo, k, n_docs, n_allowed, allowed_blocks,
            blocks_per_hit, term_block_cost,
        ):  # fmt: skip
            size = _score_all(
                offsets, postings, doc_bits, n_docs, q_terms, q_weights, q_lo, q_hi, k,
                allowed, use_mask, row_key, use_key, scratch_acc, hs, hd,
            )  # fmt: skip
            blocks_scored[q] = n_blocks
            paths[q] = PATH_UP_FRONT
            counts[q] = _topk_drain(hs, hd, size, out_rows[q], out_scores[q])
            continue
        dense = n_dense > 0 or n_entries * 4 >= n_blocks
        # The exhaustive fallback pays off once the blocks left cost more to score, one
        # (term, block) run at a time, than a pass over all the query's postings.
        q_fallback = fallback_blocks
        if term_block_cost > 0.0 and q_hi > q_lo:
            q_fallback = min(
                q_fallback, int(np.ceil(n_postings / (term_block_cost * (q_hi - q_lo))))
            )
        n_touched = 0
        for j in range(q_lo, q_hi):
            t = q_terms[j]
            w = q_weights[j]
            slot = dense_slot[t]
            if slot >= 0:
                row_max = dense_max[slot]
                for b in range(n_blocks):
                    ub[b] += w * row_max[b]
                continue
            row = ranges[j - q_lo]
            for e in range(block_offsets[t], block_offsets[t + 1]):
                b = block_ids[e]
                if not dense and ub[b] == 0.0:
                    touched[n_touched] = b
                    n_touched += 1
                ub[b] += w * block_max[e]
                row[b] = stamp | block_postings[e]
        # 2. Candidate blocks (with an allowed row) enter the max-heap (by bound, then
        # block id) in bands of bound, highest first: the search usually stops within the
        # first band, so most blocks are never heaped. Blocks not yet heaped keep their
        # bound in ``ub``; everything in a band is below every bound heaped before it, so
        # the visiting order is the same as one heap of all blocks.
        n_walk = n_blocks if dense else n_touched
        if dense:
            top = _max_of(ub)
        else:
            top = 0.0
            for i in range(n_touched):
                top = max(top, ub[touched[i]])
        cut = top * BAND
        n_cand = _heap_band(ub, cut, n_walk, dense, touched, use_mask, block_allowed, hu, hb)
        # 3. Visit blocks by bound until none can enter the top-k.
        size = 0
        n_scored = 0
        fell_back = False
        run_block[:] = -1
        while True:
            if n_cand == 0:
                # Next band, unless no block below ``cut`` can enter the top-k any more.
                if cut == 0.0 or (size == k and alpha * cut <= hs[0]):
                    break
                cut = cut * BAND if cut > top * MIN_BAND else 0.0
                n_cand = _heap_band(
                    ub, cut, n_walk, dense, touched, use_mask, block_allowed, hu, hb
                )
                continue
            u = hu[0]
            b = hb[0]
            n_cand -= 1
            hu[0] = hu[n_cand]
            hb[0] = hb[n_cand]
            _block_sift_down(hu, hb, n_cand, 0)
            slot_b = 0 if run_block[0] == b else (1 if run_block[1] == b else -1)
            if n_cand > 0:
                slot_next = 1 - slot_b if slot_b >= 0 else 0
                run_block[slot_next] = hb[0]
                _prefetch_next_blocks(
                    hb, n_cand, q_lo, q_hi, q_terms, offsets, postings, ranges, stamp_id,
                    dense_slot, dense_starts, run_lo[slot_next], run_hi[slot_next],
                )  # fmt: skip
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
            # (The early check counts only the heaped band, all of it still admitted while
            # its lower edge is above the k-th score: O(1), where counting every block
            # cost ~35 us a query, more than the check ever saved on pruning corpora.)
            early = (
                n_scored == early_blocks
                and size == k
                and alpha * cut > hs[0]
                and n_scored + 1 + n_cand >= early_fallback_blocks
            )
            if early or n_scored == probe_blocks and n_scored + 1 + _would_visit(
                hu, hb, n_cand, ub, n_walk, dense, touched, alpha * cut <= hs[0], alpha, safe,
                hs, hd, size, k, block_size, block_key, use_key, use_mask, block_allowed,
            ) >= q_fallback:  # fmt: skip
                size = _score_all(
                    offsets, postings, doc_bits, n_docs, q_terms, q_weights, q_lo, q_hi,
                    k, allowed, use_mask, row_key, use_key, scratch_acc, hs, hd,
                )  # fmt: skip
                n_scored = n_blocks
                fell_back = True
                break
            # Score block b: its postings of every query term, into block-local slots. With
            # the heap full, after a third of the terms: if no document's partial score
            # plus the bound of the remaining terms reaches the k-th score, the block is
            # dropped (most admitted blocks hold no top-k document; measured: 85% can stop
            # there, skipping half their postings). The bound of the terms seen is summed
            # exactly as the block's bound was (same terms, order and maxima).
            first = b * block_size
            n_rows = min(block_size, n_docs - first)
            n_q = q_hi - q_lo
            check_at = q_lo + (n_q + 2) // 3 if size == k and n_q >= 3 else q_hi
            seen_bound = 0.0
            dropped = False
            for j in range(q_lo, q_hi):
                if j == check_at and _block_cannot_enter(acc, n_rows, seen_bound, u, n_q, hs[0]):
                    dropped = True
                    break
                if slot_b >= 0:
                    lo = run_lo[slot_b, j - q_lo]
                    hi = run_hi[slot_b, j - q_lo]
                else:
                    lo, hi = _term_range(
                        j, q_terms[j], b, q_lo, offsets, ranges, stamp_id, dense_slot,
                        dense_starts,
                    )  # fmt: skip
                w = q_weights[j]
                if j < check_at:
                    top_impact = 0
                    for p in range(lo, hi):
                        x = np.int64(postings[p])
                        impact = x >> doc_bits
                        acc[(x & doc_mask) - first] += w * impact
                        top_impact = max(top_impact, impact)
                    seen_bound += w * top_impact
                else:
                    for p in range(lo, hi):
                        x = np.int64(postings[p])
                        acc[(x & doc_mask) - first] += w * (x >> doc_bits)
            if dropped:
                acc[:n_rows] = 0.0
                n_scored += 1
                continue
            # Offer the block's documents: one branch each, rarely taken once the heap is
            # full (unmatched slots hold 0.0, below any k-th score).
            least = hs[0] if size == k else _SMALLEST_SCORE
            for i in range(n_rows):
                s = acc[i]
                acc[i] = 0.0
                if s >= least and (not use_mask or allowed[first + i]):
                    size = _offer(hs, hd, size, k, s, first + i, row_key, use_key)
                    least = hs[0] if size == k else _SMALLEST_SCORE
            n_scored += 1
        if dense:  # bounds of the blocks never heaped
            ub[:] = 0.0
        else:
            for i in range(n_touched):
                ub[touched[i]] = 0.0
        blocks_scored[q] = n_scored
        paths[q] = PATH_PROBE if fell_back else PATH_BMP
        counts[q] = _topk_drain(hs, hd, size, out_rows[q], out_scores[q])
    return out_rows, out_scores, counts


#: ``paths`` of ``bmp_search``: blocks scored by bound; exhaustive after the probe or the
#: early check; exhaustive up front, before any bound was computed.
PATH_BMP, PATH_PROBE, PATH_UP_FRONT = 0, 1, 2


@numba.njit(inline="always")
def _expected_bmp_cost(
    n_entries, n_dense, n_blocks, n_terms, k, n_docs, n_allowed, allowed_blocks,
    blocks_per_hit, term_block_cost,
):  # fmt: skip
    """A query's expected BMP work, in postings of the exhaustive pass (which costs its
    postings). The bound pass reads each (term, block) pair once (a dense term's row has
    every block). Then BMP scores the blocks whose bound beats the k-th allowed score:
    with a share f of the rows allowed, that score ranks about k / f overall, and bounds
    over all rows see no mask, so about ``blocks_per_hit`` blocks per hit of the
    unfiltered top k / f are above it (at most the blocks the terms touch); of those,
    only the share with an allowed row is visited, each costing ``term_block_cost`` per
    query term (the probe's model)."""
    touched = n_blocks if n_dense > 0 else min(n_entries, n_blocks)
    hits = k * n_docs / max(n_allowed, 1)
    visits = allowed_blocks / n_blocks * min(touched, blocks_per_hit * hits)
    return n_entries + n_dense * n_blocks + visits * n_terms * term_block_cost


@numba.njit(inline="always")
def _block_cannot_enter(acc, n_rows, seen_bound, bound, n_terms, kth):
    """Whether no document of a partly scored block can reach ``kth``: its best partial
    score plus the rest of the block's bound (``bound - seen_bound``) stays below it. The
    slack covers the rounding of the float sums (each under n_terms * 2**-53 * bound)."""
    best = 0.0
    for i in range(n_rows):
        best = max(best, acc[i])
    slack = 8.0 * n_terms * 2.0**-53 * bound
    return best + (bound - seen_bound) + slack < kth


@numba.njit(inline="always")
def _prefetch_next_blocks(
    hb, n_cand, q_lo, q_hi, q_terms, offsets, postings, ranges, stamp_id, dense_slot,
    dense_starts, next_lo, next_hi,
):  # fmt: skip
    """Ask for the memory the next blocks will need while this one is scored: the next
    block's postings (first and last line of each term's run; the runs are kept in
    ``next_lo/next_hi``) and, for the two blocks after it, where those runs are. Blocks
    are visited in bound order, which the hardware prefetcher cannot follow."""
    nxt = hb[0]
    for j in range(q_lo, q_hi):
        lo, hi = _term_range(
            j, q_terms[j], nxt, q_lo, offsets, ranges, stamp_id, dense_slot, dense_starts
        )
        next_lo[j - q_lo] = lo
        next_hi[j - q_lo] = hi
        if hi > lo:
            prefetch(postings, lo)
            prefetch(postings, hi - 1)
    for c in range(1, min(3, n_cand)):
        after = hb[c]  # the heap's root children: one of them is visited next but one
        for j in range(q_lo, q_hi):
            slot = dense_slot[q_terms[j]]
            if slot >= 0:
                prefetch2(dense_starts, slot, after)
            else:
                prefetch2(ranges, j - q_lo, after)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _max_of(values):
    """Largest of non-negative values (fastmath lets it vectorize; no NaN can occur)."""
    top = 0.0
    for v in values:
        top = max(top, v)
    return top


@numba.njit(cache=True, nogil=True)
def _heap_band(ub, cut, n_walk, dense, touched, use_mask, block_allowed, hu, hb):
    """Move every block whose bound is >= ``cut`` (and > 0) from ``ub`` into a fresh heap
    ``(hu, hb)``; returns its size. The scan is branch-free (every block is written to
    the next heap slot, which only advances when it is taken): a few percent are taken,
    at no predictable place."""
    n = 0
    positive_cut = max(cut, _SMALLEST_SCORE)
    for i in range(n_walk):
        b = touched[i] if not dense else i
        u = ub[b]
        take = u >= positive_cut
        ub[b] = 0.0 if take else u
        hu[n] = u
        hb[n] = b
        n += take and (not use_mask or block_allowed[b] > 0)
    for i in range(n // 2 - 1, -1, -1):
        _block_sift_down(hu, hb, n, i)
    return n


@numba.njit(cache=True, nogil=True)
def _would_visit(
    hu, hb, n_cand, ub, n_walk, dense, touched, below_cut_closed, alpha, safe, hs, hd, size,
    k, block_size, block_key, use_key, use_mask, block_allowed,
):  # fmt: skip
    """Blocks left (heaped or not yet) that the stopping rule would still visit with the
    current k-th score; under a mask, only blocks with an allowed row (the others are
    never visited). ``below_cut_closed``: no block below the current band can enter
    (then the bounds not yet heaped are not read)."""
    full = size == k
    n = 0
    for i in range(n_cand):
        if not full or _admits(alpha * hu[i], hb[i], safe, hs, hd, block_size, block_key, use_key):
            n += 1
    if full and below_cut_closed:
        return n
    for i in range(n_walk):
        b = touched[i] if not dense else i
        u = ub[b]
        if (
            u > 0.0
            and (not use_mask or block_allowed[b] > 0)
            and (not full or _admits(alpha * u, b, safe, hs, hd, block_size, block_key, use_key))
        ):
            n += 1
    return n


@numba.njit(inline="always")
def _admits(bound, b, safe, hs, hd, block_size, block_key, use_key):
    return bound > hs[0] or (
        bound == hs[0] and safe and (block_key[b] if use_key else b * block_size) <= hd[0]
    )
