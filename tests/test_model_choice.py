"""Clients choose only configured models, and loaded models and per-version objects live
in bounded LRU caches."""

from __future__ import annotations

import pytest

from specrag.api.service import CollectionService, ModelNotAllowed
from specrag.api.stages import StageBuilder
from specrag.cache import LRUCache
from specrag.retrieval.request import RerankSpec, SearchRequest
from specrag.settings import Settings
from tests.conftest import demo_documents


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    settings = Settings(
        home=tmp_path_factory.mktemp("models"), allowed_models=["/no/such/cross-encoder"]
    )
    svc = CollectionService(settings)
    svc.index("c", demo_documents(20), {"bm25": {}})
    yield svc
    svc.close()


def test_an_allowed_model_passes_the_check_and_others_are_refused(service):
    version = service.version_for("c")
    allowed = service.allowed_models(version)
    assert {"extractive", "all-MiniLM-L6-v2", "/no/such/cross-encoder"} <= allowed
    with pytest.raises(ModelNotAllowed, match="'evil' is not one of the configured models"):
        service.search("c", SearchRequest(query="cells", rerank=RerankSpec(model="evil")))
    # allowed, so the request gets as far as loading it (which fails: a clear 400 too)
    request = SearchRequest(
        query="cells", rerank=RerankSpec(method="cross-encoder", model="/no/such/cross-encoder")
    )
    with pytest.raises(Exception, match="rerank cross-encoder") as info:
        service.search("c", request)
    assert not isinstance(info.value, ModelNotAllowed)


def test_the_models_a_collections_kinds_were_built_with_are_allowed(service):
    class FakeVersion:
        manifest = {"kinds": {"dense": {"config": {"model": "my/dense"}}}}

    assert "my/dense" in service.allowed_models(FakeVersion())
    service.check_model("rerank.model", "my/dense", FakeVersion())


def test_lru_cache_keeps_the_most_recent_by_count():
    cache: LRUCache[int] = LRUCache(2)
    loads = []

    def make(v):
        return lambda: loads.append(v) or v

    assert cache.get_or_create("a", make(1)) == 1
    assert cache.get_or_create("b", make(2)) == 2
    assert cache.get_or_create("a", make(9)) == 1  # a hit, and now the newest
    cache.get_or_create("c", make(3))  # evicts b, the least recently used
    assert "b" not in cache and "a" in cache and len(cache) == 2
    assert loads == [1, 2, 3]


def test_rerankers_of_old_versions_are_released(monkeypatch):
    from specrag.api import stages

    monkeypatch.setattr(stages, "make_reranker", lambda method, model, version, fusion: object())
    builder = StageBuilder(store=None)

    class V:
        def __init__(self, vid):
            self.id = vid

    for i in range(stages.RERANKER_CACHE_SIZE + 3):
        builder._reranker(V(f"v{i}"), RerankSpec())
    assert len(builder._rerankers) == stages.RERANKER_CACHE_SIZE
    assert ("v0", "maxsim", None) not in builder._rerankers
