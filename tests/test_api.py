"""The REST API through TestClient: the happy path (create, upsert, build job, search) and
every user error as a 4xx with a message."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from specrag.api.app import create_app
from specrag.settings import Settings
from tests.conftest import BACKENDS, database_url, demo_documents, demo_queries

N_DOCS = 60
MAX_BATCH = 100


def doc_json(doc) -> dict:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}


@pytest.fixture(scope="module", params=BACKENDS)
def client(request, tmp_path_factory):
    """The app over SQLite and over PostgreSQL (when the test server is there)."""
    home = tmp_path_factory.mktemp("api-home")
    with database_url(request.param, home / "db") as url:
        settings = Settings(
            home=home,
            database_url=url,
            max_k=50,
            max_query_chars=200,
            max_body_bytes=256 * 1024,
            max_batch_documents=MAX_BATCH,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as c:
            yield c


def wait_for_job(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def built(client):
    """Collection `docs` with bm25 over the demo slice, built through a job."""
    r = client.post("/collections", json={"name": "docs", "kinds": {"bm25": {"k1": 0.9}}})
    assert r.status_code == 201, r.text
    docs = demo_documents(N_DOCS)
    r = client.post("/collections/docs/documents", json={"documents": [doc_json(d) for d in docs]})
    assert r.status_code == 200, r.text
    assert r.json() == {"upserted": N_DOCS}
    r = client.post("/collections/docs/builds")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["collection"] == "docs" and job["id"]
    final = wait_for_job(client, job["id"])
    assert final["status"] == "succeeded", final
    assert final["version_id"]
    return docs, final


def detail(r) -> str:
    body = r.json()
    assert "detail" in body, body
    return str(body["detail"])


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_build_job_and_collection_info(client, built):
    docs, job = built
    info = client.get("/collections/docs").json()
    assert info["n_documents"] == N_DOCS
    assert info["current_version"] == job["version_id"]
    assert "bm25" in info["kinds"]
    assert job["done"] == job["total"] and job["progress"] == pytest.approx(1.0)
    assert any(c["name"] == "docs" for c in client.get("/collections").json())


def test_search_after_build_matches_reference(client, built):
    """The top hits of a bm25 search are the brute-force top-k of the kind's reference."""
    from specrag.retrieval.version import open_version

    docs, job = built
    query = demo_queries(3)[2]
    r = client.post(
        "/collections/docs/search",
        json={"query": query, "k": 5, "retriever": "bm25", "include": ["text", "scores"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == job["version_id"]
    hits = body["hits"]
    version = open_version(client.app.state.service.versions("docs"))
    ref = version.searchers["bm25"].reference_scores([query])[0]
    want = np.argsort(-ref, kind="stable")[:5]
    np.testing.assert_allclose([h["score"] for h in hits], ref[want], rtol=1e-4)
    by_id = {d.id: d for d in docs}
    for h in hits:
        assert h["text"] == by_id[h["doc_id"]].text
        assert "bm25" in h["scores"]
        assert h["title"] is None  # not in include
    assert set(body["timings_ms"]) >= {"total", "bm25"}


def test_filtered_search(client, built):
    r = client.post(
        "/collections/docs/search",
        json={
            "query": "cancer cells",
            "k": 10,
            "retriever": "bm25",
            "filter": {"topic": "bio", "year": {"$gte": 2005}},
            "include": ["metadata"],
        },
    )
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits
    for h in hits:
        assert h["metadata"]["topic"] == "bio" and h["metadata"]["year"] >= 2005


def test_get_document(client, built):
    docs, _ = built
    r = client.get(f"/collections/docs/documents/{docs[3].id}")
    assert r.status_code == 200
    assert r.json()["text"] == docs[3].text
    assert r.json()["metadata"] == docs[3].metadata
    r = client.get("/collections/docs/documents/no-such-doc")
    assert r.status_code == 404 and "no-such-doc" in detail(r)


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"name": "x1", "kinds": {"nosuchkind": {}}}, 422, "unknown index kind"),
        ({"name": "x2", "kinds": ["bm25", "nosuchkind"]}, 422, "unknown index kind"),
        ({"name": "x3", "kinds": {"bm25": {"k1": -1}}}, 422, "k1"),
        ({"name": "x4", "kinds": {"bm25": {"nope": 1}}}, 422, "nope"),
        ({"name": "../evil", "kinds": ["bm25"]}, 422, "name"),
        ({"name": "docs", "kinds": ["bm25"]}, 409, "docs"),
    ],
)
def test_create_collection_errors(client, built, body, code, fragment):
    r = client.post("/collections", json=body)
    assert r.status_code == code, r.text
    assert fragment in detail(r)


