"""The search pipeline against brute force: a filtered search returns exactly the top-k of
each kind's exhaustive ``reference_scores`` restricted to the documents that the filter's
Python reference (``storage.filters.matches``) accepts; fused results equal the fusion of
the brute-force lists."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from specrag.indexing.versions import VersionStore
from specrag.retrieval import fusion, pipeline
from specrag.retrieval.recipe import HYBRID
from specrag.retrieval.request import RerankSpec, RetrieverSpec, SearchRequest
from specrag.retrieval.version import open_version
from specrag.types import Hit
from tests.conftest import demo_documents, demo_queries

N_DOCS = 80  # dense encodes these on a shared CPU: keep it small
FILTERS = [
    None,
    {"topic": "bio"},
    {"year": {"$gte": 2012}},
    {"$and": [{"topic": {"$in": ["med", "chem"]}}, {"even": True}]},
    {"$or": [{"year": 2003}, {"year": 2017}]},  # very selective: about 8 docs
]
QUERIES = demo_queries(6)


KINDS = ["bm25", "dense"]


@pytest.fixture(scope="module")
def docs():
    return demo_documents(N_DOCS)


@pytest.fixture(scope="module")
def version(tmp_path_factory, docs):
    if not KINDS:
        pytest.skip("no retriever kind implemented yet")
    configs = {"bm25": {}, "dense": {"max_seq_length": 64}}
    store = VersionStore(tmp_path_factory.mktemp("pipeline"))
    store.build(docs, {k: configs[k] for k in KINDS})
    return open_version(store)


@pytest.fixture(scope="module")
def reference(version):
    return {kind: version.searchers[kind].reference_scores(QUERIES) for kind in KINDS}


def filter_mask(docs, filter_) -> np.ndarray:
    if filter_ is None:
        return np.ones(len(docs), dtype=bool)
    from specrag.storage.filters import matches

    return np.array([matches(filter_, d.metadata) for d in docs], dtype=bool)


def brute_topk(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Top-k rows among the allowed, by score desc then row asc, -inf excluded."""
    s = np.where(allowed, scores.astype(np.float64), -np.inf)
    order = np.lexsort((np.arange(len(s)), -s))
    return [(int(r), float(s[r])) for r in order[:k] if np.isfinite(s[r])]


def assert_same_ranking(version, hits, want, scores):
    """Same scores in order; same rows wherever the reference has no near-tie."""
    assert len(hits) == len(want)
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], rtol=1e-4, atol=1e-5)
    for hit, (row, score) in zip(hits, want, strict=True):
        if np.isclose(scores, score, rtol=1e-4, atol=1e-5).sum() == 1:
            assert version.row_of(hit.doc_id) == row


@pytest.mark.parametrize("filter_", FILTERS, ids=lambda f: str(f))
@pytest.mark.parametrize("kind", KINDS)
def test_filtered_single_kind_equals_brute_force(version, reference, docs, kind, filter_):
    if filter_ is not None:
        pytest.importorskip("specrag.storage.filters")
    allowed = filter_mask(docs, filter_)
    assert allowed.sum() > 0
    request = SearchRequest(query="unused", k=10, retriever=kind)
    hits = pipeline.search_batch(version, QUERIES, request, allowed).hits
    for qi, got in enumerate(hits):
        want = brute_topk(reference[kind][qi], allowed, 10)
        assert all(allowed[version.row_of(h.doc_id)] for h in got)
        assert_same_ranking(version, got, want, reference[kind][qi])
        for h in got:  # the raw score is kept under the kind's name
            assert h.scores[kind] == pytest.approx(
                reference[kind][qi][version.row_of(h.doc_id)], abs=1e-4
            )


def _fused_truth(reference, allowed, qi, specs, method, rrf_k=60.0, normalization="minmax"):
    lists = [brute_topk(reference[s.kind][qi], allowed, s.k) for s in specs]
    weights = [s.weight for s in specs]
    if method == "rrf":
        return fusion.rrf([[r for r, _ in pairs] for pairs in lists], weights, rrf_k, tie_key=int)
    return fusion.convex(lists, weights, normalization, tie_key=int)


