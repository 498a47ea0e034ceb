"""Delta segments (issue #14, point 2): documents upserted after a build are searchable
after ``POST /collections/{name}/refresh``; ``dense`` answers equal those of a full build
over the same documents; deleted documents never come back (per-kind scores:
tests/test_delta_kinds.py)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from specrag.api.app import create_app
from specrag.api.service import CollectionService
from specrag.indexing.encodings.gc import collect_garbage
from specrag.retrieval.request import SearchRequest
from specrag.settings import Settings
from specrag.types import Document
from tests.conftest import demo_documents, demo_queries

N_BASE = 20
KINDS = {"dense": {}, "bm25": {}, "binary": {}, "colbert": {}}


def doc_json(doc: Document) -> dict:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}


def revised(doc: Document) -> Document:
    return Document(doc.id, "Revised: " + doc.text[::-1][:400], doc.title, doc.metadata)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("delta-home"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c, settings


def search(client, query: str, k: int = 10, retriever: str = "dense", filter_=None) -> dict:
    body = {"query": query, "k": k, "retriever": retriever}
    if filter_ is not None:
        body["filter"] = filter_
    r = client.post("/collections/live/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def full_build(tmp_path, docs: list[Document]) -> CollectionService:
    service = CollectionService(Settings(home=tmp_path / "full"))
    service.start()
    service.index("live", docs, KINDS)
    return service


def test_refresh_equals_a_full_build(client, tmp_path):
    client, settings = client
    docs = demo_documents(N_BASE + 4)
    base, extra = docs[:N_BASE], docs[N_BASE:]
    # refresh on demand only (the search before the refresh misses), no background merge
    body = {"name": "live", "kinds": KINDS, "refresh_interval": 0, "merge_max_share": 10}
    assert client.post("/collections", json=body).status_code == 201
    r = client.post("/collections/live/documents", json={"documents": [doc_json(d) for d in base]})
    assert r.status_code == 200
    assert client.post("/collections/live/refresh").status_code == 400  # no version yet
    service = CollectionService(settings)
    service.index("live", [], None)
    service.close()

    changed = [revised(base[2]), revised(base[7])]
    r = client.post(
        "/collections/live/documents", json={"documents": [doc_json(d) for d in changed + extra]}
    )
    assert r.status_code == 200
    r = client.post("/collections/live/documents/delete", json={"ids": [base[11].id]})
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    query = extra[0].title or extra[0].text[:80]
    assert extra[0].id not in [h["doc_id"] for h in search(client, query)["hits"]]

    r = client.post("/collections/live/refresh")
    assert r.status_code == 200, r.text
    delta = r.json()
    assert (delta["n_docs"], delta["n_superseded"], delta["encoded"]) == (6, 2, 6)

    final = [changed[0] if d.id == base[2].id else changed[1] if d.id == base[7].id else d
             for d in base if d.id != base[11].id] + extra  # fmt: skip
    full = full_build(tmp_path, final)
    try:
        queries = [query, *demo_queries(6)]
        for q in queries:
            for k, filter_ in ((10, None), (30, None), (5, {"topic": "bio"})):
                got = search(client, q, k, filter_=filter_)
                want = full.search(
                    "live", SearchRequest(query=q, k=k, retriever="dense", filter=filter_)
                )
                assert got["version"].count("+") == 1  # base + delta
                assert [h["doc_id"] for h in got["hits"]] == [h.doc_id for h in want.hits]
                np.testing.assert_allclose(
                    [h["score"] for h in got["hits"]], [h.score for h in want.hits], atol=1e-5
                )
        # Every covered kind searches the delta too (scores: tests/test_delta_kinds.py):
        # k over the collection size returns each live document once, an updated one by
        # its delta row; the deleted one never comes back, also after a restart.
        gone = base[11].title or base[11].text[:80]
        live_ids = sorted(d.id for d in final)
        restarted = CollectionService(settings)
        try:
            for kind in KINDS:
                assert search(client, query, 30, kind)["hits"][0]["doc_id"] == extra[0].id
                for q in (gone, query):
                    ids = [h["doc_id"] for h in search(client, q, 30, kind)["hits"]]
                    again = restarted.search("live", SearchRequest(query=q, k=30, retriever=kind))
                    for got in (ids, [h.doc_id for h in again.hits]):
                        assert base[11].id not in got
                        if kind != "bm25":  # vectors score every document
                            assert sorted(got) == live_ids
        finally:
            restarted.close()
    finally:
        full.close()

    # GC keeps what the delta refers to; a second refresh encodes nothing.
    collect_garbage(settings.collections_dir / "live")
    again = client.post("/collections/live/refresh").json()
    assert (again["n_docs"], again["encoded"], again["reused"]) == (6, 0, 6)


def test_a_full_build_retires_the_delta(client):
    client, settings = client
    service = CollectionService(settings)
    try:
        service.index("live", [], None)
        version = service.versions("live").current()
        assert service.version_for("live").id == version
        hits = service.search("live", SearchRequest(query="cells", k=5, retriever="dense")).hits
        assert len(hits) == 5
    finally:
        service.close()
