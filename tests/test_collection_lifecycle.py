"""Deleting a collection: its running build is cancelled and waited for, its files go
(errors raised, never ignored), and a collection created again under the same name starts
from nothing: no old CURRENT, no cached version, no late activation by the old build."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from specrag.api import service as service_module
from specrag.api.service import CollectionService, NotReady
from specrag.indexing.kinds.base import IndexKind, KindConfig
from specrag.indexing.registry import KINDS, register
from specrag.retrieval.request import SearchRequest
from specrag.settings import Settings
from specrag.types import Document
from tests.conftest import demo_documents

STATE: dict = {}


class SlowConfig(KindConfig):
    pass


class NoSearcher:
    kind = "test_slow"
    config = None

    @classmethod
    def load(cls, index_dir, config, doc_ids):
        return cls()

    def search(self, queries, k, allowed=None):
        return [[] for _ in queries]

    def reference_scores(self, queries):
        return np.zeros((len(queries), 0))


def slow_builder(corpus, out_dir: Path, config: SlowConfig, progress) -> dict:
    """Reports progress forever (until the build is cancelled), writing a file each step."""
    STATE["started"].set()
    deadline = time.monotonic() + 30
    step = 0
    while time.monotonic() < deadline:
        step += 1
        (out_dir / f"step-{step}").write_text("x")
        progress(step, 10**6, "test_slow: waiting")
        time.sleep(0.01)
    raise AssertionError("the build was never cancelled")


@pytest.fixture
def slow_kind():
    register(IndexKind("test_slow", SlowConfig, slow_builder, NoSearcher, searchable=False))
    STATE.clear()
    STATE["started"] = threading.Event()
    yield "test_slow"
    KINDS.pop("test_slow", None)


@pytest.fixture
def service(tmp_path):
    svc = CollectionService(Settings(home=tmp_path / "home"))
    svc.start()
    yield svc
    svc.close()


def search_ids(service: CollectionService, name: str) -> list[str]:
    found = service.search(name, SearchRequest(query="cells", k=5, retriever="bm25"))
    return [h.doc_id for h in found.hits]


def test_a_collection_created_again_never_reads_the_old_index(service):
    service.index("c", demo_documents(20), ["bm25"])
    old_folder = service.versions("c").root
    assert search_ids(service, "c")
    service.delete_collection("c")
    assert not old_folder.exists()
    service.create_collection("c", ["bm25"])
    assert service.versions("c").root != old_folder
    with pytest.raises(NotReady):
        search_ids(service, "c")  # not the cached version of the deleted collection
    service.upsert("c", [Document("new", "cells in a new collection")])
    service.index("c", [], ["bm25"])
    assert search_ids(service, "c") == ["new"]


def test_delete_cancels_a_running_build_and_waits_for_it(service, slow_kind):
    service.create_collection("c", {"test_slow": {}})
    service.upsert("c", demo_documents(5))
    folder = service.versions("c").root
    job = service.start_build("c")
    assert STATE["started"].wait(30)
    started = time.monotonic()
    service.delete_collection("c")
    assert time.monotonic() - started < 10
    assert not folder.exists(), "the build was still writing, or the folder was left"
    assert not list(folder.parent.iterdir()), list(folder.parent.iterdir())
    service.create_collection("c", ["bm25"])
    with pytest.raises(service_module.NotFound):
        service.get_job(job.id)
    with pytest.raises(NotReady):
        search_ids(service, "c")


def test_a_queued_build_of_a_deleted_collection_does_nothing(service, slow_kind):
    service.create_collection("slow", {"test_slow": {}})
    service.upsert("slow", demo_documents(5))
    service.create_collection("c", ["bm25"])
    service.upsert("c", demo_documents(5))
    service.start_build("slow")  # occupies the one worker
    assert STATE["started"].wait(30)
    queued = service.start_build("c")
    service.delete_collection("c")
    service.delete_collection("slow")  # cancels the slow build; the queued one runs next
    service.close()  # waits for the worker
    assert not any((service.settings.collections_dir).iterdir())
    with pytest.raises(service_module.NotFound):
        service.get_job(queued.id)


def test_a_failure_to_remove_the_files_is_raised(service, monkeypatch):
    service.index("c", demo_documents(10), ["bm25"])

    def refuse(path, *args, **kwargs):
        raise PermissionError(f"cannot remove {path}")

    monkeypatch.setattr(service_module.shutil, "rmtree", refuse)
    with pytest.raises(PermissionError):
        service.delete_collection("c")
