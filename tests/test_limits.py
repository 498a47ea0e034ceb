"""Each request limit that is a setting, at its edge (accepted) and one past it (refused
with its status): filter nodes, rerank top_n, ids per delete, prompt tokens (422), queued
builds and generations (429 with Retry-After). The time limits (504) are in
tests/test_generation_pool.py."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from specrag.api.app import create_app
from specrag.api.request_limits import filter_nodes
from specrag.generation import service as gen_service
from specrag.settings import Settings
from tests.conftest import demo_documents
from tests.gated_generator import GatedGenerator
from tests.test_observability import samples, value

LIMITS = dict(
    max_filter_nodes=9,
    max_rerank_top_n=20,
    max_delete_ids=3,
    max_prompt_tokens=512,
    max_queued_builds=2,
    max_concurrent_generations=1,
    max_queued_generations=1,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("limits"), **LIMITS)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        docs = [{"id": d.id, "text": d.text} for d in demo_documents(20)]
        c.post("/collections", json={"name": "lim", "kinds": ["bm25"]})
        c.post("/collections/lim/documents", json={"documents": docs})
        wait(c, c.post("/collections/lim/builds").json()["id"])
        yield c


def wait(client, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.get(f"/jobs/{job_id}").json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def search(client, **body):
    return client.post("/collections/lim/search", json={"query": "cells", "k": 3, **body})


def test_filter_nodes_counted():
    assert filter_nodes({"year": 2000}) == 3
    assert filter_nodes({"$and": [{"a": 1}, {"b": {"$in": [1, 2]}}]}) == 13


def test_filter_node_limit(client):
    at = {"$or": [{"a": 1}, {"b": 2}]}  # 9 nodes
    assert filter_nodes(at) == LIMITS["max_filter_nodes"]
    assert search(client, filter=at).status_code == 200
    past = {"$or": [{"a": 1}, {"b": [2]}]}
    r = search(client, filter=past)
    assert r.status_code == 422 and "max_filter_nodes" in r.json()["detail"]


def test_rerank_top_n_limit(client):
    at = search(client, rerank={"top_n": 20})
    assert at.status_code != 422, at.text  # past the limit check (no MaxSim stage here: 400)
    r = search(client, rerank={"top_n": 21})
    assert r.status_code == 422 and "max_rerank_top_n" in r.json()["detail"]


def test_delete_ids_limit(client):
    r = client.post("/collections/lim/documents/delete", json={"ids": ["x1", "x2", "x3"]})
    assert r.status_code == 200 and r.json() == {"deleted": 0}
    r = client.post("/collections/lim/documents/delete", json={"ids": ["x1", "x2", "x3", "x4"]})
    assert r.status_code == 422 and "max_delete_ids" in r.json()["detail"]


def test_prompt_tokens_limit(client):
    ask = {"question": "what do cells do?", "k": 2}
    assert client.post("/collections/lim/ask", json={**ask, "max_prompt_tokens": 512}).is_success
    r = client.post("/collections/lim/ask", json={**ask, "max_prompt_tokens": 513})
    assert r.status_code == 422 and "max_prompt_tokens" in r.json()["detail"]
    assert client.post("/collections/lim/ask", json=ask).is_success  # default: clamped


POOL_METRICS = [
    "specrag_generation_pool_running",
    "specrag_generation_pool_queued",
    "specrag_generation_pool_workers",
    "specrag_generation_pool_queue_capacity",
    "specrag_generation_pool_rejected_total",
]


def pool_metrics(client) -> dict[str, float]:
    """The generation pool's samples in /metrics."""
    found = samples(client)
    return {name: value(found, name) for name in POOL_METRICS}


def test_concurrent_generations_limit(client, monkeypatch):
    """One answer generated and one queued is the limit (1 worker + 1 queued): a third is
    429 with Retry-After, streaming or not; the two admitted ones complete. /metrics shows
    the held answers (1 running, 1 queued) and counts the refusals."""
    gated = GatedGenerator(steps=1)
    monkeypatch.setattr(gen_service, "get_generator", lambda name, device=None: gated)
    pool = client.app.state.generations
    ask = {"question": "slow: what do cells do?", "k": 2, "max_prompt_tokens": 512}
    before = pool_metrics(client)
    assert [before[m] for m in POOL_METRICS[:4]] == [0, 0, 1, 1]  # running, queued, limits
    with ThreadPoolExecutor(2) as threads:
        held = [threads.submit(client.post, "/collections/lim/ask", json=ask) for _ in range(2)]
        deadline = time.monotonic() + 30
        while pool.counts()[:2] != (1, 1):  # one in the worker (at its gate), one queued
            assert time.monotonic() < deadline and not any(f.done() for f in held)
            time.sleep(0.01)
        for body in (ask, {**ask, "stream": True}):
            r = client.post("/collections/lim/ask", json=body)
            assert r.status_code == 429, r.text
            assert "max_concurrent_generations" in r.json()["detail"]
            assert "max_queued_generations" in r.json()["detail"]
            assert int(r.headers["Retry-After"]) >= 1
        held_now = pool_metrics(client)
        assert held_now["specrag_generation_pool_running"] == 1
        assert held_now["specrag_generation_pool_queued"] == 1
        rejected = "specrag_generation_pool_rejected_total"
        assert held_now[rejected] == before[rejected] + 2
        gated.release(2)
        assert [f.result().status_code for f in held] == [200, 200]
    while pool.admitted:  # the workers end just after their answers are sent
        assert time.monotonic() < deadline
        time.sleep(0.01)
    after = pool_metrics(client)
    assert [after[m] for m in POOL_METRICS[:2]] == [0, 0]
    monkeypatch.undo()  # the configured (extractive) generator again
    assert client.post("/collections/lim/ask", json=ask).status_code == 200
    r = client.post("/collections/lim/ask", json={**ask, "stream": True})
    assert r.status_code == 200 and "event: done" in r.text
    assert client.post("/collections/lim/ask", json=ask).status_code == 200  # released


def test_queued_builds_limit(client):
    admission = client.app.state.admission
    admission.build_started()
    admission.build_started()  # two builds queued or running: the limit
    try:
        r = client.post("/collections/lim/builds")
        assert r.status_code == 429 and "max_queued_builds" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 1
    finally:
        admission.build_ended()
    try:
        r = client.post("/collections/lim/builds")  # at the limit again: accepted
        assert r.status_code == 202, r.text
        wait(client, r.json()["id"])
    finally:
        admission.build_ended()
    deadline = time.monotonic() + 10
    while admission._builds and time.monotonic() < deadline:  # the worker's slot is given back
        time.sleep(0.05)
    assert admission._builds == 0


def test_a_refused_build_leaves_no_slot_taken(client):
    admission = client.app.state.admission
    before = admission._builds
    assert client.post("/collections/nope/builds").status_code == 404
    assert admission._builds == before


def test_limit_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPECRAG_MAX_QUEUED_BUILDS", "0")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("SPECRAG_MAX_QUEUED_BUILDS", "4")
    assert Settings().max_queued_builds == 4
