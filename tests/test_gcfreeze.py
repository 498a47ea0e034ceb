"""What is loaded once and kept (models, opened index versions) is frozen out of Python's
full garbage collections (``specrag/gcfreeze.py``), once per load and never per request,
and a version replaced by a newer one is still released."""

from __future__ import annotations

import gc
import weakref

from specrag.api.service import CollectionService
from specrag.indexing.encoders import models
from specrag.retrieval.request import SearchRequest
from specrag.settings import Settings
from tests.conftest import demo_documents
from tests.tiny_models import tiny_splade_dir


def test_a_model_is_frozen_once_when_loaded_not_on_every_use(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(models, "freeze_after_load", lambda: calls.append(1))
    path = str(tiny_splade_dir(tmp_path / "splade"))
    first = models.load_model(path, "sparse")
    assert models.load_model(path, "sparse") is first
    assert calls == [1]


def test_an_opened_version_is_frozen_and_a_replaced_one_released(tmp_path):
    gc.unfreeze()
    service = CollectionService(Settings(home=tmp_path))
    service.start()
    try:
        docs = demo_documents(12)
        service.index("c", docs, ["bm25"])
        request = SearchRequest(query="cancer", k=3, retriever="bm25", rerank=None)
        assert service.search("c", request).hits
        assert gc.get_freeze_count() > 0  # the opened version is out of the collector's walks
        old = weakref.ref(next(iter(service._bases.values())))
        service.index("c", docs[:8], ["bm25"])
        assert service.search("c", request).hits
        assert old() is None  # dropped by the switch, freed by the collection it ran
    finally:
        service.close()
        gc.unfreeze()