@pytest.mark.parametrize("method", ["rrf", "convex"])
@pytest.mark.parametrize("filter_", [None, {"topic": "med"}], ids=str)
def test_fusion_equals_fusion_of_brute_force_lists(version, reference, docs, method, filter_):
    if len(KINDS) < 2:
        pytest.skip("needs two kinds")
    if filter_ is not None:
        pytest.importorskip("specrag.storage.filters")
    allowed = filter_mask(docs, filter_)
    specs = [
        RetrieverSpec(kind="bm25", weight=0.7, k=20),
        RetrieverSpec(kind="dense", weight=0.3, k=15),
    ]
    request = SearchRequest(query="x", k=8, retrievers=specs, fusion=method)
    hits = pipeline.search_batch(version, QUERIES, request, allowed).hits
    for qi, got in enumerate(hits):
        want = _fused_truth(reference, allowed, qi, specs, method)[:8]
        assert [version.row_of(h.doc_id) for h in got] == [r for r, _ in want]
        np.testing.assert_allclose([h.score for h in got], [s for _, s in want], rtol=1e-6)
        for h in got:  # every retriever that returned the doc left its raw score
            row = version.row_of(h.doc_id)
            for kind, raw in h.scores.items():
                assert raw == pytest.approx(reference[kind][qi][row], abs=1e-4)


def test_hybrid_uses_recipe_over_all_kinds(version, reference):
    if len(KINDS) < 2:
        pytest.skip("needs two kinds")
    recipe = HYBRID
    request = SearchRequest(query=QUERIES[0], k=10)
    got = pipeline.search(version, request).hits[0]
    allowed = np.ones(version.n_docs, dtype=bool)
    specs = [RetrieverSpec(kind=k, weight=recipe.weight(k), k=recipe.depth) for k in sorted(KINDS)]
    want = _fused_truth(
        reference, allowed, 0, specs, recipe.fusion, recipe.rrf_k, recipe.normalization
    )[:10]
    assert [version.row_of(h.doc_id) for h in got] == [r for r, _ in want]


def test_min_score_and_k_cut(version, reference):
    kind = KINDS[0] if KINDS else pytest.skip("no kind")
    full = pipeline.search(version, SearchRequest(query=QUERIES[1], k=10, retriever=kind)).hits[0]
    threshold = full[4].score
    cut = pipeline.search(
        version, SearchRequest(query=QUERIES[1], k=10, retriever=kind, min_score=threshold)
    ).hits[0]
    assert [h.doc_id for h in cut] == [h.doc_id for h in full if h.score >= threshold]
    assert all(h.score >= threshold for h in cut)
    assert (
        len(pipeline.search(version, SearchRequest(query=QUERIES[1], k=3, retriever=kind)).hits[0])
        == 3
    )


def test_empty_mask_gives_no_hits(version):
    allowed = np.zeros(version.n_docs, dtype=bool)
    assert pipeline.search(version, SearchRequest(query="cells", k=5), allowed).hits == [[]]


def test_bad_requests_name_the_problem(version):
    with pytest.raises(pipeline.SearchError, match="not indexed"):
        pipeline.search(version, SearchRequest(query="q", retriever="colbert"))
    with pytest.raises(pipeline.NotAvailable, match="rerank is not available"):
        pipeline.search(version, SearchRequest(query="q", rerank=RerankSpec()))
    with pytest.raises(pipeline.NotAvailable, match="min_relevance is not available"):
        pipeline.search(version, SearchRequest(query="q", min_relevance=0.5))
    with pytest.raises(pipeline.SearchError, match="twice"):
        specs = [RetrieverSpec(kind=KINDS[0]), RetrieverSpec(kind=KINDS[0])]
        pipeline.search(version, SearchRequest(query="q", retrievers=specs))


class Reverse:
    """A rerank-like stage: reverses each list, new scores descending."""

    name = "rerank"

    def __init__(self, depth: int):
        self.depth = depth
        self.seen: list[int] = []

    def __call__(self, version_, queries, hits):
        self.seen.extend(len(h) for h in hits)
        return [
            [Hit(h.doc_id, float(len(hs) - i), dict(h.scores)) for i, h in enumerate(reversed(hs))]
            for hs in hits
        ]


class EveryOther:
    """A relevance-like stage: keeps every other hit."""

    name = "relevance"
    depth = 1

    def __call__(self, version_, queries, hits):
        return [
            [Hit(h.doc_id, h.score, {**h.scores, "relevance": 1.0}) for h in hs[::2]] for hs in hits
        ]


