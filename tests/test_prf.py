"""RM3 pseudo-relevance feedback for bm25 against an independent truth: the expansion
computed here from the documents' texts by the textbook formula, scored by brute force
over every document (the index's scipy reference), equals what the pipeline returns,
through the exhaustive and the BMP search, with and without a filter mask; with
``orig_weight=1`` the search is plain bm25. Feedback from the fused hybrid list is checked
the same way, fused again with the plain dense list."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError

from specrag.indexing.kinds.bm25.analyzer import analyze
from specrag.indexing.kinds.impact.search import QueryBatch
from specrag.indexing.versions import VersionStore
from specrag.retrieval import pipeline
from specrag.retrieval.fusion import convex
from specrag.retrieval.recipe import HYBRID
from specrag.retrieval.request import PrfSpec, SearchRequest
from specrag.retrieval.version import open_version
from tests.conftest import demo_documents, demo_queries

N_DOCS = 300
QUERIES = demo_queries(8)
MODES = {"exhaustive": {"mode": "exhaustive"}, "bmp": {"mode": "bmp", "bmp_min_blocks": 0}}


@pytest.fixture(scope="module")
def docs():
    return demo_documents(N_DOCS)


@pytest.fixture(scope="module", params=list(MODES))
def version(request, tmp_path_factory, docs):
    store = VersionStore(tmp_path_factory.mktemp(f"prf-{request.param}"))
    store.build(docs, {"bm25": MODES[request.param]})
    return open_version(store)


@pytest.fixture(scope="module")
def texts(docs):
    text_of = {d.id: d.full_text() for d in docs}
    return lambda version, ids: [text_of[i] for i in ids]


def brute_top(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    """Rows of the k best allowed scores, ties to the lower row, -inf excluded."""
    s = np.where(allowed, scores, -np.inf)
    order = np.lexsort((np.arange(len(s)), -s))[:k]
    return [int(r) for r in order if np.isfinite(s[r])]


def expected_expansion(query: str, feedback: list[tuple[float, str]], spec: PrfSpec) -> dict:
    """RM3 by the book: P(t|Q) mixed with the top fb_terms of sum_D P(D) P(t|D), P(D) the
    document's share of the feedback scores, renormalized; scaled by |Q|."""
    q = analyze(query)
    total_score = sum(score for score, _ in feedback)
    model: dict[str, float] = {}
    for score, text in feedback:
        terms = analyze(text)
        for term in set(terms):
            p = (score / total_score) * terms.count(term) / len(terms)
            model[term] = model.get(term, 0.0) + p
    top = dict(sorted(model.items(), key=lambda kv: (-kv[1], kv[0]))[: spec.fb_terms])
    norm = sum(top.values())
    vocab = set(q) | set(top)
    w = spec.orig_weight
    return {t: len(q) * (w * q.count(t) / len(q) + (1 - w) * top.get(t, 0.0) / norm) for t in vocab}


@pytest.mark.parametrize("masked", [False, True])
def test_prf_equals_brute_force_scoring_of_the_expansion(version, docs, texts, masked):
    searcher = version.searchers["bm25"]
    spec = PrfSpec(fb_docs=5, fb_terms=12, orig_weight=0.4)
    allowed = np.arange(len(docs)) % 3 != 0 if masked else np.ones(len(docs), dtype=bool)
    request = SearchRequest(query="-", k=15, retriever="bm25", prf=spec)
    got = pipeline.search_batch(
        version, QUERIES, request, allowed if masked else None, texts=texts
    ).hits
    plain = searcher.reference_scores(QUERIES)
    vocab = {t: i for i, t in enumerate(searcher_vocab(searcher))}
    for qi, query in enumerate(QUERIES):
        first = brute_top(plain[qi], allowed, spec.fb_docs)
        feedback = [(float(plain[qi, r]), docs[r].full_text()) for r in first]
        expansion = expected_expansion(query, feedback, spec)
        assert len(expansion) > len(set(analyze(query)))  # terms were added
        known = [(vocab[t], w) for t, w in expansion.items() if t in vocab and w > 0]
        batch = QueryBatch.from_lists(
            [np.array([t for t, _ in known])], [np.array([w for _, w in known])], len(vocab)
        )
        truth = searcher.reference_scores_encoded(batch)[0]
        want = brute_top(truth, allowed, request.k)
        hits = got[qi]
        assert all(allowed[version.row_of(h.doc_id)] for h in hits)
        np.testing.assert_allclose([h.score for h in hits], truth[want], rtol=1e-9)
        assert [h.scores["bm25"] for h in hits] == [h.score for h in hits]
        distinct = [r for r in want if np.isclose(truth, truth[r], rtol=1e-9).sum() == 1]
        assert {version.row_of(h.doc_id) for h in hits} >= set(distinct)


