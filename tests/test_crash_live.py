"""kill -9 of a live server (issue #14, point 5): after an acknowledged write, during a
refresh (the delta segment half written) and during a merge (the new version half
written). After a restart every acknowledged write is searchable after the next refresh,
no partial segment or version is visible, and nothing needs a manual rebuild.

The server is a real ``specrag serve`` subprocess; ``specrag/faults.py`` pauses it at the
named point (``SPECRAG_PAUSE_AT``) and says so in a file, so the kill lands there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from specrag.api.service import CollectionService
from specrag.indexing.delta import DELTA_FILE, DELTAS_DIR
from specrag.indexing.versions import VersionStore
from specrag.settings import Settings
from specrag.types import Document
from tests.conftest import REPO, demo_documents

NAME = "crash"
N_BASE = 20
KINDS = {"dense": {}, "bm25": {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``specrag serve`` on a free port in ``home``; ``pause_at``: a fault point."""

    def __init__(self, home: Path, pause_at: str | None = None):
        self.port = free_port()
        self.marker = home / "paused"
        self.marker.unlink(missing_ok=True)
        env = {**os.environ, "SPECRAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        env.pop("SPECRAG_PAUSE_AT", None)
        if pause_at:
            env |= {"SPECRAG_PAUSE_AT": pause_at, "SPECRAG_PAUSE_FILE": str(self.marker)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "specrag.api.cli", "serve", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=300)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, "the server exited"
            try:
                if self.http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start in 120 s"
            time.sleep(0.2)

    def wait_paused(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            assert self.proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the fault point was not reached"
            time.sleep(0.05)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.http.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.http.close()

    def upsert(self, docs: list[Document], refresh: str = "false") -> None:
        body = {"documents": [{"id": d.id, "text": d.text, "title": d.title} for d in docs]}
        r = self.http.post(f"/collections/{NAME}/documents?refresh={refresh}", json=body)
        assert r.status_code == 200, r.text

    def first_hit(self, doc: Document, retriever: str = "dense") -> str | None:
        body = {"query": doc.text[:1000], "k": 1, "retriever": retriever}
        r = self.http.post(f"/collections/{NAME}/search", json=body)
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        return hits[0]["doc_id"] if hits else None


@pytest.fixture(scope="module")
def built_home(tmp_path_factory) -> Path:
    """A home with the collection built over the first N_BASE demo documents, refreshed
    on demand only (the test decides when) and never merged in the background."""
    home = tmp_path_factory.mktemp("template")
    service = CollectionService(Settings(home=home))
    try:
        service.create_collection(NAME, KINDS)
        service.update_collection(NAME, _patch(refresh_interval=0, merge_max_share=10))
        service.index(NAME, demo_documents(N_BASE), None)
    finally:
        service.close()
    return home


def _patch(**fields):
    from specrag.api.schemas import CollectionPatch

    return CollectionPatch(**fields)


@pytest.fixture
def home(built_home, tmp_path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(built_home, copy)
    return copy


def versions_of(home: Path) -> VersionStore:
    return VersionStore(next((home / "collections").glob(f"{NAME}.*")))


def assert_no_partial(versions: VersionStore) -> None:
    """Only whole versions are listed; DELTA names a whole delta (or nothing)."""
    for vid in versions.list():
        assert (versions.path(vid) / "manifest.json").exists()
    delta = versions.root / DELTA_FILE
    if delta.exists():
        delta_id, _ = delta.read_text().split()
        assert (versions.root / DELTAS_DIR / delta_id / "manifest.json").exists()


def assert_searchable_after_refresh(home: Path, acked: list[Document]) -> None:
    server = Server(home)
    try:
        assert not list((versions_of(home).root / DELTAS_DIR).glob(".tmp-*"))  # swept
        assert not list(versions_of(home).versions_dir.glob(".tmp-*"))
        r = server.http.post(f"/collections/{NAME}/refresh")
        assert r.status_code == 200, r.text
        for doc in acked:
            assert server.first_hit(doc) == doc.id
        live = server.http.get(f"/collections/{NAME}").json()["live"]
        assert live["pending"] is False
        jobs = server.http.get(f"/collections/{NAME}/builds").json()
        assert all(job["status"] != "running" for job in jobs)
    finally:
        server.stop()


def test_kill_after_ack(home):
    new = demo_documents(N_BASE + 4)[N_BASE:]
    server = Server(home)
    server.upsert(new[:2], "wait_for")  # searchable before the answer
    server.upsert(new[2:])  # durable only
    server.kill()
    assert_no_partial(versions_of(home))
    assert_searchable_after_refresh(home, new)


def test_kill_during_refresh(home):
    new = demo_documents(N_BASE + 4)[N_BASE:]
    server = Server(home, pause_at="refresh")
    server.upsert(new)
    threading.Thread(
        target=lambda: _ignore(lambda: server.http.post(f"/collections/{NAME}/refresh")),
        daemon=True,
    ).start()
    server.wait_paused()
    versions = versions_of(home)
    assert list((versions.root / DELTAS_DIR).glob(".tmp-*")), "the delta is not half written"
    server.kill()
    assert not (versions.root / DELTA_FILE).exists()  # no partial segment went live
    assert_no_partial(versions)
    assert_searchable_after_refresh(home, new)


def test_kill_during_merge(home):
    new = demo_documents(N_BASE + 4)[N_BASE:]
    versions = versions_of(home)
    before = versions.current()
    server = Server(home, pause_at="build")
    server.upsert(new, "wait_for")
    r = server.http.post(f"/collections/{NAME}/merge")
    assert r.status_code == 202, r.text
    server.wait_paused()
    assert list(versions.versions_dir.glob(".tmp-*")), "the version is not half written"
    server.kill()
    assert versions.current() == before and versions.list() == [before]
    assert_no_partial(versions)
    server = Server(home)  # old version + delta serve; the merge can run again
    try:
        for doc in new:
            assert server.first_hit(doc) == doc.id
        r = server.http.post(f"/collections/{NAME}/merge")
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        deadline = time.monotonic() + 180
        while (status := server.http.get(f"/jobs/{job}").json()["status"]) not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status == "succeeded"
        assert versions.current() != before
        for doc in new:
            assert server.first_hit(doc) == doc.id
            assert server.first_hit(doc, "bm25") == doc.id  # merged: bm25 has them too
    finally:
        server.stop()
    assert_searchable_after_refresh(home, new)


def _ignore(fn) -> None:
    with contextlib.suppress(httpx.TransportError):  # the server was killed under it
        fn()
