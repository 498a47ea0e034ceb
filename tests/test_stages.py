"""The late stages wired into the service: `specrag calibrate` then `min_relevance`, and
the `rerank` stage of a search request."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.api.cli import main
from specrag.api.service import CollectionService
from specrag.retrieval.request import RerankSpec, SearchRequest
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
