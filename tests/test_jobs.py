"""run_build: a real bm25 build through the job machinery, snapshots that hold while the
collection changes, throttled progress, failures, and no roll-back by a slow build."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from specrag.indexing import jobs
from specrag.indexing.jobs import run_build
from specrag.indexing.kinds.base import IndexKind, KindConfig
from specrag.indexing.registry import KINDS, register
from specrag.indexing.versions import VersionStore
from specrag.storage.db import create_engine_for, init_db
from specrag.storage.store import DocumentStore
from specrag.types import Document
from tests.conftest import demo_documents


class EmptyConfig(KindConfig):
    mode: str = "plain"


class NoSearcher:
    """The recording kind is never searched; the protocol still asks for a searcher."""

    kind = "test_record"
    config = None

    @classmethod
    def load(cls, index_dir, config, doc_ids):
        return cls()

    def search(self, queries, k, allowed=None):
        return [[] for _ in queries]

    def reference_scores(self, queries):
        return np.zeros((len(queries), 0))


#: What the test builders saw and should do, set by each test.
STATE: dict = {}


def build(store, versions, kinds, **options) -> str:
    """A build of the collection "c" configured with ``kinds``."""
    store.set_kinds("c", {name: dict(cfg or {}) for name, cfg in kinds.items()})
    return run_build(store, versions, "c", **options)


def recording_builder(corpus, out_dir: Path, config: EmptyConfig, progress) -> dict:
    """Reads the corpus twice, with writes to the collection in between, and reports
    progress for every document."""
    first = []
    for i, doc in enumerate(corpus):
        first.append(doc)
        progress(i + 1, len(corpus), "test_record: pass 1")
        if i == 2 and "during" in STATE:
            STATE["during"]()
    second = list(corpus)
    STATE["passes"] = (first, second, len(corpus))
    if config.mode == "fail":
        raise RuntimeError("boom in the builder")
    if config.mode == "wait":
        STATE["started"].set()
        assert STATE["release"].wait(30)
    (out_dir / "ids.txt").write_text("\n".join(d.id for d in first))
    return {"n": len(first)}


@pytest.fixture
def test_kind():
    register(IndexKind("test_record", EmptyConfig, recording_builder, NoSearcher, searchable=False))
    STATE.clear()
    yield "test_record"
    KINDS.pop("test_record", None)
    STATE.clear()


@pytest.fixture
def env(tmp_path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'specrag.db'}")
    init_db(engine)
    store = DocumentStore(engine)
    store.create_collection("c", {"bm25": {}})
    yield store, VersionStore(tmp_path / "collections" / "c")
    engine.dispose()


def test_bm25_build_through_run_build(env):
    store, versions = env
    docs = demo_documents(40)
    store.upsert("c", docs)
    job = store.create_job("c", ["bm25"])
    version = run_build(store, versions, "c", job_id=job.id)
    finished = store.get_job(job.id)
    assert (finished.status, finished.version_id, finished.progress) == ("succeeded", version, 1.0)
    assert finished.started_at <= finished.finished_at and "built 40 documents" in finished.message
    assert versions.current() == version
    assert store.get_collection("c").current_version == version
    manifest = versions.manifest(version)
    assert manifest["n_docs"] == 40 and "bm25" in manifest["kinds"]
    assert manifest["generation"] == store.get_collection("c").generation
    ids = np.load(versions.path(version) / "ids.npy")
    assert ids.tolist() == [d.id for d in docs]  # internal row i = i-th document by row id


def test_snapshot_holds_while_documents_change_and_progress_is_throttled(
    env, test_kind, monkeypatch
):
    store, versions = env
    store.upsert("c", [Document(f"d{i}", f"text {i}") for i in range(300)])
    before = [store.get_document("c", f"d{i}") for i in range(300)]
    STATE["during"] = lambda: (
        store.upsert("c", [Document("d5", "changed"), Document("new", "added")]),
        store.delete_documents("c", ["d0"]),
    )
    writes = []
    real_update = store.update_job

    def counting_update(job_id, **fields):
        writes.append(fields)
        return real_update(job_id, **fields)

    monkeypatch.setattr(store, "update_job", counting_update)
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL_S", 3600.0)
    version = build(store, versions, {test_kind: {}})
    first, second, n = STATE["passes"]
    assert first == before and second == before and n == 300
    assert (versions.path(version) / test_kind / "ids.txt").read_text().split("\n")[0] == "d0"
    # 300 progress calls: one write on the stage change, one at the stage's end.
    progress_writes = [
        w for w in writes if "done" in w and w.get("stage", "").startswith("test_record")
    ]
    assert len(progress_writes) == 2 and progress_writes[-1]["done"] == 300
    assert store.list_jobs("c")[0].status == "succeeded"  # job_id None: a job was created


def test_failure_marks_the_job_and_keeps_the_old_version(env, test_kind):
    store, versions = env
    store.upsert("c", demo_documents(10))
    good = build(store, versions, {test_kind: {}})
    job = store.create_job("c", [test_kind])
    with pytest.raises(RuntimeError, match="boom"):
        build(store, versions, {test_kind: {"mode": "fail"}}, job_id=job.id)
    failed = store.get_job(job.id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error == "RuntimeError: boom in the builder"
    assert "test_record: pass 1" in failed.message
    assert versions.current() == good and versions.list() == [good]
    with pytest.raises(ValueError, match="unknown index kind 'nope'"):
        build(store, versions, {"nope": {}})


def test_empty_collection_fails_clearly(env):
    store, versions = env
    job = store.create_job("c", ["bm25"])
    with pytest.raises(ValueError, match="no documents"):
        run_build(store, versions, "c", job_id=job.id)
    assert store.get_job(job.id).status == "failed"
    assert "no documents" in store.get_job(job.id).message


def test_a_slow_build_of_older_documents_does_not_roll_back(env, test_kind):
    store, versions = env
    store.upsert("c", demo_documents(10))
    STATE["started"], STATE["release"] = threading.Event(), threading.Event()
    result: dict = {}
    slow = threading.Thread(
        target=lambda: result.setdefault("v", build(store, versions, {test_kind: {"mode": "wait"}}))
    )
    slow.start()
    assert STATE["started"].wait(30)
    store.upsert("c", [Document("late", "a later document")])
    fast = build(store, versions, {"bm25": {}})
    STATE["release"].set()
    slow.join(30)
    assert versions.current() == fast
    assert store.get_collection("c").current_version == fast
    slow_job = next(j for j in store.list_jobs("c") if j.version_id == result["v"])
    assert slow_job.status == "succeeded" and "not made current" in slow_job.message
    assert {v.id for v in store.list_versions("c")} == {fast, result["v"]}


def test_a_running_build_beats_so_a_server_can_tell_it_from_a_dead_one(env):
    import time

    store, _versions = env
    job = store.create_job("c", ["bm25"])
    store.update_job(job.id, status="running")
    with store.engine.connect() as conn:
        first = conn.exec_driver_sql(
            "SELECT heartbeat_at FROM build_jobs WHERE id = ?", (job.id,)
        ).scalar()
    with jobs.Heartbeat(store, job.id, interval=0.05):
        time.sleep(0.4)
    with store.engine.connect() as conn:
        last = conn.exec_driver_sql(
            "SELECT heartbeat_at FROM build_jobs WHERE id = ?", (job.id,)
        ).scalar()
    assert first is not None and last > first