def searcher_vocab(searcher) -> list[str]:
    return sorted(searcher._term_of, key=searcher._term_of.get)


def test_orig_weight_one_is_plain_bm25(version, texts):
    plain = SearchRequest(query="-", k=20, retriever="bm25")
    prf = plain.model_copy(update={"prf": PrfSpec(orig_weight=1.0)})
    want = pipeline.search_batch(version, QUERIES, plain).hits
    got = pipeline.search_batch(version, QUERIES, prf, texts=texts).hits
    assert [[(h.doc_id, h.score) for h in q] for q in got] == [
        [(h.doc_id, h.score) for h in q] for q in want
    ]
    # and feedback changes the ranking, so the comparison above is not vacuous
    mixed = prf.model_copy(update={"prf": PrfSpec(orig_weight=0.5)})
    moved = pipeline.search_batch(version, QUERIES, mixed, texts=texts).hits
    assert [[h.doc_id for h in q] for q in moved] != [[h.doc_id for h in q] for q in want]


def test_prf_options_are_validated(version, texts):
    for bad in ({"fb_docs": 0}, {"fb_docs": 51}, {"fb_terms": 101}, {"orig_weight": 1.5}):
        with pytest.raises(ValidationError):
            PrfSpec(**bad)
    with pytest.raises(ValidationError):
        SearchRequest(query="q", prf={"fb_docs": 5, "expand": True})
    with pytest.raises(pipeline.NotAvailable, match="texts"):
        pipeline.search(version, SearchRequest(query="q", retriever="bm25", prf=PrfSpec()))


# -- feedback from the fused list ---------------------------------------------------------

HYBRID_DEPTH = 50


@pytest.fixture(scope="module")
def pair(tmp_path_factory, docs):
    """bm25 (BMP) and dense (the offline MiniLM) over the same documents."""
    store = VersionStore(tmp_path_factory.mktemp("prf-pair"))
    store.build(docs, {"bm25": MODES["bmp"], "dense": {}})
    return open_version(store)


