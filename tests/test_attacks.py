"""Attacks on the service that are not schema fuzzing (tests/test_fuzz_api.py): /docs
served offline, searches racing builds that swap versions, and path traversal through
collection names and document ids."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from specrag.api.app import create_app
from specrag.retrieval.version import open_version
from specrag.settings import Settings
from tests.conftest import demo_documents


def doc_json(doc) -> dict:
    return {"id": doc.id, "title": doc.title, "text": doc.text}


def wait_for_job(client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_docs_work_offline(tmp_path):
    with TestClient(create_app(Settings(home=tmp_path))) as client:
        r = client.get("/docs")
        assert r.status_code == 200
        html = r.text
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), html
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(assets) == 3, assets
        for url in [*assets, "/openapi.json", "/docs/oauth2-redirect"]:
            got = client.get(url)
            assert got.status_code == 200, url
            assert len(got.content) > 100, url
        assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
        assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN


@pytest.mark.parametrize("prune", [False, True], ids=["kept", "pruned-at-once"])
def test_searches_while_builds_swap_versions(tmp_path, prune):
    """8 threads search while 4 builds (each with one more matching document) swap the
    current version: no error, and each response's hits are exactly what the version it
    names returns. Pruned at once (keep 1, no grace): still no error, the versions that
    searches hold stay until they finish."""
    query = "cells"
    docs = demo_documents(40)
    extra = {"keep_versions": 1, "keep_versions_grace_s": 0} if prune else {}
    app = create_app(Settings(home=tmp_path, **extra))
    with TestClient(app, raise_server_exceptions=False) as client:
        # Builds are what swap versions here: no background refresh (it would answer from
        # base + delta views, named by live ids that no later build keeps).
        body = {"name": "race", "kinds": ["bm25"], "refresh_interval": 0}
        assert client.post("/collections", json=body).is_success
        client.post("/collections/race/documents", json={"documents": [doc_json(d) for d in docs]})
        assert (
            wait_for_job(client, client.post("/collections/race/builds").json()["id"])["status"]
            == "succeeded"
        )
        stop = threading.Event()
        seen: list[tuple[str, list[str]]] = []
        errors: list[str] = []

        def searcher() -> None:
            while not stop.is_set():
                r = client.post("/collections/race/search", json={"query": query, "k": 8})
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text}")
                    continue
                body = r.json()
                seen.append((body["version"], [h["doc_id"] for h in body["hits"]]))

        threads = [threading.Thread(target=searcher) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            for i in range(4):
                new = {"id": f"new-{i}", "text": f"{query} {query} {query} growth number {i}"}
                assert client.post(
                    "/collections/race/documents", json={"documents": [new]}
                ).is_success
                job = client.post("/collections/race/builds").json()
                assert wait_for_job(client, job["id"])["status"] == "succeeded"
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert errors == []
        versions = {v for v, _ in seen}
        assert len(versions) >= 3, versions  # the searches did see the swaps
        store = client.app.state.service.versions("race")
        if prune:  # the worker prunes just after it marks the job succeeded
            deadline = time.monotonic() + 10
            while store.list() != [store.current()] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.list() == [store.current()]
            return
        for vid in versions:
            version = open_version(store, vid)
            ids = set(np.load(store.path(vid) / "ids.npy").tolist())
            want = [h.doc_id for h in version.searchers["bm25"].search([query], 8)[0]]
            got = {tuple(hits) for v, hits in seen if v == vid}
            assert got == {tuple(want)}, (vid, got, want)
            assert set(want) <= ids


BAD_NAMES = ["..", "../x", "a/../../b", "..%2F..%2Fescape", "x\\..\\y", "/abs", "a\x00b", "é"]


def test_path_traversal_is_refused_and_writes_nothing_outside_home(tmp_path):
    home = tmp_path / "home"
    outside_before = {p for p in tmp_path.rglob("*") if home not in p.parents and p != home}
    with TestClient(create_app(Settings(home=home)), raise_server_exceptions=False) as client:
        for name in BAD_NAMES:
            r = client.post("/collections", json={"name": name, "kinds": ["bm25"]})
            assert r.status_code == 422, (name, r.status_code)
        for path in ["/collections/..%2F..%2Fescape", "/collections/%2e%2e/search"]:
            assert client.get(path).status_code in (404, 405), path
            r = client.post(f"{path}/builds")
            assert r.status_code in (404, 405), path
        # document ids are data, never paths: any id is stored and fetched as itself
        assert client.post("/collections", json={"name": "safe", "kinds": ["bm25"]}).is_success
        ids = ["../../../escape", "/etc/passwd", "..\\..\\x", "a/../../b", "%2e%2e%2fz"]
        body = {"documents": [{"id": i, "text": f"traversal text {n}"} for n, i in enumerate(ids)]}
        assert client.post("/collections/safe/documents", json=body).status_code == 200
        assert (
            wait_for_job(client, client.post("/collections/safe/builds").json()["id"])["status"]
            == "succeeded"
        )
        r = client.post("/collections/safe/search", json={"query": "traversal", "k": 10})
        assert sorted(h["doc_id"] for h in r.json()["hits"]) == sorted(ids)
        r = client.post("/collections/safe/documents/delete", json={"ids": ids[:2]})
        assert r.json() == {"deleted": 2}
    outside_after = {p for p in tmp_path.rglob("*") if home not in p.parents and p != home}
    assert outside_after == outside_before
    names = {p.name for p in home.rglob("*")}
    assert not names & {"escape", "passwd", "x", "b", "z"}, names


@pytest.mark.parametrize("name", ["a" * 65, ""])
def test_collection_name_length_is_bounded(tmp_path, name):
    with TestClient(create_app(Settings(home=tmp_path))) as client:
        assert client.post("/collections", json={"name": name}).status_code == 422
