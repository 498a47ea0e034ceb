"""Block-Max Pruning against exhaustive scoring on randomized impact indexes (hypothesis).

The truth is a dense numpy score matrix built straight from the generated postings (no
index structure); safe BMP and the exhaustive kernel must both return exactly its top-k,
scores and rows, ties broken by lower row -- including the corner cases where the
authors' Rust ``bmp`` package fails (last block, >65,536 terms, block sizes > 256,
empty queries, weights at the quantization limits).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specrag.indexing.kinds.impact import reorder
from specrag.indexing.kinds.impact.bmp import MAX_STAMP
from specrag.indexing.kinds.impact.config import ImpactConfig
from specrag.indexing.kinds.impact.index import (
    DOC_BITS,
    IMPACT_DTYPES,
    META_FILE,
    ImpactIndex,
    pack_postings,
    quantize,
    term_major,
)
from specrag.indexing.kinds.impact.reorder import apply_order, bp_order
from specrag.indexing.kinds.impact.search import ImpactSearcher, QueryBatch

BLOCK_SIZES = [1, 2, 3, 7, 32, 64, 255, 256, 257, 300, 1024]


def make_index(
    postings: dict[int, dict[int, int]],
    n_docs: int,
    n_terms: int,
    block_size: int,
    bits=8,
    reorder: str = "none",
):
    """An ImpactIndex from {term: {doc: impact}} through the array writer path; ``reorder``
    stores the rows in another order: "bp" (the build option) or "reverse" / "shuffle"
    (orders that put high corpus rows in early blocks: the hard case for ties)."""
    triples = sorted((d, t, v) for t, row in postings.items() for d, v in row.items())
    docs = np.array([d for d, _, _ in triples], dtype=np.int32)
    terms = np.array([t for _, t, _ in triples], dtype=np.int64)
    vals = np.array([v for _, _, v in triples], dtype=np.uint8 if bits == 8 else np.uint16)
    perm = None
    if reorder == "bp":
        perm = bp_order(terms, docs, n_docs, n_terms, leaf_size=block_size)
    elif reorder == "reverse":
        perm = np.arange(n_docs)[::-1].copy()
    elif reorder == "shuffle":
        perm = np.random.default_rng(n_docs).permutation(n_docs)
    if perm is not None:
        terms, docs, vals = apply_order(perm, terms, docs, vals)
    offsets, pdocs, pvals = term_major(terms, docs, vals, n_terms)
    return ImpactIndex.from_postings(
        n_docs, offsets, pdocs, pvals, block_size=block_size, scale=0.5, perm=perm
    )


REORDERS = ["none", "bp", "reverse", "shuffle"]


def dense_truth(postings, n_docs, query: dict[int, float], allowed) -> list[tuple[int, float]]:
    """Top rows of the brute-force scores, best first, ties by lower row (no structure)."""
    scores = np.zeros(n_docs)
    matched = np.zeros(n_docs, dtype=bool)
    for t, w in sorted(query.items()):  # the searcher's term order: ascending id
        for d, v in postings.get(t, {}).items():
            scores[d] += w * v
            matched[d] = True
    ok = matched if allowed is None else matched & allowed
    rows = [d for d in range(n_docs) if ok[d]]
    rows.sort(key=lambda d: (-scores[d], d))
    return [(d, scores[d] * 0.5) for d in rows]


def run(
    index: ImpactIndex,
    query: dict[int, float],
    k: int,
    allowed,
    mode: str,
    alpha=1.0,
    probe=16,
    fallback=0.4,
    term_block_cost=20.0,
    early=(16, 0.6),
    blocks_per_hit=0.0,
):
    config = ImpactConfig(
        mode=mode,
        alpha=alpha,
        probe_blocks=probe,
        fallback_fraction=fallback,
        term_block_cost=term_block_cost,
        early_probe_blocks=early[0],
        early_fallback_fraction=early[1],
        blocks_per_hit=blocks_per_hit,
        bmp_min_blocks=0,  # the block-by-block kernel, however small the index, and
        # (blocks_per_hit 0) no up-front check: the tests here are about BMP's own paths
    )
    searcher = ImpactSearcher(index, np.arange(index.n_docs).astype(str), config)
    terms = np.array(sorted(query), dtype=np.int64)
    batch = QueryBatch.from_lists([terms], [np.array([query[t] for t in terms])], index.n_terms)
    rows, scores, counts = searcher.search_rows(batch, k, allowed)
    return list(zip(rows[0, : counts[0]].tolist(), scores[0, : counts[0]].tolist(), strict=True))


@st.composite
def cases(draw):
    n_docs = draw(st.integers(1, 700))
    block_size = draw(st.sampled_from(BLOCK_SIZES))
    big_vocab = draw(st.booleans())
    n_terms = draw(st.integers(65_537, 70_000)) if big_vocab else draw(st.integers(1, 12))
    used = draw(st.lists(st.integers(0, n_terms - 1), min_size=1, max_size=6, unique=True))
    bits = draw(st.sampled_from([8, 16]))
    top = (1 << bits) - 1
    impact = draw(
        st.sampled_from(
            [
                st.integers(1, 3),  # many exact ties: the tie rule at the stopping bound
                st.sampled_from([1, 2, top - 1, top]),  # the quantization limits
                st.integers(1, top),
            ]
        )
    )
    where = draw(st.sampled_from(["anywhere", "last_block", "one_block"]))
    last_first = (n_docs - 1) // block_size * block_size
    lo, hi = {"anywhere": (0, n_docs - 1), "last_block": (last_first, n_docs - 1)}.get(
        where, (0, min(block_size, n_docs) - 1)
    )
    postings = {}
    for t in used:
        rows = draw(st.lists(st.integers(lo, hi), max_size=60, unique=True))
        postings[t] = {d: draw(impact) for d in rows}
    qterms = draw(st.lists(st.sampled_from(used), max_size=6, unique=True))
    weight = st.one_of(
        st.integers(1, 5).map(float),
        st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False),
        st.sampled_from([1.0, 2.0**-20, 2.0**20]),
    )
    query = {t: draw(weight) for t in qterms}
    mask_kind = draw(st.sampled_from(["none", "none_allowed", "one", "all", "random"]))
    allowed = {
        "none": None,
        "none_allowed": np.zeros(n_docs, bool),
        "one": np.eye(1, n_docs, draw(st.integers(0, n_docs - 1)), dtype=bool)[0],
        "all": np.ones(n_docs, bool),
        "random": np.random.default_rng(draw(st.integers(0, 99))).random(n_docs) < 0.4,
    }[mask_kind]
    k = draw(st.sampled_from([1, 2, 3, 10, 100]))
    reorder = draw(st.sampled_from(REORDERS))
    return postings, n_docs, n_terms, block_size, bits, query, allowed, k, reorder


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_safe_bmp_equals_exhaustive_and_truth(case):
    postings, n_docs, n_terms, block_size, bits, query, allowed, k, reorder = case
    index = make_index(postings, n_docs, n_terms, block_size, bits, reorder)
    truth = dense_truth(postings, n_docs, query, allowed)[:k]
    exhaustive = run(index, query, k, allowed, "exhaustive")
    bmp = run(index, query, k, allowed, "bmp")
    assert bmp == exhaustive
    # Block by block only, and switching to term-at-a-time after 0 or 1 probed blocks,
    # with the exhaustive fallback always (0), never (2 and no cost model), at 40% of the
    # blocks, or whenever the cost model is asked (a huge term-block cost); the early
    # check off, or after 0, 1 or 2 blocks whenever the heaped band is still admitted.
    for probe in (10**9, 0, 1, None):
        for fallback, cost in ((0.0, 20.0), (0.4, 20.0), (2.0, 0.0), (2.0, 1e12)):
            got = run(index, query, k, allowed, "bmp", probe=probe, fallback=fallback,
                      term_block_cost=cost)  # fmt: skip
            assert got == exhaustive
    for early in (None, 0, 1, 2):
        got = run(index, query, k, allowed, "bmp", probe=10**9, fallback=2.0,
                  term_block_cost=0.0, early=(early, 0.0))  # fmt: skip
        assert got == exhaustive
    # The up-front check as configured by default (1), and taken on every query (a huge
    # estimate of BMP's work).
    for blocks_per_hit in (1.0, 1e12):
        assert run(index, query, k, allowed, "bmp", blocks_per_hit=blocks_per_hit) == exhaustive
    assert [r for r, _ in bmp] == [r for r, _ in truth]
    np.testing.assert_allclose([s for _, s in bmp], [s for _, s in truth], rtol=1e-12)


@settings(max_examples=80, deadline=None)
@given(cases(), st.floats(0.1, 0.99), st.sampled_from([0, 1, 10**9]), st.sampled_from([0, 2]))
def test_approximate_bmp_returns_true_scores_in_order(case, alpha, alpha_probe, fallback):
    postings, n_docs, n_terms, block_size, bits, query, allowed, k, reorder = case
    index = make_index(postings, n_docs, n_terms, block_size, bits, reorder)
    truth = dict(dense_truth(postings, n_docs, query, allowed))
    got = run(index, query, k, allowed, "bmp", alpha, probe=alpha_probe, fallback=fallback)
    assert len(got) <= k
    assert all(r in truth and s == pytest.approx(truth[r], rel=1e-12) for r, s in got)
    assert got == sorted(got, key=lambda x: (-x[1], x[0]))
    if allowed is not None:
        assert all(allowed[r] for r, _ in got)


def test_a_block_whose_bound_ties_the_kth_score_is_still_scored():
    # Block 1 (bound 10) is visited first and fills k=2 with score 5 at rows 64, 65; block 0's
    # bound equals the k-th score and its row 0 ties it with a lower row: it must enter.
    postings = {0: {0: 5, 64: 5}, 1: {65: 5}}
    index = make_index(postings, 128, 2, 64)
    for probe in (0, 1, 10**9):
        assert run(index, {0: 1.0, 1: 1.0}, 2, None, "bmp", probe=probe) == [(0, 2.5), (64, 2.5)]


@pytest.mark.parametrize("reorder", ["reverse", "shuffle", "bp"])
def test_ties_with_a_reordering_are_broken_by_corpus_row(reorder):
    # Every row scores the same: the top-k must be the lowest corpus rows, whatever block
    # the reordering stored them in (block bounds all tie the k-th score).
    n_docs = 300
    postings = {0: dict.fromkeys(range(n_docs), 7)}
    index = make_index(postings, n_docs, 1, 16, reorder=reorder)
    for probe in (0, 1, 10**9):
        got = run(index, {0: 1.0}, 5, None, "bmp", probe=probe)
        assert got == [(r, 3.5) for r in range(5)]
    allowed = np.zeros(n_docs, bool)
    allowed[[250, 3, 120]] = True
    assert run(index, {0: 1.0}, 2, allowed, "bmp") == [(3, 3.5), (120, 3.5)]
    assert run(index, {0: 1.0}, 2, allowed, "exhaustive") == [(3, 3.5), (120, 3.5)]


def test_bp_puts_documents_that_share_terms_together():
    # Two topics mixed at random in corpus order: BP must separate them into the two halves.
    n_docs = 256
    topic = np.random.default_rng(0).permutation(np.arange(n_docs) % 2)
    terms = np.concatenate([topic[d] * 10 + np.arange(10) for d in range(n_docs)])
    docs = np.repeat(np.arange(n_docs), 10)
    perm = bp_order(terms, docs, n_docs, 20, leaf_size=64)
    assert sorted(perm.tolist()) == list(range(n_docs))
    topic_of_row = topic[perm]
    assert len(set(topic_of_row[:128].tolist())) == 1
    assert len(set(topic_of_row[128:].tolist())) == 1


def test_auto_reorders_only_from_the_size_threshold(monkeypatch):
    n_docs = 256
    terms = np.concatenate([(d % 2) * 10 + np.arange(10) for d in range(n_docs)])
    docs = np.repeat(np.arange(n_docs), 10)
    values = np.ones(len(docs), dtype=np.uint8)
    args = (terms, docs, values, n_docs, 20)
    assert reorder.reorder_triples("auto", *args, leaf_size=64)[3] is None
    monkeypatch.setattr(reorder, "AUTO_BP_MIN_DOCS", n_docs)
    heard = []
    perm = reorder.reorder_triples(
        "auto", *args, leaf_size=64, progress=lambda *a: heard.append(a)
    )[3]
    assert perm is not None and sorted(perm.tolist()) == list(range(n_docs))
    assert heard == [(0, n_docs, "reorder: bp"), (n_docs, n_docs, "reorder: bp")]
    with pytest.raises(ValueError, match="reorder must be"):
        reorder.reorder_triples("spectral", *args, leaf_size=64)


def test_a_bad_permutation_is_rejected():
    index = make_index({0: {0: 1, 1: 2}}, 2, 1, 4)
    with pytest.raises(ValueError, match="permutation"):
        ImpactIndex.from_postings(
            2, index.offsets, *index.unpack(), block_size=4, scale=1.0, perm=np.array([0, 0])
        )


def test_last_block_alone_is_scored():
    # The Rust package never scores its last candidate block: here that is the only one.
    n_docs, block_size = 1000, 64
    postings = {0: {999: 3, 960: 7}}
    index = make_index(postings, n_docs, 1, block_size)
    assert run(index, {0: 1.0}, 10, None, "bmp") == [(960, 3.5), (999, 1.5)]


def test_large_vocabulary_terms_do_not_alias():
    # u16 term ids would map term 65_536 + 5 onto term 5.
    postings = {5: {1: 9}, 65_536 + 5: {2: 4}}
    index = make_index(postings, 10, 70_000, 4)
    assert run(index, {65_541: 1.0}, 5, None, "bmp") == [(2, 2.0)]
    assert run(index, {5: 1.0}, 5, None, "bmp") == [(1, 4.5)]


def test_no_wraparound_at_the_impact_limit():
    # 255 * 300 summed over many terms: far beyond u16 accumulators.
    postings = {t: {0: 255, 1: 254} for t in range(300)}
    index = make_index(postings, 2, 300, 1)
    query = {t: 300.0 for t in range(300)}
    assert run(index, query, 2, None, "bmp") == [
        (0, 300 * 255 * 300 * 0.5),
        (1, 300 * 254 * 300 * 0.5),
    ]


def test_empty_and_one_document():
    index = make_index({0: {0: 1}}, 1, 1, 256)
    assert run(index, {}, 10, None, "bmp") == []
    assert run(index, {0: 1.0}, 10, None, "bmp") == [(0, 0.5)]
    assert run(index, {0: 1.0}, 10, np.zeros(1, bool), "bmp") == []


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="strictly increasing"):
        ImpactIndex.from_postings(
            5,
            np.array([0, 2]),
            np.array([3, 1]),
            np.array([1, 1], np.uint8),
            block_size=2,
            scale=1.0,
        )
    with pytest.raises(ValueError, match="term ids"):
        term_major(np.array([3]), np.array([0]), np.array([1], np.uint8), 2)
    with pytest.raises(ValueError, match="positive"):
        quantize(np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="impacts must be"):
        ImpactIndex.from_postings(
            5, np.array([0, 1]), np.array([3]), np.array([1.5]), block_size=2, scale=1.0
        )
    index = make_index({0: {0: 1}}, 1, 1, 4)
    with pytest.raises(ValueError, match="query term ids"):
        QueryBatch.from_lists([np.array([1])], [np.array([1.0])], index.n_terms)
    with pytest.raises(ValueError, match="finite"):
        QueryBatch.from_lists([np.array([0])], [np.array([np.nan])], index.n_terms)


def test_quantize_keeps_every_positive_weight_and_caps_at_the_limit():
    q, scale = quantize(np.array([1e-9, 0.5, 1.0]), 8)
    assert q.dtype == np.uint8 and q.tolist() == [1, 128, 255] and scale == 1 / 255
    q16, _ = quantize(np.array([1e-9, 1.0]), 16)
    assert q16.dtype == np.uint16 and q16.tolist() == [1, 65535]


def test_a_missing_block_does_not_borrow_the_next_terms_entry():
    # Term 0 occurs only in block 0; term 1 occurs in block 1. Scoring block 1 must not
    # read term 1's entry as term 0's (a binary search that runs past term 0's range).
    postings = {0: {0: 5}, 1: {70: 9}}
    index = make_index(postings, 640, 2, 64)  # 10 blocks: one each is sparse
    assert (index.dense_slot < 0).all()
    for probe in (0, 10**9):
        assert run(index, {0: 1.0, 1: 1.0}, 5, None, "bmp", probe=probe) == [(70, 4.5), (0, 2.5)]


def test_a_searcher_reused_across_stamp_wraps_and_table_growth_stays_exact():
    # The BMP (term, block) -> postings table persists between queries and calls, told
    # apart by a per-query stamp: stale rows of earlier queries must never be read as the
    # current query's, across the stamp wrap-around and when a longer query grows it.
    rng = np.random.default_rng(7)
    n_docs, n_terms = 500, 80
    postings = {
        t: {
            int(d): int(rng.integers(1, 256))
            for d in rng.choice(n_docs, int(rng.integers(1, 90)), replace=False)
        }
        for t in range(n_terms)
    }
    index = make_index(postings, n_docs, n_terms, 16)
    assert 5 <= (index.dense_slot < 0).sum() <= n_terms - 5  # both layouts, table in use
    ids = np.arange(n_docs).astype(str)
    # Block by block throughout (no exhaustive fallback), however small the index.
    bmp = ImpactSearcher(index, ids, ImpactConfig(probe_blocks=10**9, bmp_min_blocks=0))
    exhaustive = ImpactSearcher(index, ids, ImpactConfig(mode="exhaustive"))
    n_queries = MAX_STAMP + 300
    lengths = [int(rng.integers(1, 9)) for _ in range(n_queries)]
    lengths[MAX_STAMP + 50] = 60  # longer than the table's first 32 rows
    terms = [np.sort(rng.choice(n_terms, n, replace=False)) for n in lengths]
    weights = [rng.uniform(0.1, 3.0, n) for n in lengths]
    for lo, hi in [(0, 700), (700, 701), (701, n_queries)]:  # batches and a single call
        batch = QueryBatch.from_lists(terms[lo:hi], weights[lo:hi], n_terms)
        for got, want in zip(
            bmp.search_rows(batch, 7), exhaustive.search_rows(batch, 7), strict=True
        ):
            np.testing.assert_array_equal(got, want)


def test_a_block_below_the_first_band_still_enters_the_top_k():
    # Bounds 100 (block 0) and 40 (block 1): block 1 is heaped only in the second band
    # (below BAND * 100), yet its document (40) beats the k-th score after block 0 (30).
    index = make_index({0: {0: 100, 1: 30, 4: 40}}, 8, 1, 4)
    for probe in (0, 10**9):
        got = run(index, {0: 1.0}, 2, None, "bmp", probe=probe, fallback=2.0)
        assert got == [(0, 50.0), (4, 20.0)]


def test_frequent_terms_get_dense_block_maxima_and_rare_terms_sparse_entries():
    # The layout is chosen per term by size (impact_index.py): a term in >= ~38% of the
    # blocks is stored dense. Queries mixing both layouts stay exact, and the packed
    # postings unpack to what was stored.
    rng = np.random.default_rng(3)
    n_docs, block_size = 2000, 16  # 125 blocks
    imp = lambda: int(rng.integers(1, 256))  # noqa: E731
    postings = {
        0: {d: imp() for d in range(0, n_docs, 3)},  # every block
        1: {int(d): imp() for d in rng.choice(n_docs, 30, replace=False)},  # <= 30 blocks
        2: {d: imp() for d in range(0, n_docs, 40)},  # 50 of 125 blocks
        3: {5: 7, n_docs - 1: 200},  # two blocks, one of them the last
    }
    index = make_index(postings, n_docs, 4, block_size)
    assert (index.dense_slot >= 0).tolist() == [True, False, True, False]
    docs, impacts = index.unpack()
    for t, row in postings.items():
        span = slice(index.offsets[t], index.offsets[t + 1])
        assert docs[span].tolist() == sorted(row)
        assert impacts[span].tolist() == [row[d] for d in sorted(row)]
    queries = [{0: 1.0, 1: 2.0, 2: 0.5, 3: 1.5}, {1: 1.0, 3: 1.0}, {0: 1.0}, {2: 0.25, 3: 3.0}]
    for query in queries:
        truth = dense_truth(postings, n_docs, query, None)[:10]
        for probe in (0, 1, 10**9):
            got = run(index, query, 10, None, "bmp", probe=probe)
            assert [r for r, _ in got] == [r for r, _ in truth]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in truth], rtol=1e-12)


@pytest.mark.parametrize("bits, n_docs, dtype", [(8, 10, np.uint32), (16, 10, np.uint64),
                                                 (8, (1 << 24) + 1, np.uint64)])  # fmt: skip
def test_a_posting_packs_doc_and_impact_in_one_word_wide_enough(bits, n_docs, dtype):
    top = (1 << bits) - 1
    docs = np.array([3, n_docs - 1], dtype=np.int32)
    impacts = np.array([1, top], dtype=IMPACT_DTYPES[bits])
    packed = pack_postings(docs, impacts, n_docs)
    shift = DOC_BITS[np.dtype(dtype)]
    assert packed.dtype == dtype
    assert (packed & ((1 << shift) - 1)).tolist() == docs.tolist()
    assert (packed >> shift).tolist() == [1, top]


def test_an_index_of_an_older_format_asks_for_a_rebuild(tmp_path):
    make_index({0: {0: 1}}, 4, 1, 2).save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["format"] = 1
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="rebuild the index"):
        ImpactIndex.load(tmp_path)


def test_a_partly_scored_block_is_dropped_only_when_no_document_can_enter():
    # Six query terms: with the heap full, a block is checked after two terms. Block 3
    # (bound 91) fills k=1 with 61. Block 2 (bound 82) has a best partial score of 22 after
    # two terms, but its remaining bound (60) lets document 8 reach 62: it must be scored
    # to the end. Block 1 (bound 66, best partial 11, remaining 44) cannot reach 62.
    ten = dict.fromkeys(range(1, 6), 10)
    docs = {
        0: dict.fromkeys(range(6), 10),  # block 0: 60, bound 60
        4: {0: 11}, 5: {1: 11}, 6: {2: 11, 3: 11}, 7: {4: 11, 5: 11},  # block 1
        8: {0: 1, 1: 1, 2: 15, 3: 15, 4: 15, 5: 15}, 9: {0: 11, 1: 11},  # block 2
        12: {**ten, 0: 11}, 13: {1: 40},  # block 3
    }  # fmt: skip
    postings = {t: {d: row[t] for d, row in docs.items() if t in row} for t in range(6)}
    index = make_index(postings, 16, 6, 4)
    query = dict.fromkeys(range(6), 1.0)
    assert dense_truth(postings, 16, query, None)[:1] == [(8, 31.0)]
    for probe in (0, 10**9):
        got = run(index, query, 1, None, "bmp", probe=probe, fallback=2.0, term_block_cost=0.0)
        assert got == [(8, 31.0)]
