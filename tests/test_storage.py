"""DocumentStore: schema, collections, documents, snapshots, versions, jobs. Runs on SQLite,
and on PostgreSQL too when SPECRAG_TEST_POSTGRES_URL names a scratch database."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, update

from specrag.storage.db import create_engine_for, init_db
from specrag.storage.models import Base, BuildJobRow
from specrag.storage.store import (
    AlreadyExists,
    DocumentStore,
    InvalidDocument,
    MetadataLimits,
    NotFound,
)
from specrag.types import Document
from tests.conftest import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def engine(request, tmp_path):
    with database_url(request.param, tmp_path / "db") as url:
        engine = create_engine_for(url)
        init_db(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def store(engine) -> DocumentStore:
    return DocumentStore(engine)


def doc(i: int, text: str | None = None, **meta) -> Document:
    return Document(id=f"d{i}", text=text or f"text {i}", title=f"title {i}", metadata=meta)


def test_migrations_create_the_models_schema_and_rerun_as_no_op(engine):
    init_db(engine)  # second run: already at head
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diffs == []
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert {"collections", "documents", "index_versions", "build_jobs", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )


def test_collection_lifecycle(store):
    info = store.create_collection("sci_fact-1", {"bm25": {"k1": 1.2}})
    assert (info.name, info.kinds, info.n_documents, info.generation) == (
        "sci_fact-1",
        {"bm25": {"k1": 1.2}},
        0,
        0,
    )
    assert info.created_at.tzinfo is not None and info.current_version is None
    with pytest.raises(AlreadyExists, match="sci_fact-1"):
        store.create_collection("sci_fact-1")
    for bad in ["", "a b", "x" * 65, "../etc", "naïve"]:
        with pytest.raises(ValueError, match="invalid collection name"):
            store.create_collection(bad)
    store.create_collection("other")
    assert [c.name for c in store.list_collections()] == ["other", "sci_fact-1"]
    store.set_kinds("other", {"dense": {}})
    assert store.get_collection("other").kinds == {"dense": {}}
    store.delete_collection("other")
    with pytest.raises(NotFound, match="other"):
        store.get_collection("other")
    with pytest.raises(NotFound):
        store.delete_collection("other")
    with pytest.raises(NotFound):
        store.set_kinds("other", {})


def test_upsert_inserts_updates_in_place_and_bumps_generation(store):
    store.create_collection("c")
    assert store.upsert("c", [doc(i, year=2000 + i) for i in range(5)], batch_size=2) == 5
    assert store.get_collection("c").generation == 1
    # Update d1 and d3, add d5: updated docs keep their place in the corpus order.
    store.upsert("c", [doc(3, "new three", year=1), doc(5), doc(1, "new one")])
    assert store.count("c") == 6
    assert store.get_collection("c").generation == 2
    assert store.get_document("c", "d3") == Document("d3", "new three", "title 3", {"year": 1})
    assert store.get_document("c", "missing") is None
    with store.corpus("c") as corpus:
        assert [d.id for d in corpus] == ["d0", "d1", "d2", "d3", "d4", "d5"]
    # Within one call a repeated id is written once, the last occurrence wins.
    assert store.upsert("c", [doc(7, "first"), doc(7, "second")]) == 1
    assert store.get_document("c", "d7").text == "second"


def test_upsert_is_all_or_nothing_and_rejects_bad_documents(store):
    store.create_collection("c")
    good = [doc(i) for i in range(10)]
    with pytest.raises(ValueError, match="NaN"):
        store.upsert("c", [*good, doc(99, score=math.nan)], batch_size=3)
    assert store.count("c") == 0 and store.get_collection("c").generation == 0
    cases = [
        (Document("", "t"), "non-empty string"),
        (Document("x", None), "text must be a string"),
        (Document("x", "t", metadata={1: "a"}), "not a string"),
        (Document("x", "t", metadata={"a": {"b": {1, 2}}}), "a.b has type set"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            store.upsert("c", [bad])
    with pytest.raises(NotFound):
        store.upsert("nope", good)


def test_metadata_past_the_depth_or_size_limit_is_refused_and_an_empty_document_is_kept(
    engine,
):
    store = DocumentStore(engine, MetadataLimits(max_depth=4, max_bytes=1000))
    store.create_collection("c")

    def nested(levels: int) -> dict:
        value: dict = {"leaf": 1}
        for _ in range(levels - 1):
            value = {"a": value}
        return value

    store.upsert("c", [doc(1, **nested(3)["a"])])  # 3 levels with the metadata object
    store.upsert("c", [Document("list", "t", metadata={"a": {"b": {"c": [1]}}})])
    for bad in (nested(5), {"a": {"b": {"c": [[1]]}}}, nested(100_000)):
        with pytest.raises(InvalidDocument, match="deeper than 4 levels.*max_metadata_depth"):
            store.upsert("c", [Document("deep", "t", metadata=bad)])
    with pytest.raises(InvalidDocument, match="limit is 1000.*max_metadata_bytes"):
        store.upsert("c", [Document("big", "t", metadata={"s": "x" * 1000})])
    assert store.get_document("c", "deep") is None and store.get_document("c", "big") is None
    store.upsert("c", [Document("empty", "", metadata={"tag": "e"})])
    assert store.get_document("c", "empty") == Document("empty", "", None, {"tag": "e"})
    assert store.matching_ids("c", {"tag": "e"}) == ["empty"]


def test_document_count_stays_exact_and_empty_writes_change_nothing(store, engine):
    import random

    from sqlalchemy import func, select

    from specrag.storage.models import DocumentRow

    store.create_collection("c")
    rng = random.Random(7)
    for _ in range(30):
        if rng.random() < 0.6:
            store.upsert(
                "c",
                [doc(rng.randrange(200)) for _ in range(rng.randrange(1, 40))],
                batch_size=rng.choice([1, 7, 1000]),
            )
        else:
            store.delete_documents(
                "c", [f"d{rng.randrange(200)}" for _ in range(rng.randrange(1, 30))]
            )
        with engine.connect() as conn:
            real = conn.scalar(select(func.count()).select_from(DocumentRow))
        assert store.count("c") == store.get_collection("c").n_documents == real
    generation = store.get_collection("c").generation
    assert store.upsert("c", []) == 0 and store.delete_documents("c", ["nope"]) == 0
    assert store.get_collection("c").generation == generation


def test_delete_documents_and_cascade(store):
    store.create_collection("c")
    store.upsert("c", [doc(i) for i in range(1200)])
    generation = store.get_collection("c").generation
    ids = [f"d{i}" for i in range(0, 1200, 2)] + ["d0", "unknown"]
    assert store.delete_documents("c", ids) == 600
    assert store.count("c") == 600
    assert store.get_collection("c").generation == generation + 1
    assert store.delete_documents("c", ["unknown"]) == 0
    assert store.get_collection("c").generation == generation + 1  # nothing removed
    assert store.matching_ids("c") == [f"d{i}" for i in range(1, 1200, 2)]
    job = store.create_job("c", ["bm25"])
    store.record_version("c", "v1", {"bm25": {}}, 600)
    store.delete_collection("c")
    store.create_collection("c")  # a new collection of the same name starts empty
    assert store.count("c") == 0 and store.list_jobs("c") == [] and store.list_versions("c") == []
    with pytest.raises(NotFound):
        store.get_job(job.id)


def test_corpus_snapshot_is_stable_while_documents_change(store):
    store.create_collection("c")
    store.upsert("c", [doc(i, year=i) for i in range(25)])
    expected = [store.get_document("c", f"d{i}") for i in range(25)]
    with store.corpus("c", page_size=4) as corpus:
        assert len(corpus) == 25
        first_pass = []
        for i, d in enumerate(corpus):
            first_pass.append(d)
            if i == 10:  # writes from other connections, mid-iteration
                store.upsert("c", [doc(3, "changed"), doc(20, "changed"), doc(100)])
                store.delete_documents("c", ["d0", "d15"])
        assert first_pass == expected
        assert list(corpus) == expected  # a second pass after the writes
        assert len(corpus) == 25
        assert corpus.generation == 1
    with pytest.raises(RuntimeError, match="closed"):
        list(corpus)
    with store.corpus("c") as fresh:
        ids = [d.id for d in fresh]
        assert len(fresh) == 24 and "d0" not in ids and ids[-1] == "d100"
        assert fresh.generation == 3


def test_matching_ids_applies_the_filter(store):
    store.create_collection("c")
    store.upsert("c", [doc(i, year=2000 + i, topic=["a", "b"][i % 2]) for i in range(10)])
    assert store.matching_ids("c", {"year": {"$gte": 2007}}) == ["d7", "d8", "d9"]
    assert store.matching_ids("c", {"topic": "b", "year": {"$lt": 2004}}) == ["d1", "d3"]
    assert store.matching_ids("c", {}) == [f"d{i}" for i in range(10)]


def test_versions_are_recorded_and_one_is_current(store):
    store.create_collection("c")
    store.record_version("c", "v1", {"bm25": {}}, 10, generation=1, current=True)
    store.record_version("c", "v2", {"bm25": {}}, 12, generation=2)
    assert store.get_collection("c").current_version == "v1"
    store.set_current_version("c", "v2")
    assert store.get_collection("c").current_version == "v2"
    assert [(v.id, v.status, v.n_docs) for v in store.list_versions("c")] == [
        ("v2", "current", 12),
        ("v1", "ready", 10),
    ]
    with pytest.raises(NotFound, match="v9"):
        store.set_current_version("c", "v9")


def test_jobs_lifecycle(store):
    store.create_collection("c")
    job = store.create_job("c", ["bm25", "dense"])
    assert (job.status, job.collection, job.kinds, job.progress) == (
        "queued",
        "c",
        ["bm25", "dense"],
        0.0,
    )
    store.update_job(job.id, status="running", stage="bm25", done=3, total=10, progress=0.3)
    running = store.get_job(job.id)
    assert running.status == "running" and running.started_at is not None and running.done == 3
    store.update_job(job.id, status="succeeded", progress=1.0, version_id="v1", message="ok")
    finished = store.get_job(job.id)
    assert finished.finished_at >= finished.started_at and finished.version_id == "v1"
    second = store.create_job("c", {"bm25": {}})
    assert [j.id for j in store.list_jobs("c")] == [second.id, job.id]
    with pytest.raises(ValueError, match="invalid job status"):
        store.update_job(job.id, status="done")
    with pytest.raises(ValueError, match="unknown job field"):
        store.update_job(job.id, colour="red")
    with pytest.raises(ValueError, match="progress"):
        store.update_job(job.id, progress=1.5)
    with pytest.raises(NotFound):
        store.update_job("nope", stage="x")
    with pytest.raises(NotFound):
        store.get_job("nope")


def test_fail_stale_jobs_fails_only_jobs_of_dead_processes(store, engine):
    store.create_collection("c")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_worker = f"{socket.gethostname()}:{int(dead.stdout)}:token"
    owners = {
        "dead": dead_worker,
        "unowned": None,
        "other_host": "some-other-host:1:token",
        "mine": None,  # created by this process: left as is
    }
    jobs = {}
    for label, worker in owners.items():
        jobs[label] = store.create_job("c", ["bm25"])
        if label != "mine":
            with engine.begin() as conn:
                conn.execute(
                    update(BuildJobRow)
                    .where(BuildJobRow.id == jobs[label].id)
                    .values(worker=worker, status="running")
                )
    finished = store.create_job("c", ["bm25"])
    store.update_job(finished.id, status="succeeded")
    assert store.fail_stale_jobs() == 2
    status = {label: store.get_job(j.id) for label, j in jobs.items()}
    assert (
        status["dead"].status == "failed" and "stopped before it finished" in status["dead"].message
    )
    assert status["unowned"].status == "failed" and status["unowned"].finished_at is not None
    assert status["other_host"].status == "running"
    assert status["mine"].status == "queued"
    assert store.get_job(finished.id).status == "succeeded"
    assert store.fail_stale_jobs() == 0


def test_a_running_job_whose_heartbeat_stopped_is_failed(store, engine):
    from datetime import timedelta

    from specrag.storage.models import utcnow

    store.create_collection("c")
    beats = {"silent": utcnow() - timedelta(seconds=600), "beating": utcnow(), "never": None}
    jobs = {}
    for label, beat in beats.items():
        jobs[label] = store.create_job("c", ["bm25"])
        with engine.begin() as conn:
            conn.execute(
                update(BuildJobRow)
                .where(BuildJobRow.id == jobs[label].id)
                .values(
                    worker="some-other-host:1:token",  # a pid check cannot tell
                    status="running",
                    started_at=utcnow() - timedelta(seconds=900),
                    heartbeat_at=beat,
                )
            )
    assert store.fail_stale_jobs() == 0  # without a heartbeat limit: left alone
    assert store.fail_stale_jobs(stale_after_s=120) == 2
    status = {label: store.get_job(j.id) for label, j in jobs.items()}
    assert status["silent"].status == "failed" and "heartbeat" in status["silent"].message
    assert status["never"].status == "failed"
    assert status["beating"].status == "running"
    assert store.heartbeat(jobs["beating"].id) and not store.heartbeat(jobs["silent"].id)


def test_concurrent_writers_queue_instead_of_failing(store):
    store.create_collection("c")
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for r in range(5):
                store.upsert("c", [doc(t * 1000 + r * 10 + i) for i in range(10)])
                store.create_job("c", ["bm25"])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count("c") == 200
    assert store.get_collection("c").generation == 20


def test_unsupported_url_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported database URL"):
        create_engine_for("mysql://localhost/x")


def test_get_documents_matches_get_document_across_chunks(store, monkeypatch):
    import specrag.storage.store as store_module

    monkeypatch.setattr(store_module, "ID_CHUNK", 3)  # several IN (...) chunks
    store.create_collection("c")
    store.upsert("c", [doc(i, year=i) for i in range(10)])
    wanted = ["d7", "missing", "d0", "d7", "d3", "d9", "d5", "nope", "d1"]
    got = store.get_documents("c", wanted)
    expected = {i: store.get_document("c", i) for i in wanted}
    assert got == {i: d for i, d in expected.items() if d is not None}


def row_at_revision(engine, revision: str, insert_sql: str, downgrade: bool = False) -> None:
    """A row written by a server at schema ``revision`` (migrated up from empty, or down
    from head), then ``init_db`` as a newer server's start runs it: what an upgrade sees."""
    from alembic import command

    from specrag.storage.db import migrations_config, write_connection

    cfg = migrations_config()
    with write_connection(engine) as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if downgrade else command.upgrade)(cfg, revision)
        conn.exec_driver_sql(insert_sql)
    init_db(engine)


