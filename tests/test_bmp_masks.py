"""Filtered BMP: exact under masks keeping 50%, 5% and 0.5% of the documents, and the
fallback rule's choice of path under a mask (the path, never a time).

The corpus is topical, like a BM25 index in BP order: topics of 4,096 documents stored
together, each document holding 8 of its topic's 20 terms at impacts that fall with the
document's block within its topic, and 2 of 5 low-impact terms common to all topics. A
query is three terms of one topic and a common term. Bounds then prune well. Under a
mask that keeps few rows the heap is not full at the probe, so the rule must judge by the
blocks BMP could still visit: those with an allowed row. The rule used to count every
block the query touches instead and sent the 0.5% queries to the exhaustive pass, which
``scripts/bench_sparse.py --masks`` measured 4x slower than BMP there
(docs/benchmarks.md). The same corpus in a shuffled order prunes nothing: there the rule
must still fall back.
"""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.kinds.impact.bmp import PATH_BMP, PATH_UP_FRONT
from specrag.indexing.kinds.impact.config import ImpactConfig
from specrag.indexing.kinds.impact.index import ImpactIndex, term_major
from specrag.indexing.kinds.impact.reorder import apply_order
from specrag.indexing.kinds.impact.search import ImpactSearcher, QueryBatch

N_TOPICS, PER_TOPIC, TOPIC_TERMS, N_COMMON, BLOCK = 10, 4096, 20, 5, 32
NO_FALLBACK = ImpactConfig(
    fallback_fraction=2.0, term_block_cost=0.0, early_probe_blocks=None, blocks_per_hit=0.0
)