@pytest.mark.parametrize(
    ("path", "body", "code", "fragment"),
    [
        ("/collections/nope/search", {"query": "x"}, 404, "nope"),
        ("/collections/docs/search", {"query": "x", "k": 51}, 422, "max_k"),
        ("/collections/docs/search", {"query": "x" * 201}, 422, "200"),
        ("/collections/docs/search", {"query": ""}, 422, "query"),
        ("/collections/docs/search", {"query": "x", "filter": {"year": {"$foo": 1}}}, 400, "$foo"),
        ("/collections/docs/search", {"query": "x", "filter": {"$and": 3}}, 400, "$and"),
        ("/collections/docs/search", {"query": "x", "retriever": "dense"}, 400, "dense"),
        (
            "/collections/docs/search",
            {"query": "x", "rerank": {"method": "cross-encoder"}},
            400,
            "needs `model`",
        ),
        ("/collections/docs/search", {"query": "x", "min_relevance": 0.5}, 400, "min_relevance"),
        (
            "/collections/docs/search",
            {"query": "x", "rerank": {"method": "cross-encoder", "model": "someone/else"}},
            400,
            "'someone/else' is not one of the configured models: all-MiniLM-L6-v2, extractive",
        ),
        ("/collections/docs/ask", {"question": "x", "model": "gpt2"}, 400, "ALLOWED_MODELS"),
        ("/collections/docs/ask", {"question": "x", "draft_model": "gpt2"}, 400, "draft_model"),
        ("/collections/docs/search", {"query": "x", "bogus": 1}, 422, "bogus"),
        ("/collections/nope/documents", {"documents": [{"id": "a", "text": "t"}]}, 404, "nope"),
        ("/collections/docs/documents", {"documents": [{"id": "a", "text": 5}]}, 422, "text"),
        ("/collections/docs/documents", {"documents": [{"id": "", "text": "t"}]}, 422, "id"),
        ("/collections/docs/documents", {"documents": []}, 422, "documents"),
        (
            "/collections/docs/documents",
            {"documents": [{"id": "a", "text": "t", "x": 1}]},
            422,
            "x",
        ),
        ("/collections/docs/builds", {"kinds": ["nosuchkind"]}, 400, "unknown index kind"),
        ("/collections/nope/builds", None, 404, "nope"),
    ],
)
def test_user_errors_are_4xx_with_message(client, built, path, body, code, fragment):
    r = client.post(path, json=body)
    assert r.status_code == code, r.text
    assert fragment in detail(r)


def test_unknown_job_and_collection(client):
    assert client.get("/jobs/nope").status_code == 404
    assert client.get("/collections/nope").status_code == 404
    assert client.delete("/collections/nope").status_code == 404


def test_batch_over_limit(client, built):
    docs = [{"id": f"b{i}", "text": "t"} for i in range(MAX_BATCH + 1)]
    r = client.post("/collections/docs/documents", json={"documents": docs})
    assert r.status_code == 422 and str(MAX_BATCH) in detail(r)


