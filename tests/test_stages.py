"""The late stages wired into the service: `specrag calibrate` then `min_relevance`, and
the `rerank` stage of a search request."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.api.cli import main
from specrag.api.service import CollectionService
from specrag.errors import UserError
from specrag.retrieval.calibration import CalibrationMismatch
from specrag.retrieval.pipeline import NotAvailable, SearchError
from specrag.retrieval.recipe import HYBRID
from specrag.retrieval.request import PrfSpec, RerankSpec, SearchRequest
from specrag.settings import Settings
from tests.conftest import DEMO_CORPUS, DEMO_QRELS, DEMO_QUERIES


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("stages-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPECRAG_HOME", str(home))
    assert (
        main(["index", "--collection", "demo", "--corpus", str(DEMO_CORPUS), "--kinds", "bm25"])
        == 0
    )
    svc = CollectionService(Settings())
    yield svc
    svc.close()
    mp.undo()


def test_min_relevance_needs_a_calibration_then_filters(service, capsys):
    request = SearchRequest(
        query="vitamin D and bone density", k=20, retriever="bm25", min_relevance=0.2
    )
    with pytest.raises(Exception, match="specrag calibrate"):
        service.search("demo", request)
    rc = main(
        [
            "calibrate",
            "--collection",
            "demo",
            "--queries",
            str(DEMO_QUERIES),
            "--qrels",
            str(DEMO_QRELS),
            "--retriever",
            "bm25",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    unfiltered = service.search("demo", request.model_copy(update={"min_relevance": 0.0}))
    probs = [h.scores["relevance"] for h in unfiltered.hits]
    assert all(0.0 <= p <= 1.0 for p in probs)
    # For one query the calibrated probability is monotone in the score.
    assert all(a >= b - 1e-12 for a, b in zip(probs, probs[1:], strict=False))
    filtered = service.search("demo", request)
    want = [h.doc_id for h in unfiltered.hits if h.scores["relevance"] >= 0.2]
    assert [h.doc_id for h in filtered.hits] == want


def test_rerank_stage_reorders_the_first_stage_top_n(service):
    base = SearchRequest(query="statins and cancer risk", k=10, retriever="bm25")
    first = service.search("demo", base)
    reranked = service.search(
        "demo", base.model_copy(update={"rerank": RerankSpec(method="maxsim", top_n=10)})
    )
    assert sorted(h.doc_id for h in reranked.hits) == sorted(h.doc_id for h in first.hits)
    assert all("maxsim" in h.scores for h in reranked.hits)
    assert np.all(np.diff([h.score for h in reranked.hits]) <= 1e-9)
    assert "rerank" in reranked.timings_ms


def test_maxsim_rerank_is_asked_for_not_default(service):
    """A collection with a colbert kind: a plain hybrid request is the first stage alone,
    the same as `rerank: null`; asking for MaxSim reranks over the token store."""
    from tests.conftest import demo_documents

    service.index("late", demo_documents(60), ["bm25", "colbert"])
    base = SearchRequest(query="statins and cancer risk", k=5)
    default = service.search("late", base)
    explicit = service.search(
        "late", base.model_copy(update={"rerank": RerankSpec(method="maxsim")})
    )
    off = service.search("late", base.model_copy(update={"rerank": None}))
    assert [(h.doc_id, h.score) for h in default.hits] == [(h.doc_id, h.score) for h in off.hits]
    assert all("maxsim" in h.scores for h in explicit.hits) and "rerank" in explicit.timings_ms
    assert all("maxsim" not in h.scores for h in default.hits)
    assert "rerank" not in default.timings_ms


def calibrate(collection: str, *extra: str) -> int:
    return main(
        ["calibrate", "--collection", collection, "--queries", str(DEMO_QUERIES)]
        + ["--qrels", str(DEMO_QRELS), *extra]
    )


@pytest.fixture(scope="module")
def pair(service):
    """A collection with bm25 and dense (hybrid fuses them), calibrated for bm25 alone,
    dense alone and the hybrid."""
    from tests.conftest import demo_documents

    service.index("pair", demo_documents(300), ["bm25", "dense"])
    for retriever in ("bm25", "dense", "hybrid"):
        assert calibrate("pair", "--retriever", retriever) == 0
    return "pair"


QUERY = "vitamin D and bone density"


def relevance_by_doc(service, collection: str, request: SearchRequest) -> dict[str, float]:
    return {h.doc_id: h.scores["relevance"] for h in service.search(collection, request).hits}


def test_a_probability_does_not_depend_on_k(service, pair):
    """The same document has the same probability at k=5, 10 and 100 (the calibration's
    depth), for one retriever and for a fusion (whose fused scores moved with the
    candidate depth, so k=150 gave other probabilities); a k beyond the depth the
    calibration was fitted on is refused."""
    for retriever in ("bm25", "hybrid"):
        by_k = {
            k: relevance_by_doc(
                service, pair, SearchRequest(query=QUERY, k=k, retriever=retriever, min_relevance=0)
            )
            for k in (5, 10, 100)
        }
        assert len(by_k[5]) == 5 and len(by_k[100]) > 20
        for k in (10, 100):
            assert {d: by_k[k][d] for d in by_k[5]} == by_k[5]
        assert len(set(by_k[100].values())) > 10  # probabilities that vary with the score
        with pytest.raises(Exception, match="beyond the depth") as err:
            service.search(
                pair, SearchRequest(query=QUERY, k=150, retriever=retriever, min_relevance=0)
            )
        assert isinstance(err.value, UserError)


def test_a_calibration_refuses_another_pipelines_scores(service, pair, tmp_path):
    """A bm25 calibration is not applied to hybrid scores: each scoring pipeline reads its
    own file, and a file whose record names another pipeline is refused (4xx)."""
    from specrag.retrieval.calibration import calibration_path

    version = service.version_for(pair)
    folder = version.path / "calibration"
    assert sorted(p.stem for p in folder.glob("*.json")) == [
        "bm25",
        "bm25+dense-convex",
        "dense",
    ]
    hybrid = calibration_path(version.path, "bm25+dense-convex")
    saved = hybrid.read_bytes()
    request = SearchRequest(query=QUERY, k=5, min_relevance=0.1)
    try:
        hybrid.write_bytes(calibration_path(version.path, "bm25").read_bytes())
        with pytest.raises(CalibrationMismatch, match="fitted on bm25, not on bm25:1"):
            service.search(pair, request)
        hybrid.unlink()
        with pytest.raises(
            NotAvailable, match=r"min_relevance needs a calibration .* \(it has: bm25, dense\)"
        ):
            service.search(pair, request)
        # Other fusion settings than the calibrated ones: refused by the record.
        hybrid.write_bytes(saved)
        other = "zscore" if HYBRID.normalization == "minmax" else "minmax"
        with pytest.raises(CalibrationMismatch, match=f"normalization {HYBRID.normalization}"):
            service.search(pair, request.model_copy(update={"normalization": other}))
        # the API's error table answers it 400 with the message
        from specrag.api.app import ERROR_STATUS

        assert ERROR_STATUS[SearchError] == ERROR_STATUS[UserError] == 400
        assert issubclass(CalibrationMismatch, UserError)
    finally:
        hybrid.write_bytes(saved)
    assert service.search(pair, request).hits


def test_an_old_calibration_file_is_refused_with_the_advice_to_recalibrate(service, tmp_path):
    """Files written before calibrations recorded their pipeline: refused, not guessed."""
    import json

    from specrag.retrieval.calibration import Calibrator, calibration_path
    from tests.conftest import demo_documents

    service.index("legacy", demo_documents(40), ["bm25"])
    version = service.version_for("legacy")
    legacy = calibration_path(version.path, "search")
    old = {"format": 1, "features": [], "weights": [], "bias": 0, "top_n": 100}
    legacy.parent.mkdir(exist_ok=True)
    legacy.write_text(json.dumps(old))
    request = SearchRequest(query=QUERY, k=5, retriever="bm25", min_relevance=0.1)
    try:
        with pytest.raises(UserError, match="re-run `specrag calibrate`"):
            Calibrator.load(legacy)
        # the version has only the old file: refused with the advice, not applied
        with pytest.raises(UserError, match="re-run `specrag calibrate`"):
            service.search("legacy", request)
    finally:
        legacy.unlink()


def test_calibrated_fusion_fuses_each_retrievers_probability(service, pair):
    """fusion=calibrated: a hit's score is the weighted mean of each retriever's calibrated
    probability, read off searches of each retriever alone (the list's lowest where a
    retriever did not return the hit)."""
    from specrag.retrieval.request import RetrieverSpec

    weights = {"bm25": 0.6, "dense": 0.4}
    # 100 candidates each: the depth of the single-retriever searches that give the truth
    specs = [RetrieverSpec(kind=k, weight=w, k=100) for k, w in weights.items()]
    request = SearchRequest(query=QUERY, k=20, retrievers=specs, fusion="calibrated")
    fused = service.search(pair, request).hits
    alone = {
        kind: relevance_by_doc(
            service, pair, SearchRequest(query=QUERY, k=100, retriever=kind, min_relevance=0)
        )
        for kind in weights
    }
    want = {
        doc: sum(w * alone[k].get(doc, min(alone[k].values())) for k, w in weights.items())
        for doc in set(alone["bm25"]) | set(alone["dense"])
    }
    best = sorted(want.items(), key=lambda item: -item[1])[:20]
    np.testing.assert_allclose([h.score for h in fused], [s for _, s in best], rtol=1e-9)
    assert [h.doc_id for h in fused][:5] == [d for d, _ in best][:5]
    assert all(0 <= h.score <= 1 for h in fused)
    # PRF expands bm25 queries: a search without bm25 is refused
    with pytest.raises(SearchError, match="no bm25"):
        service.search(pair, SearchRequest(query=QUERY, retriever="dense", prf=PrfSpec()))
    # a retriever without a calibration of its own (bm25 with PRF): refused, naming it
    with pytest.raises(
        NotAvailable,
        match=r"fusion calibrated needs a calibration of this search's scores \(bm25-prf\)",
    ):
        service.search(pair, request.model_copy(update={"prf": PrfSpec()}))


def test_fused_feedback_through_the_service(service, pair):
    """The service lends the documents' texts to RM3 from the fused list: with the
    original query's weight at 1 it is the plain hybrid; with feedback the ranking moves."""
    plain = SearchRequest(query=QUERY, k=20, rerank=None)
    want = [(h.doc_id, h.score) for h in service.search(pair, plain).hits]
    same = plain.model_copy(update={"prf": PrfSpec(orig_weight=1.0, feedback="fused")})
    assert [(h.doc_id, h.score) for h in service.search(pair, same).hits] == want
    moved = plain.model_copy(update={"prf": PrfSpec(feedback="fused")})
    assert [(h.doc_id, h.score) for h in service.search(pair, moved).hits] != want
