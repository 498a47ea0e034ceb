"""Live collections (issue #14): ``?refresh=wait_for`` writes, the background refresher,
settings per collection, merges (identical to a fresh full build, and invisible to
concurrent searches).

Truths: a fresh full build of the same documents in another home (``CollectionService.
index``), and the stored documents themselves.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from specrag.api.app import create_app
from specrag.api.service import CollectionService
from specrag.indexing.delta import DELTA_KINDS
from specrag.retrieval.request import SearchRequest
from specrag.settings import Settings
from specrag.types import Document
from tests.conftest import demo_documents
from tests.same_index import assert_same_index, current_path

KINDS = {"dense": {}, "bm25": {}}
#: Every kind a delta covers with a trained or calibrated part. colbert's codebook reuse
#: threshold is raised so that a build over the base would keep it for these small changes
#: (3 of 27 documents): a merge must retrain it anyway.
ALL_KINDS = {"bm25": {}, "dense": {}, "binary": {}, "colbert": {"reuse_codebook_below": 0.5}}
N_BASE = 24


def doc_json(doc: Document) -> dict:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}


def create(client, name: str, kinds: dict = KINDS, **live) -> None:
    r = client.post("/collections", json={"name": name, "kinds": kinds, **live})
    assert r.status_code == 201, r.text


def upsert(client, name: str, docs: list[Document], refresh: str | None = None) -> dict:
    url = f"/collections/{name}/documents" + (f"?refresh={refresh}" if refresh else "")
    r = client.post(url, json={"documents": [doc_json(d) for d in docs]})
    assert r.status_code == 200, r.text
    return r.json()


def build(settings: Settings, name: str) -> None:
    service = CollectionService(settings)
    try:
        service.index(name, [], None)
    finally:
        service.close()


def hits(client, name: str, query: str, retriever: str = "dense", k: int = 50) -> list[dict]:
    body = {"query": query[:1000], "k": k, "retriever": retriever}
    r = client.post(f"/collections/{name}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def finished_job(client, job_id: str, timeout: float = 120.0) -> dict:
    """The job once it succeeded or failed."""
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
        time.sleep(0.1)
    return job


def ids(found: list[dict]) -> list[str]:
    return [h["doc_id"] for h in found]


def fresh_build(
    home: Path, name: str, docs: list[Document], kinds: dict = KINDS
) -> CollectionService:
    service = CollectionService(Settings(home=home))
    service.start()
    service.index(name, docs, kinds)
    return service


@pytest.fixture
def encoded_texts(monkeypatch) -> list[str]:
    """Every document text encoded from now on, through the one entry point of builds and
    refreshes to the encoder (``encodings.session.encode_texts``)."""
    from specrag.indexing.encodings import session

    seen: list[str] = []
    real = session.encode_texts

    def recording(space, texts, *args, **kwargs):
        seen.extend(texts)
        return real(space, texts, *args, **kwargs)

    monkeypatch.setattr(session, "encode_texts", recording)
    return seen


@pytest.fixture
def app_home(tmp_path):
    return Settings(home=tmp_path / "home")


def test_wait_for_makes_writes_searchable_before_the_answer_and_after_restart(app_home, tmp_path):
    name = "wf"
    docs = demo_documents(N_BASE + 2)
    base, new = docs[:N_BASE], docs[N_BASE:]
    with TestClient(create_app(app_home), raise_server_exceptions=False) as client:
        # manual refresh only: wait_for must make the write searchable by itself
        create(client, name, refresh_interval=0, merge_max_share=10)  # no background merge
        upsert(client, name, base)
        r = client.post(
            f"/collections/{name}/documents?refresh=wait_for",
            json={"documents": [doc_json(new[0])]},
        )
        assert r.status_code == 409 and "no index yet" in r.json()["detail"]
        r = client.post(
            f"/collections/{name}/documents?refresh=soon", json={"documents": [doc_json(new[0])]}
        )
        assert r.status_code == 422
        build(app_home, name)

        assert upsert(client, name, [new[0]], "wait_for") == {"upserted": 1}
        assert ids(hits(client, name, new[0].text))[0] == new[0].id
        assert upsert(client, name, [new[1]], "true") == {"upserted": 1}
        assert ids(hits(client, name, new[1].text))[0] == new[1].id

        old = base[3]
        # new text, no title: no word of the old title and text, so bm25 must not match
        updated = Document(old.id, "Zebrafish fin regrowth via osteoblast dedifferentiation.")
        old_words = set(f"{old.title} {old.text}".lower().replace(".", " ").split())
        assert not old_words & set(updated.text.lower().replace(".", " ").split())
        upsert(client, name, [updated], "wait_for")
        victim = base[5]
        r = client.post(
            f"/collections/{name}/documents/delete?refresh=wait_for", json={"ids": [victim.id]}
        )
        assert r.status_code == 200 and r.json() == {"deleted": 1}
        status = client.get(f"/collections/{name}").json()["live"]
        assert status["pending"] is False and status["pending_documents"] == 0
        assert (status["delta_documents"], status["delta_superseded"]) == (3, 1)
        assert status["refresh_interval"] is None and status["last_refresh_at"]
        served = {"new": hits(client, name, updated.text), "old": hits(client, name, old.text)}
        served_bm25 = hits(client, name, old.text, "bm25")

    final = [updated if d.id == old.id else d for d in base if d.id != victim.id] + new
    with TestClient(create_app(app_home), raise_server_exceptions=False) as client:  # restart
        truth = fresh_build(tmp_path / "truth", name, final)
        try:
            for key, query in (("new", updated.text), ("old", old.text)):
                want = truth.search(
                    name, SearchRequest(query=query[:1000], k=50, retriever="dense")
                ).hits
                for got in (served[key], hits(client, name, query)):
                    assert ids(got) == [h.doc_id for h in want]
                    np.testing.assert_allclose(
                        [h["score"] for h in got], [h.score for h in want], atol=1e-5
                    )
            assert ids(hits(client, name, updated.text))[0] == updated.id
            for query in (victim.text, victim.title or victim.text[:60]):
                for retriever in ("dense", "bm25"):
                    assert victim.id not in ids(hits(client, name, query, retriever))
            # the old text of the updated document no longer matches its bm25 row
            assert old.id not in ids(served_bm25)
            assert "bm25" in DELTA_KINDS  # bm25 has delta segments: the new text matches
            assert ids(hits(client, name, updated.text, "bm25"))[0] == updated.id
        finally:
            truth.close()


def test_settings_at_create_patch_and_validation(app_home):
    with TestClient(create_app(app_home), raise_server_exceptions=False) as client:
        create(client, "s1", refresh_interval=2.5, merge_max_share=0.2, merge_max_docs=500)
        live = client.get("/collections/s1").json()["live"]
        assert (live["refresh_interval"], live["merge_max_share"], live["merge_max_docs"]) == (
            2.5,
            0.2,
            500,
        )
        assert live["pending"] is False and live["last_merge_at"] is None
        r = client.patch("/collections/s1", json={"refresh_interval": None})
        assert r.status_code == 200 and r.json()["live"]["refresh_interval"] is None
        assert r.json()["live"]["merge_max_docs"] == 500  # untouched
        r = client.patch("/collections/s1", json={"merge_max_docs": 3, "refresh_interval": 0.5})
        live = r.json()["live"]
        assert (live["refresh_interval"], live["merge_max_docs"]) == (0.5, 3)
        for bad in (
            {"refresh_interval": -1},
            {"merge_max_share": 0},
            {"merge_max_docs": 0},
            {"colour": 1},
        ):
            r = client.patch("/collections/s1", json=bad)
            assert r.status_code == 422, (bad, r.text)
        assert client.patch("/collections/s1", json={"merge_max_docs": None}).status_code == 400
        assert client.patch("/collections/nope", json={"merge_max_docs": 3}).status_code == 404
        create(client, "s2")  # the defaults
        live = client.get("/collections/s2").json()["live"]
        assert (live["refresh_interval"], live["merge_max_share"], live["merge_max_docs"]) == (
            1.0,
            0.1,
            10000,
        )
        r = client.post("/collections", json={"name": "s3", "refresh_interval": "often"})
        assert r.status_code == 422

    # bm25 alone refreshes too (its version's text hashes find the changed documents):
    # ?refresh=wait_for answers once the document is searchable.
    with TestClient(create_app(app_home), raise_server_exceptions=False) as client:
        r = client.post("/collections", json={"name": "b25", "kinds": ["bm25"]})
        assert r.status_code == 201
        upsert(client, "b25", demo_documents(3))
        build(app_home, "b25")
        doc = Document("axolotl", "Axolotl salamanders regenerate limbs.", "")
        upsert(client, "b25", [doc], refresh="wait_for")
        assert ids(hits(client, "b25", "axolotl salamanders", "bm25", 1)) == ["axolotl"]


def test_background_refresh_then_background_merge_equals_a_fresh_full_build(
    app_home, tmp_path, encoded_texts
):
    """Every kind's files after a background merge are byte-identical to a fresh full
    build's in another home (colbert too: its codebook trained anew, not kept from the
    base), and the merge encodes nothing: only the refreshes ran the encoder, once per new
    document."""
    name = "bg"
    docs = demo_documents(N_BASE + 3)
    base, new = docs[:N_BASE], docs[N_BASE:]
    with TestClient(create_app(app_home), raise_server_exceptions=False) as client:
        create(client, name, ALL_KINDS, refresh_interval=0.2, merge_max_docs=1000)
        upsert(client, name, base)
        build(app_home, name)
        encoded_texts.clear()
        service: CollectionService = client.app.state.service
        first = service.versions(name).current()
        upsert(client, name, new[:1])  # no refresh asked: the refresher makes it searchable
        deadline = time.monotonic() + 30
        while ids(hits(client, name, new[0].text, k=1)) != [new[0].id]:
            assert time.monotonic() < deadline, "the refresher did not refresh in 30 s"
            time.sleep(0.1)
        assert service.versions(name).current() == first  # refreshed, not rebuilt
        # over the merge policy (2 documents in the delta > 1): the refresher merges
        client.patch(f"/collections/{name}", json={"merge_max_docs": 1})
        upsert(client, name, new[1:])
        deadline = time.monotonic() + 120
        while service.versions(name).current() == first or service.pending(
            service.store.get_collection(name)
        ):
            assert time.monotonic() < deadline, "no background merge in 120 s"
            time.sleep(0.2)
        status = client.get(f"/collections/{name}").json()["live"]
        assert status["delta_documents"] == 0 and status["last_merge_at"]
        jobs = client.get(f"/collections/{name}/builds").json()
        assert jobs[0]["status"] == "succeeded" and "encoded 0" in jobs[0]["message"].replace(
            ",", ""
        )
        assert sorted(encoded_texts) == sorted(d.full_text() for d in new)

        truth = fresh_build(tmp_path / "truth", name, docs, ALL_KINDS)
        try:
            assert_same_index(current_path(service, name), current_path(truth, name))
        finally:
            truth.close()


def test_searches_during_a_merge_see_every_document(app_home):
    """8 client threads search while a merge builds and switches the version in: every
    response is a 200 and holds every document (k = all), its query's document first."""
    name = "cc"
    docs = demo_documents(N_BASE + 6)
    with TestClient(create_app(app_home), raise_server_exceptions=False) as client:
        create(client, name, refresh_interval=0, merge_max_share=10)  # merged on demand only
        upsert(client, name, docs[:N_BASE])
        build(app_home, name)
        upsert(client, name, docs[N_BASE:], "wait_for")  # 6 documents in the delta
        service: CollectionService = client.app.state.service
        first = service.versions(name).current()
        stop = threading.Event()
        failures: list[str] = []
        responses = [0]

        known = sorted(d.id for d in docs)

        def searcher(offset: int) -> None:
            i = offset
            while not stop.is_set():
                doc = docs[i % len(docs)]
                i += 8
                r = client.post(
                    f"/collections/{name}/search",
                    json={"query": doc.text[:1000], "k": len(docs), "retriever": "dense"},
                )
                responses[0] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                found = [h["doc_id"] for h in r.json()["hits"]]
                if sorted(found) != known:  # every document, in the old or the new state
                    failures.append(
                        f"{sorted(set(known) - set(found))} missing from {r.json()['version']}"
                    )
                elif found[0] != doc.id:
                    failures.append(f"{doc.id} not first in {r.json()['version']}")

        threads = [threading.Thread(target=searcher, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            r = client.post(f"/collections/{name}/merge")
            assert r.status_code == 202, r.text
            job = r.json()["id"]
            finished_job(client, job)
            deadline = time.monotonic() + 120
            while service.version_for(name).id == first or "+" in service.version_for(name).id:
                assert time.monotonic() < deadline  # the new version, with no delta
                time.sleep(0.05)
            time.sleep(0.5)  # searches on the merged version too
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert client.get(f"/jobs/{job}").json()["status"] == "succeeded"
        assert not failures, failures[:5]
        assert responses[0] >= 16  # at least two per client thread


def test_rebuild_keeps_the_codebook_full_build_and_merge_retrain_it(
    app_home, tmp_path, encoded_texts
):
    """Over REST: a plain build after a small change keeps colbert's codebook (what makes
    a rebuild cheap); ``{"full": true}`` and a merge train it anew, and leave the files of
    a fresh full build in another home. None of them encodes a stored document again."""
    name = "fb"
    kinds = {"colbert": ALL_KINDS["colbert"]}
    docs = demo_documents(N_BASE + 2)
    with TestClient(create_app(app_home), raise_server_exceptions=False) as client:
        service: CollectionService = client.app.state.service
        create(client, name, kinds, refresh_interval=0, merge_max_share=10)  # merges on demand
        upsert(client, name, docs[:N_BASE])
        build(app_home, name)
        upsert(client, name, [docs[N_BASE]], "wait_for")
        encoded_texts.clear()

        def codebook_reused(r) -> bool:
            assert r.status_code == 202, r.text
            job = finished_job(client, r.json()["id"])
            assert job["status"] == "succeeded", job
            manifest = service.versions(name).manifest(job["version_id"])
            return manifest["kinds"]["colbert"]["stats"]["codebook"]["reused"]

        assert codebook_reused(client.post(f"/collections/{name}/builds")) is True
        assert codebook_reused(client.post(f"/collections/{name}/builds", json={})) is True
        assert (
            codebook_reused(client.post(f"/collections/{name}/builds", json={"full": True}))
            is False
        )
        assert encoded_texts == []  # every document came from the encoding store
        truth = fresh_build(tmp_path / "truth", name, docs[: N_BASE + 1], kinds)
        try:
            assert_same_index(current_path(service, name), current_path(truth, name))
        finally:
            truth.close()

        encoded_texts.clear()  # the truth's build
        upsert(client, name, [docs[N_BASE + 1]], "wait_for")
        assert codebook_reused(client.post(f"/collections/{name}/merge")) is False
        assert encoded_texts == [docs[N_BASE + 1].full_text()]  # by the refresh alone
        truth = fresh_build(tmp_path / "truth2", name, docs, kinds)
        try:
            assert_same_index(current_path(service, name), current_path(truth, name))
        finally:
            truth.close()

        for bad in ({"full": "maybe"}, {"full": None}, {"complete": True}):
            r = client.post(f"/collections/{name}/builds", json=bad)
            assert r.status_code == 422, (bad, r.text)


def test_status_counts_pending_documents(app_home):
    """GET's ``live`` part: pending writes and how many documents they touch, the delta's
    size after a refresh (no background refresher here: a bare service)."""
    service = CollectionService(app_home)
    try:
        docs = demo_documents(8)
        service.create_collection("st", {"dense": {}})
        service.index("st", docs[:5], None)
        live = service.get_collection("st").live
        assert (live.pending, live.pending_documents, live.delta_documents) == (False, 0, 0)
        service.upsert("st", docs[5:7])
        live = service.get_collection("st").live
        assert (live.pending, live.pending_documents, live.last_refresh_at) == (True, 2, None)
        service.refresh("st")
        service.upsert("st", [Document(docs[0].id, "A changed text.")])
        live = service.get_collection("st").live
        assert (live.pending, live.pending_documents) == (True, 1)
        assert (live.delta_documents, live.delta_superseded) == (2, 0)
        assert live.last_refresh_at >= live.last_merge_at
    finally:
        service.close()