def test_oversize_body_is_413(client):
    big = {"query": "x" * (300 * 1024)}
    r = client.post("/collections/docs/search", json=big)  # declared Content-Length
    assert r.status_code == 413 and "limit" in detail(r)

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(300):
            yield b"x" * 1024

    r = client.post(
        "/collections/docs/search", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "limit" in detail(r)


def test_search_before_build_is_409(client):
    assert client.post("/collections", json={"name": "empty", "kinds": ["bm25"]}).status_code == 201
    r = client.post("/collections/empty/search", json={"query": "x"})
    assert r.status_code == 409 and "build" in detail(r)


def test_delete_document_leaves_search_at_once(client, built):
    query = demo_queries(5)[4]
    body = {"query": query, "k": 5, "retriever": "bm25"}
    before = [
        h["doc_id"] for h in client.post("/collections/docs/search", json=body).json()["hits"]
    ]
    victim = before[0]
    r = client.delete(f"/collections/docs/documents/{victim}")
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    after = [h["doc_id"] for h in client.post("/collections/docs/search", json=body).json()["hits"]]
    assert victim not in after
    assert after[: len(before) - 1] == before[1:]  # the others move up, in order
    assert client.get(f"/collections/docs/documents/{victim}").status_code == 404


def test_delete_collection(client):
    assert client.post("/collections", json={"name": "gone", "kinds": ["bm25"]}).status_code == 201
    assert client.delete("/collections/gone").status_code == 204
    assert client.get("/collections/gone").status_code == 404


def test_search_on_an_index_of_an_older_format_is_409_asking_for_a_rebuild(client):
    assert client.post("/collections", json={"name": "stale", "kinds": ["bm25"]}).status_code == 201
    docs = [doc_json(d) for d in demo_documents(20)]
    assert client.post("/collections/stale/documents", json={"documents": docs}).status_code == 200
    job = wait_for_job(client, client.post("/collections/stale/builds").json()["id"])
    assert job["status"] == "succeeded", job
    settings = client.app.state.service.settings
    header = next(settings.collections_dir.glob("stale.*/versions/*/bm25/impact_index.json"))
    header.write_text(json.dumps({**json.loads(header.read_text()), "format": 1}))
    # A restarted service (the running one keeps the version it opened) finds the old format.
    with TestClient(create_app(settings), raise_server_exceptions=False) as restarted:
        r = restarted.post("/collections/stale/search", json={"query": "cells"})
    assert r.status_code == 409 and "rebuild" in detail(r)


@pytest.mark.parametrize(
    ("path", "raw", "code", "fragment"),
    [
        ("/collections/docs/search", '{"query": "x", "min_score": NaN}', 422, "finite"),
        ("/collections/docs/search", '{"query": "x", "rrf_k": Infinity}', 422, "finite"),
        (
            "/collections/docs/search",
            '{"query": "x", "retrievers": [{"kind": "bm25", "weight": -Infinity}]}',
            422,
            "finite",
        ),
        ("/collections/docs/search", '{"query": "x", "filter": {"y": NaN}}', 400, "finite"),
        ("/collections/docs/documents", '{"documents": [{"id": "n", "x": NaN}]}', 422, "x"),
        (
            "/collections/docs/documents",
            '{"documents": [{"id": "n", "metadata": {"x": NaN}}]}',
            400,
            "NaN",
        ),
        ("/collections/docs/builds", '{"kinds": {"bm25": {"k1": NaN}}}', 400, "finite"),
        ("/collections", '{"name": "nan", "kinds": {"bm25": {"b": Infinity}}}', 422, "finite"),
    ],
)
def test_nan_and_infinity_give_a_4xx_whose_body_serializes(
    client, built, path, raw, code, fragment
):
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == code, r.text
    assert fragment in json.dumps(r.json())  # the body is JSON, NaN echoed as a string


def test_metadata_too_deep_or_too_large_is_400_and_an_empty_document_is_kept(client, built):
    deep: dict = {"leaf": 1}
    for _ in range(40):
        deep = {"a": deep}
    r = client.post(
        "/collections/docs/documents", json={"documents": [{"id": "z", "metadata": deep}]}
    )
    assert r.status_code == 400 and "max_metadata_depth" in detail(r)
    big = {"s": "x" * (64 * 1024)}
    r = client.post(
        "/collections/docs/documents", json={"documents": [{"id": "z", "metadata": big}]}
    )
    assert r.status_code == 400 and "max_metadata_bytes" in detail(r)
    assert client.get("/collections/docs/documents/z").status_code == 404
    assert (
        client.post("/collections", json={"name": "empties", "kinds": ["bm25"]}).status_code == 201
    )
    r = client.post(
        "/collections/empties/documents",
        json={"documents": [{"id": "e", "metadata": {"t": 1}}, {"id": "f", "text": "cells"}]},
    )
    assert r.status_code == 200, r.text
    job = wait_for_job(client, client.post("/collections/empties/builds").json()["id"])
    assert job["status"] == "succeeded", job
    assert client.get("/collections/empties/documents/e").json()["text"] == ""
    r = client.post("/collections/empties/search", json={"query": "cells", "filter": {"t": 1}})
    assert r.status_code == 200 and r.json()["hits"] == []


@pytest.mark.parametrize("doc_id", ["a/b", "a/b/", "/lead", "x%y", "sp ace", "a?b#c"])
def test_document_ids_with_slashes_are_fetched_and_deleted_by_path(client, built, doc_id):
    from urllib.parse import quote

    assert client.post("/collections", json={"name": "slashes"}).status_code in (201, 409)
    body = {"documents": [{"id": doc_id, "text": "t"}]}
    assert client.post("/collections/slashes/documents", json=body).status_code == 200
    path = f"/collections/slashes/documents/{quote(doc_id, safe='/')}"
    r = client.get(path)
    assert r.status_code == 200 and r.json()["id"] == doc_id, r.text
    assert client.delete(path).json() == {"deleted": 1}
    assert client.get(path).status_code == 404
