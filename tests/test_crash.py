"""kill -9 during a build leaves the previous version serving and no partial version.

A first small bm25 version is built; a second `specrag index` (dense over the 1k demo
corpus: long enough to be caught mid-build) is killed with SIGKILL once its hidden
``.tmp-*`` directory exists under versions/. Then CURRENT still names the first version,
that version opens and answers, no partial version is listed, and the build job left
running by the dead process is marked failed by a running server and at the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from specrag.api.service import CollectionService
from specrag.indexing.versions import VersionStore
from specrag.retrieval.request import SearchRequest
from specrag.retrieval.version import open_version
from specrag.settings import Settings
from tests.conftest import DEMO_CORPUS, REPO

COLLECTION = "crash"


def specrag(*args: str) -> list[str]:
    return [sys.executable, "-m", "specrag.api.cli", *args]


def run_env(home) -> dict[str, str]:
    return {**os.environ, "SPECRAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def test_kill_during_build_keeps_previous_version(tmp_path):
    home = tmp_path / "home"
    small = tmp_path / "small.jsonl"
    small.write_text("".join(DEMO_CORPUS.read_text().splitlines(keepends=True)[:50]))
    first = subprocess.run(
        specrag("index", "--collection", COLLECTION, "--corpus", str(small), "--kinds", "bm25"),
        cwd=REPO,
        env=run_env(home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert first.returncode == 0, first.stderr
    versions = VersionStore(next((home / "collections").glob(f"{COLLECTION}.*")))
    v1 = versions.current()
    assert v1 is not None and versions.list() == [v1]

    proc = subprocess.Popen(
        specrag(
            "index", "--collection", COLLECTION, "--corpus", str(DEMO_CORPUS), "--kinds", "dense"
        ),
        cwd=REPO,
        env=run_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        tmp_dir = None
        deadline = time.monotonic() + 240
        while tmp_dir is None and time.monotonic() < deadline:
            assert proc.poll() is None, "the build finished before it could be killed"
            found = list(versions.versions_dir.glob(".tmp-*"))
            tmp_dir = found[0] if found else None
            time.sleep(0.05)
        assert tmp_dir is not None, "no .tmp-* build directory appeared"
        # The version folder exists from the start of the build, before the encoding store
        # encodes the corpus (a minute of MiniLM here): kill it a moment into that work. (Once
        # encoded, the dense builder only copies vectors and finishes within a second, too
        # fast to be caught writing.)
        time.sleep(1.0)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # A server that was already running when the CLI build died fails its job too.
    server = CollectionService(Settings(home=home))
    try:
        server._stale_checked = float("-inf")  # as if its last look was long ago
        jobs = server.list_jobs(COLLECTION)
        assert jobs[0].status == "failed" and "stopped before it finished" in jobs[0].message
    finally:
        server.close()

    assert versions.current() == v1
    assert versions.list() == [v1], "a partial version is listed"
    version = open_version(versions)
    assert version.id == v1 and version.n_docs == 50
    hits = version.searchers["bm25"].search(["glioblastoma stem cells"], 3)[0]
    assert len(hits) == 3

    service = CollectionService(Settings(home=home))
    try:
        service.start()  # marks the dead process's job failed
        response = service.search(
            COLLECTION, SearchRequest(query="stem cells", k=3, retriever="bm25")
        )
        assert response.version == v1 and len(response.hits) == 3
        jobs = service.list_jobs(COLLECTION)
        assert jobs and all(j.status != "running" for j in jobs)
        assert any(j.status == "failed" for j in jobs)
    finally:
        service.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