def test_fused_feedback_equals_rm3_from_the_fused_list_by_brute_force(pair, docs, texts):
    """Feedback documents = the top of the plain fused list (each weighted by its fused
    score above the list's lowest); the expansion by the textbook, scored by brute force
    over every document, fused again with the plain dense list: the pipeline's answer."""
    recipe = replace(HYBRID, depth=HYBRID_DEPTH)
    spec = PrfSpec(fb_docs=4, fb_terms=12, orig_weight=0.6, feedback="fused")
    request = SearchRequest(query="-", k=10, rerank=None, prf=spec)
    got = pipeline.search_batch(pair, QUERIES, request, recipe=recipe, texts=texts).hits
    bm25, dense = pair.searchers["bm25"], pair.searchers["dense"]
    plain_bm25 = bm25.search(QUERIES, HYBRID_DEPTH)
    plain_dense = dense.search(QUERIES, HYBRID_DEPTH)
    vocab = {t: i for i, t in enumerate(searcher_vocab(bm25))}
    everything = np.ones(len(docs), dtype=bool)
    moved = 0
    for qi, query in enumerate(QUERIES):
        rows = [[(pair.row_of(h.doc_id), h.score) for h in hits] for hits in (plain_bm25[qi], plain_dense[qi])]  # fmt: skip  # noqa: E501
        fused = convex(rows, None, "minmax", tie_key=int)
        floor = fused[-1][1]
        feedback = [(score - floor, docs[row].full_text()) for row, score in fused[: spec.fb_docs]]
        expansion = expected_expansion(query, feedback, spec)
        known = [(vocab[t], w) for t, w in expansion.items() if t in vocab and w > 0]
        batch = QueryBatch.from_lists(
            [np.array([t for t, _ in known])], [np.array([w for _, w in known])], len(vocab)
        )
        truth = bm25.reference_scores_encoded(batch)[0]
        expanded = [(r, float(truth[r])) for r in brute_top(truth, everything, HYBRID_DEPTH)]
        want = convex([expanded, rows[1]], None, "minmax", tie_key=int)[: request.k]
        np.testing.assert_allclose([h.score for h in got[qi]], [s for _, s in want], rtol=1e-9)
        assert [pair.row_of(h.doc_id) for h in got[qi]] == [r for r, _ in want]
        for hit in got[qi]:
            if "bm25" in hit.scores:
                assert hit.scores["bm25"] == pytest.approx(truth[pair.row_of(hit.doc_id)])
        # the feedback came from the fused list, not bm25's own top: not vacuous
        own = {pair.row_of(h.doc_id) for h in plain_bm25[qi][: spec.fb_docs]}
        moved += own != {row for row, _ in fused[: spec.fb_docs]}
        assert len(expansion) > len(set(analyze(query)))
    assert moved > 0


def test_fused_feedback_with_orig_weight_one_is_the_plain_fusion(pair, texts):
    plain = SearchRequest(query="-", k=20, rerank=None)
    prf = plain.model_copy(update={"prf": PrfSpec(orig_weight=1.0, feedback="fused")})
    want = pipeline.search_batch(pair, QUERIES, plain).hits
    got = pipeline.search_batch(pair, QUERIES, prf, texts=texts)
    assert [[(h.doc_id, h.score) for h in q] for q in got.hits] == [
        [(h.doc_id, h.score) for h in q] for q in want
    ]
    assert "prf" in got.timings_ms


def test_fused_feedback_refuses_a_calibrated_fusion(pair, texts):
    request = SearchRequest(
        query="q", fusion="calibrated", prf=PrfSpec(feedback="fused"),
        retrievers=[{"kind": "bm25"}, {"kind": "dense"}],
    )  # fmt: skip
    with pytest.raises(pipeline.SearchError, match='feedback "fused" needs fusion rrf or convex'):
        pipeline.search(pair, request, texts=texts)
    with pytest.raises(ValidationError):
        PrfSpec(feedback="dense")


def test_calibration_records_tell_the_feedback_modes_apart(pair):
    """bm25's own feedback is recorded as it was before ``feedback`` existed (saved
    calibrations still apply); feedback from the fused list has its own record and file
    name; without a fusion, "fused" is bm25's own feedback and records so."""
    own = pipeline.scores_record(pair, SearchRequest(query="q", rerank=None, prf=PrfSpec()))
    assert own["prf"] == {"fb_docs": 10, "fb_terms": 10, "orig_weight": 0.5}
    fused = pipeline.scores_record(
        pair, SearchRequest(query="q", rerank=None, prf=PrfSpec(feedback="fused"))
    )
    assert fused["prf"]["feedback"] == "fused"
    assert pipeline.calibration_key(own) == "bm25+dense-convex-prf"
    assert pipeline.calibration_key(fused) == "bm25+dense-convex-prf-fused"
    alone = SearchRequest(query="q", retriever="bm25", prf=PrfSpec(feedback="fused"))
    assert pipeline.scores_record(pair, alone) == pipeline.scores_record(
        pair, alone.model_copy(update={"prf": PrfSpec()})
    )
