"""One source of truth for the current version (the CURRENT file; the database follows
it), pruning of old versions after a grace period unless a search holds them, and the
leftovers of killed builds removed at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from specrag.api.service import CollectionService
from specrag.indexing.retention import by_age, prune_versions, superseded_at
from specrag.settings import Settings
from tests.conftest import demo_documents


def service_for(tmp_path, **settings) -> CollectionService:
    service = CollectionService(Settings(home=tmp_path, **settings))
    service.start()
    return service


def build_n(service: CollectionService, n: int) -> list[str]:
    docs = demo_documents(12)
    return [service.index("c", docs[: 8 + i], ["bm25"]) for i in range(n)]


def test_prune_keeps_current_and_newest_after_grace(tmp_path):
    service = service_for(tmp_path, keep_versions=2, keep_versions_grace_s=3600)
    try:
        built = build_n(service, 4)
        versions = service.versions("c")
        assert versions.current() == built[-1]
        assert service.prune("c") == []  # all superseded less than an hour ago
        assert by_age(versions) == built
        # an hour later: the two oldest go, the current one and the newest other stay
        removed = prune_versions(versions, 2, 3600, now=time.time() + 3601)
        assert removed == built[:2]
        assert by_age(versions) == built[2:]
        assert not versions.path(built[0]).exists()
        # keep=1: only the current one
        assert prune_versions(versions, 1, 0) == [built[2]]
        assert versions.list() == [built[3]]
    finally:
        service.close()


def test_grace_counts_from_the_successor(tmp_path):
    service = service_for(tmp_path)
    try:
        built = build_n(service, 2)
        versions = service.versions("c")
        ids = by_age(versions)
        assert ids == built
        since = superseded_at(versions, built[0], ids)
        assert since == pytest.approx((versions.path(built[1]) / "manifest.json").stat().st_mtime)
        assert superseded_at(versions, built[1], ids) is None
    finally:
        service.close()


def test_a_version_held_by_a_search_is_not_pruned(tmp_path):
    service = service_for(tmp_path, keep_versions=1, keep_versions_grace_s=0)
    try:
        first = build_n(service, 1)[0]
        version = service.version_for("c")
        with service._holding(service.store.get_collection("c").folder, version):
            second = service.index("c", demo_documents(10), ["bm25"])
            service._versions.clear()  # the cache moved on; only the search holds it
            service._bases.clear()
            assert service.prune("c") == []
        assert service.prune("c") == [first]
        assert service.versions("c").list() == [second]
    finally:
        service.close()


def test_builds_through_the_worker_prune(tmp_path):
    service = service_for(tmp_path, keep_versions=1, keep_versions_grace_s=0)
    try:
        build_n(service, 1)
        for _ in range(2):
            job = service.start_build("c")
            deadline = time.monotonic() + 60
            while service.get_job(job.id).status not in ("succeeded", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        time.sleep(0.3)  # the worker prunes after it marks the job done
        versions = service.versions("c")
        assert versions.list() == [versions.current()]
    finally:
        service.close()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_start_removes_leftovers_of_killed_builds(tmp_path):
    service = service_for(tmp_path)
    build_n(service, 1)
    folder = service.settings.collections_dir / service.store.get_collection("c").folder
    service.close()
    pid = dead_pid()
    dead = [
        folder / "versions" / f".tmp-20990101T000000-abcd-{pid}",
        folder / f".tmp-x-{pid}",
        service.settings.collections_dir / f".deleted-old.abc-{pid}-123",
    ]
    for path in dead:
        path.mkdir(parents=True)
        (path / "junk.npy").write_bytes(b"x" * 10)
    dead_file = folder / f".CURRENT.tmp-{pid}"
    dead_file.write_text("partial")
    alive = folder / "versions" / f".tmp-20990101T000001-abcd-{os.getpid()}"
    alive.mkdir()
    service = service_for(tmp_path)
    try:
        for path in [*dead, dead_file]:
            assert not path.exists(), path
        assert alive.exists()  # its process (this one) may still be writing it
        assert service.versions("c").current() is not None
    finally:
        service.close()


def test_database_follows_the_current_file(tmp_path):
    """A crash after CURRENT was replaced and before the version row was written: the
    API reports the file's version at once, and the next start repairs the row."""
    service = service_for(tmp_path)
    try:
        first = build_n(service, 1)[0]
        versions = service.versions("c")
        with service.store.corpus("c") as corpus:
            orphan = versions.build(corpus, ["bm25"], extra_manifest={"generation": 99})
        assert versions.current() == orphan
        assert service.store.get_collection("c").current_version == first  # the stale row
        assert service.get_collection("c").current_version == orphan  # the API: the file
    finally:
        service.close()
    service = service_for(tmp_path)
    try:
        assert service.store.get_collection("c").current_version == orphan
        assert [v.id for v in service.store.list_versions("c") if v.status == "current"] == [orphan]
        # and back to a version that has a row
        versions.activate(first)
        service.close()
        service = service_for(tmp_path)
        assert service.store.get_collection("c").current_version == first
    finally:
        service.close()


def test_keep_versions_settings(monkeypatch):
    monkeypatch.setenv("SPECRAG_KEEP_VERSIONS", "3")
    monkeypatch.setenv("SPECRAG_KEEP_VERSIONS_GRACE_S", "0")
    settings = Settings()
    assert settings.keep_versions == 3 and settings.keep_versions_grace_s == 0
    monkeypatch.setenv("SPECRAG_KEEP_VERSIONS", "0")
    with pytest.raises(ValueError):
        Settings()