def test_collections_made_before_folders_keep_their_files_and_new_ones_get_a_unique_folder(
    tmp_path,
):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'old.db'}")
    row_at_revision(
        engine,
        "0001",
        "INSERT INTO collections (name, kinds, created_at, generation, n_documents) "
        "VALUES ('legacy', '{}', '2025-01-01', 0, 0)",
    )
    store = DocumentStore(engine)
    assert store.get_collection("legacy").folder == "legacy"
    first = store.create_collection("again").folder
    store.delete_collection("again")
    second = store.create_collection("again").folder
    assert first != second and first.startswith("again.") and second.startswith("again.")
    engine.dispose()


def test_api_keys_are_stored_hashed_and_revoked_on_every_backend(engine):
    from specrag.storage.keys import InvalidKeyRequest, KeyStore

    keys = KeyStore(engine)
    assert not keys.has_active_keys() and keys.verify("sk_nothing") is None
    info, key = keys.create("ops", "admin")
    assert keys.has_active_keys() and keys.verify(key).scope == "admin"
    with pytest.raises(AlreadyExists):
        keys.create("ops", "read")
    with pytest.raises(InvalidKeyRequest):
        keys.create("ops", "root")
    keys.revoke("ops")
    assert keys.verify(key) is None and not keys.has_active_keys()
    again, key2 = keys.create("ops", "read")  # the name is free again
    assert [(k.name, k.revoked_at is None) for k in keys.list()] == [("ops", False), ("ops", True)]
    with pytest.raises(NotFound):
        keys.revoke("nobody")


def test_live_settings_default_on_upgrade_and_round_trip_on_every_backend(engine):
    """Migration 0005: collections made before it get a 1 s refresh interval and the default
    merge policy; the settings are stored per collection and None means on demand only."""
    from specrag.storage.store import LiveSettings

    row_at_revision(
        engine,
        "0004",
        "INSERT INTO collections (name, kinds, created_at, generation, n_documents, folder) "
        "VALUES ('older', '{}', '2025-01-01', 0, 0, 'older.x')",
        downgrade=True,
    )
    store = DocumentStore(engine)
    assert store.get_collection("older").live == LiveSettings(1.0, 0.1, 10000)
    store.create_collection("manual", live=LiveSettings(None, 0.25, 50))
    assert store.get_collection("manual").live == LiveSettings(None, 0.25, 50)
    store.set_live_settings("older", LiveSettings(0, 0.5, 7))  # 0: on demand only
    assert store.get_collection("older").live == LiveSettings(None, 0.5, 7)
    with pytest.raises(NotFound):
        store.set_live_settings("nobody", LiveSettings())