def test_stages_run_in_order_on_their_depth(version):
    """Each stage sees at least its depth of fused hits; its output is what comes back."""
    base = pipeline.search(version, SearchRequest(query=QUERIES[2], k=5, retriever=KINDS[0])).hits[
        0
    ]
    request = SearchRequest(
        query=QUERIES[2], k=5, retriever=KINDS[0], rerank=RerankSpec(top_n=5), min_relevance=0.5
    )
    reverse = Reverse(depth=5)
    got = pipeline.search(version, request, stages=[reverse, EveryOther()]).hits[0]
    assert reverse.seen == [5]
    assert [h.doc_id for h in got] == [h.doc_id for h in list(reversed(base))[::2]]
    assert all(h.scores["relevance"] == 1.0 for h in got)
    deep = Reverse(depth=20)
    out = pipeline.search(
        version, SearchRequest(query=QUERIES[2], k=3, retriever=KINDS[0]), stages=[deep]
    )
    assert deep.seen == [20] and len(out.hits[0]) == 3 and "rerank" in out.timings_ms


@pytest.fixture(scope="module")
def late_version(tmp_path_factory, docs):
    """bm25 + colbert: the late-interaction kind serves the default rerank stage."""
    store = VersionStore(tmp_path_factory.mktemp("pipeline-late"))
    store.build(docs[:40], {"bm25": {}, "colbert": {"batch_size": 8}})
    return open_version(store)


def test_hybrid_keeps_late_kinds_out_of_the_first_stage(late_version):
    the_plan = pipeline.plan(late_version, SearchRequest(query="q"))
    assert [s.kind for s in the_plan.specs] == ["bm25"]
    explicit = pipeline.plan(late_version, SearchRequest(query="q", retriever="colbert"))
    assert [s.kind for s in explicit.specs] == ["colbert"]


def test_rerank_is_opt_in_by_default(late_version):
    """The shipped recipe reranks nothing unasked (MaxSim's gain was not significant)."""
    assert HYBRID.rerank is None
    assert pipeline.rerank_spec(late_version, SearchRequest(query="q")) is None
    mine = RerankSpec(method="maxsim", top_n=7)
    assert pipeline.rerank_spec(late_version, SearchRequest(query="q", rerank=mine)) == mine


def test_a_recipe_default_rerank_only_for_unsaid_hybrid_requests(late_version, version):
    default = RerankSpec(method="maxsim", top_n=50)
    recipe = replace(HYBRID, rerank=default)
    assert pipeline.rerank_spec(late_version, SearchRequest(query="q"), recipe) == default
    no_rerank = SearchRequest(query="q", rerank=None)
    assert pipeline.rerank_spec(late_version, no_rerank, recipe) is None
    bm25 = SearchRequest(query="q", retriever="bm25")
    assert pipeline.rerank_spec(late_version, bm25, recipe) is None
    mine = RerankSpec(method="maxsim", top_n=7)
    asked = SearchRequest(query="q", rerank=mine)
    assert pipeline.rerank_spec(late_version, asked, recipe) == mine
    # No late-interaction kind in the version: no default stage.
    assert pipeline.rerank_spec(version, SearchRequest(query="q"), recipe) is None


class MinusInf:
    """A stage that says some hits cannot match (-inf), as MaxSim did for a blank query."""

    name = "rerank"
    depth = 5

    def __call__(self, version, queries, hits):
        return [
            [Hit(h.doc_id, float("-inf") if i % 2 else h.score, h.scores) for i, h in enumerate(hs)]
            for hs in hits
        ]


def test_a_hit_with_a_non_finite_score_is_never_returned(version):
    request = SearchRequest(query=QUERIES[2], k=5, retriever=KINDS[0])
    got = pipeline.search(version, request, stages=[MinusInf()]).hits[0]
    assert got and all(np.isfinite(h.score) for h in got)
    assert len(got) == 3


@pytest.fixture(scope="module")
def dense_late_version(tmp_path_factory, docs):
    """dense + colbert: a blank query still gets dense hits, then the MaxSim stage."""
    store = VersionStore(tmp_path_factory.mktemp("pipeline-dense-late"))
    store.build(docs[:30], {"dense": {"max_seq_length": 64}, "colbert": {"batch_size": 8}})
    return open_version(store)


@pytest.mark.parametrize("query", [" ", "\x00", "\x01\x02", "\t\n"])
def test_a_blank_query_gets_finite_scores_through_maxsim_rerank(dense_late_version, query):
    from specrag.api.stages import StageBuilder

    request = SearchRequest(query=query, k=10, rerank=RerankSpec(method="maxsim"))
    stages = StageBuilder(store=None).for_request(dense_late_version, request)
    hits = pipeline.search(dense_late_version, request, stages=stages).hits[0]
    assert len(hits) == 10
    for h in hits:
        assert np.isfinite(h.score) and all(np.isfinite(v) for v in h.scores.values())