def topical_index(shuffle: bool) -> ImpactIndex:
    rng = np.random.default_rng(0)
    n = N_TOPICS * PER_TOPIC
    docs = np.repeat(np.arange(n, dtype=np.int32), 10)
    own = rng.permuted(np.tile(np.arange(TOPIC_TERMS), (n, 1)), axis=1)[:, :8]
    own = own + N_COMMON + (np.arange(n) // PER_TOPIC)[:, None] * TOPIC_TERMS
    common = rng.permuted(np.tile(np.arange(N_COMMON), (n, 1)), axis=1)[:, :2]
    terms = np.concatenate([own, common], axis=1).reshape(-1).astype(np.int64)
    level = 1.0 / (1.0 + ((docs % PER_TOPIC) // BLOCK) / 8.0)
    impacts = np.maximum(1, 255 * level * rng.uniform(0.5, 1.0, len(docs))).astype(np.int64)
    is_common = terms < N_COMMON
    impacts[is_common] = rng.integers(1, 20, is_common.sum())
    impacts = impacts.astype(np.uint8)
    n_terms = N_COMMON + N_TOPICS * TOPIC_TERMS
    perm = rng.permutation(n).astype(np.int32) if shuffle else None
    if perm is not None:
        terms, docs, impacts = apply_order(perm, terms, docs, impacts)
    offsets, pdocs, pvals = term_major(terms, docs, impacts, n_terms)
    return ImpactIndex.from_postings(
        n, offsets, pdocs, pvals, block_size=BLOCK, scale=0.5, perm=perm
    )


def queries(n_terms: int) -> QueryBatch:
    rng = np.random.default_rng(1)
    terms = [
        np.array([0, *sorted(N_COMMON + (q % N_TOPICS) * TOPIC_TERMS + rng.choice(20, 3, False))])
        for q in range(20)
    ]
    return QueryBatch.from_lists(terms, [np.ones(4)] * len(terms), n_terms)


@pytest.fixture(scope="module", params=[False, True], ids=["clustered", "shuffled"])
def setup(request):
    index = topical_index(shuffle=request.param)
    searcher = ImpactSearcher(index, np.arange(index.n_docs).astype(str))
    batch = queries(index.n_terms)
    return request.param, searcher, batch, searcher.reference_scores_encoded(batch)


def brute_force(scores: np.ndarray, k: int, mask: np.ndarray) -> list[list[int]]:
    """Top-k allowed matching rows by score, then row: no index structure."""
    out = []
    for row_scores in scores:
        rows = np.flatnonzero(mask & np.isfinite(row_scores))
        order = np.lexsort((rows, -row_scores[rows]))[:k]
        out.append(rows[order].tolist())
    return out


def run(searcher, batch, k, mask, config):
    searcher.config = config
    searcher.last_blocks_scored = None
    rows, scores, counts = searcher.search_rows(batch, k, mask)
    blocks = searcher.last_blocks_scored  # None: the exhaustive mode
    fell_back = None if blocks is None else blocks >= searcher.index.n_blocks
    return [rows[q, : counts[q]].tolist() for q in range(len(batch))], scores, fell_back


@pytest.mark.parametrize("share", [0.5, 0.05, 0.005])
@pytest.mark.parametrize("k", [10, 100])
def test_filtered_bmp_is_exact_and_the_rule_prunes_where_pruning_pays(setup, share, k):
    shuffled, searcher, batch, reference = setup
    mask = np.random.default_rng(int(share * 1000) + k).random(searcher.index.n_docs) < share
    truth = brute_force(reference, k, mask)
    exhaustive, ex_scores, _ = run(searcher, batch, k, mask, ImpactConfig(mode="exhaustive"))
    ruled, rule_scores, fell_back = run(searcher, batch, k, mask, ImpactConfig())
    pruned, pruned_scores, never = run(searcher, batch, k, mask, NO_FALLBACK)
    assert exhaustive == truth
    assert ruled == truth and pruned == truth
    assert np.array_equal(rule_scores, ex_scores) and np.array_equal(pruned_scores, ex_scores)
    assert not never.any()
    if not shuffled and (share == 0.005 or k == 10):
        # Clustered: BMP scores a few percent of the blocks, and the blocks with an
        # allowed row bound its work below the exhaustive pass's: the rule keeps BMP.
        assert not fell_back.any(), f"{fell_back.mean():.0%} of queries fell back"
    if shuffled and share >= 0.05 and k == 100:
        # Shuffled: bounds prune nothing; BMP would score most allowed blocks one by one.
        assert fell_back.all(), f"only {fell_back.mean():.0%} of queries fell back"


def test_up_front_check_sends_queries_by_their_expected_work_and_both_paths_agree(setup):
    """The check before the bound pass: at 5% of the rows and k=100 the k-th allowed score
    ranks ~2,000th overall, so BMP would score most allowed blocks (the cost model says 4x
    the postings): every query goes exhaustive at once, where the old rule scored blocks
    until its probe. Unfiltered at k=10 BMP's ~10 blocks cost an eighth to a quarter of
    the postings: no query does. The same queries with the check off run BMP block by
    block to the end, and both return the brute-force top-k, scores bitwise equal."""
    _, searcher, batch, reference = setup
    n_docs = searcher.index.n_docs
    cases = [
        (np.random.default_rng(7).random(n_docs) < 0.05, 100, PATH_UP_FRONT),
        (np.ones(n_docs, dtype=bool), 10, PATH_BMP),
    ]
    for mask, k, expected in cases:
        truth = brute_force(reference, k, mask)
        allowed = None if mask.all() else mask
        checked, checked_scores, _ = run(searcher, batch, k, allowed, ImpactConfig())
        assert searcher.last_paths.tolist() == [expected] * len(batch)
        pruned, pruned_scores, _ = run(searcher, batch, k, allowed, NO_FALLBACK)
        assert searcher.last_paths.tolist() == [PATH_BMP] * len(batch)
        assert checked == truth and pruned == truth
        assert np.array_equal(checked_scores, pruned_scores)


def test_the_kept_mask_never_goes_stale(setup):
    """The searcher keeps the internal form of the last read-only mask: another mask, or a
    writable one changed in place between two searches, must still be obeyed."""
    _, searcher, batch, reference = setup
    rng = np.random.default_rng(3)
    first = rng.random(searcher.index.n_docs) < 0.05
    first.setflags(write=False)
    second = rng.random(searcher.index.n_docs) < 0.05
    second.setflags(write=False)
    for mask in (first, second, first):
        assert run(searcher, batch, 10, mask, ImpactConfig())[0] == brute_force(reference, 10, mask)
    writable = first.copy()
    assert run(searcher, batch, 10, writable, ImpactConfig())[0] == brute_force(
        reference, 10, first
    )
    writable[:] = second
    assert run(searcher, batch, 10, writable, ImpactConfig())[0] == brute_force(
        reference, 10, second
    )
