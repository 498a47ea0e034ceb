"""Observability: /metrics in the Prometheus text format (parsed here), a request id on
every response and log line, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from specrag.api.app import create_app
from specrag.api.observability import log_handler
from specrag.settings import Settings
from tests.conftest import demo_documents, demo_queries


def samples(client, headers=None) -> dict[str, list]:
    r = client.get("/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found, name: str, **labels) -> float:
    matching = [s.value for s in found.get(name, []) if labels.items() <= s.labels.items()]
    assert matching, f"no sample {name} {labels} in {sorted(found)}"
    return sum(matching)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("obs-home")
    with TestClient(create_app(Settings(home=home)), raise_server_exceptions=False) as c:
        docs = [{"id": d.id, "title": d.title, "text": d.text} for d in demo_documents(30)]
        assert c.post("/collections", json={"name": "obs", "kinds": ["bm25"]}).status_code == 201
        assert c.post("/collections/obs/documents", json={"documents": docs}).status_code == 200
        job = c.post("/collections/obs/builds").json()
        deadline = time.monotonic() + 60
        while c.get(f"/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield c


def test_request_metrics_by_route_template(client):
    for _ in range(2):
        r = client.post("/collections/obs/search", json={"query": demo_queries(1)[0], "k": 3})
        assert r.status_code == 200
    assert client.get("/collections/nope").status_code == 404
    client.get("/no/such/path/123")
    found = samples(client)
    route = "/collections/{name}/search"
    assert value(found, "specrag_http_requests_total", route=route, status="200") >= 2
    assert (
        value(found, "specrag_http_requests_total", route="/collections/{name}", status="404") >= 1
    )
    assert value(found, "specrag_http_requests_total", route="unmatched", status="404") >= 1
    assert value(found, "specrag_http_request_duration_seconds_count", route=route) >= 2
    # the raw paths never become labels
    labels = {s.labels.get("route") for s in found["specrag_http_requests_total"]}
    assert "/collections/obs/search" not in labels and "/no/such/path/123" not in labels


def test_search_stage_build_and_cache_metrics(client):
    client.post("/collections/obs/search", json={"query": "cells", "k": 3})
    client.post("/collections/obs/search", json={"query": "cells", "filter": {"y": 1}})
    found = samples(client)
    for stage in ("bm25", "filter", "fetch", "total"):
        assert value(found, "specrag_search_stage_seconds_count", stage=stage) >= 1
    assert value(found, "specrag_build_duration_seconds_count", status="succeeded") == 1
    assert value(found, "specrag_build_jobs", status="running") == 0
    assert value(found, "specrag_open_versions") == 1
    assert value(found, "specrag_cache_capacity", cache="masks") >= 256
    assert value(found, "specrag_cache_entries", cache="masks") >= 1
    assert value(found, "specrag_cache_capacity", cache="rerankers") >= 4
    assert value(found, "specrag_cache_capacity", cache="generators") == 2


def test_generation_metrics_when_an_answer_ends(client):
    r = client.post("/collections/obs/ask", json={"question": "what do stem cells do?", "k": 3})
    assert r.status_code == 200, r.text
    stats = r.json()["stats"]
    found = samples(client)
    if stats.get("tokens_per_second"):
        assert value(found, "specrag_generation_tokens_per_second_count") >= 1
    assert "specrag_generation_tokens_per_forward_count" in found


def test_every_response_has_a_request_id(client):
    r = client.get("/health")
    rid = r.headers["x-request-id"]
    assert len(rid) == 32
    assert client.get("/health").headers["x-request-id"] != rid
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    long = "x" * 200  # not taken: ids end up in logs
    assert client.get("/health", headers={"X-Request-ID": long}).headers["x-request-id"] != long
    # errors and refusals of the middlewares too
    assert "x-request-id" in client.get("/collections/nope").headers
    r = client.post("/collections", content="name=x", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "x-request-id" in r.headers


def test_request_id_in_the_500_body_header_and_log(client, caplog, monkeypatch):
    service = client.app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "list_collections", broken)
    handler = log_handler("json", io.StringIO())
    logging.getLogger("specrag").addHandler(handler)
    try:
        r = client.get("/collections", headers={"X-Request-ID": "req-500"})
    finally:
        logging.getLogger("specrag").removeHandler(handler)
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "req-500" and r.json()["request_id"] == "req-500"
    lines = [json.loads(line) for line in handler.stream.getvalue().splitlines()]
    errors = [e for e in lines if e["level"] == "ERROR"]
    assert errors and errors[0]["request_id"] == "req-500"
    assert "RuntimeError: boom" in errors[0]["exception"]
    assert value(samples(client), "specrag_http_requests_total", route="/collections", status="500")


def test_text_log_lines_carry_the_request_id():
    stream = io.StringIO()
    handler = log_handler("text", stream)
    logger = logging.getLogger("specrag.test-obs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside a request")
    finally:
        logger.removeHandler(handler)
    assert "[-] outside a request" in stream.getvalue()


def test_log_format_setting(monkeypatch):
    monkeypatch.setenv("SPECRAG_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("SPECRAG_LOG_FORMAT", "xml")
    with pytest.raises(ValueError):
        Settings()


def test_metrics_need_read_scope_when_keys_exist(tmp_path):
    with TestClient(create_app(Settings(home=tmp_path))) as c:
        admin = c.post("/keys", json={"name": "ops", "scope": "admin"}).json()["key"]
        assert c.get("/metrics").status_code == 401
        read = c.post(
            "/keys", json={"name": "prom", "scope": "read"}, headers={"x-api-key": admin}
        ).json()["key"]
        found = samples(c, headers={"authorization": f"Bearer {read}"})
        assert value(found, "specrag_http_requests_total", route="/metrics", status="401") == 1


def test_two_apps_do_not_share_metrics(tmp_path):
    with (
        TestClient(create_app(Settings(home=tmp_path / "a"))) as a,
        TestClient(create_app(Settings(home=tmp_path / "b"))) as b,
    ):
        a.get("/health")
        a.get("/health")
        b.get("/health")
        assert value(samples(a), "specrag_http_requests_total", route="/health") == 2
        assert value(samples(b), "specrag_http_requests_total", route="/health") == 1
