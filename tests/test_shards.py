"""Sharded collections (issue #16, docs/scaling.md): a sharded version answers exactly what
the unsharded one answers. BM25 ids and scores are identical (collection-wide statistics
gathered before the shards write their impacts), dense flat ids identical and scores equal
to float rounding, with and without filters, at k=10 and 100, for 1, 2 and 4 shards; the
pipeline's fusion and rerank see the merged lists. Plus routing, the job and REST paths,
local processes, empty shards and the kinds that cannot shard."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from specrag.api.app import create_app
from specrag.indexing.kinds.base import Searcher
from specrag.indexing.scaleout import build_version, read_shards, write_shards
from specrag.indexing.shards.build import build_sharded, shard_dir
from specrag.indexing.shards.routing import partition, shard_of
from specrag.indexing.shards.search import ShardedSearcher
from specrag.indexing.versions import VersionStore
from specrag.retrieval import pipeline
from specrag.retrieval.request import SearchRequest
from specrag.retrieval.version import open_version
from specrag.settings import Settings
from specrag.storage.filters import matches
from tests.conftest import BMP_FORCED, demo_documents, demo_queries

SHARD_COUNTS = (1, 2, 4)
N_BM25 = 150
N_DENSE = 32
FILTERS = [
    None,
    {"topic": "bio"},
    {"year": {"$gte": 2012}},
    {"$and": [{"even": True}, {"topic": {"$ne": "med"}}]},
]


def mask_of(docs, filter_) -> np.ndarray | None:
    if filter_ is None:
        return None
    return np.array([matches(filter_, d.metadata) for d in docs])


def pairs(hits_lists):
    return [[(h.doc_id, h.score) for h in hits] for hits in hits_lists]


# -- routing ------------------------------------------------------------------------------


def test_routing_is_a_stable_hash_of_the_id():
    # Pinned values: blake2b, never Python's salted hash(); the same in every process.
    assert [shard_of(d, 4) for d in ("4983", "5836", "7912", "18670")] == [3, 2, 1, 1]
    assert [shard_of(f"doc-{i}", 7) for i in range(8)] == [2, 3, 6, 1, 4, 5, 1, 2]
    assert shard_of("doc-1", 1) == 0 and shard_of("é", 3) == 0
    ids = [d.id for d in demo_documents(200)]
    parts = partition(ids, 4)
    assert sorted(np.concatenate(parts).tolist()) == list(range(200))
    assert all(len(p) > 20 for p in parts)  # a hash spreads the demo ids
    for s, rows in enumerate(parts):
        assert all(shard_of(ids[r], 4) == s for r in rows)


# -- bm25: identical ids and scores -------------------------------------------------------


@pytest.fixture(scope="module", params=["exhaustive", "bmp"])
def bm25_versions(request, tmp_path_factory):
    config = {"mode": "exhaustive"} if request.param == "exhaustive" else BMP_FORCED
    docs = demo_documents(N_BM25)
    root = tmp_path_factory.mktemp(f"bm25-{request.param}")
    plain = VersionStore(root / "plain")
    plain.build(docs, {"bm25": config})
    sharded = {}
    for n in SHARD_COUNTS:
        store = VersionStore(root / f"s{n}")
        build_sharded(store, docs, {"bm25": config}, n, runner="inline")
        sharded[n] = open_version(store)
    return docs, open_version(plain), sharded


@pytest.mark.parametrize("n_shards", SHARD_COUNTS)
def test_bm25_sharded_equals_unsharded(bm25_versions, n_shards):
    docs, plain, sharded = bm25_versions
    version = sharded[n_shards]
    assert version.manifest["shards"]["count"] == n_shards
    assert sum(version.manifest["shards"]["n_docs"]) == len(docs)
    searcher = version.searchers["bm25"]
    assert isinstance(searcher, ShardedSearcher) and isinstance(searcher, Searcher)
    queries = demo_queries(40)
    for filter_ in FILTERS:
        allowed = mask_of(docs, filter_)
        for k in (10, 100):
            want = plain.searchers["bm25"].search(queries, k, allowed)
            got = searcher.search(queries, k, allowed)
            assert pairs(got) == pairs(want), (n_shards, filter_, k)  # exact: no tolerance
    assert np.array_equal(
        searcher.reference_scores(queries), plain.searchers["bm25"].reference_scores(queries)
    )


def test_bm25_shards_hold_collection_statistics(bm25_versions):
    _docs, plain, sharded = bm25_versions
    stats = sharded[4].manifest["shards"]["bm25"]
    assert stats["n_docs"] == N_BM25
    assert stats["avgdl"] == plain.manifest["kinds"]["bm25"]["stats"]["avgdl"]
    assert stats["scale"] == plain.manifest["kinds"]["bm25"]["stats"]["scale"]
    for searcher, _rows in sharded[4].searchers["bm25"].shards:
        assert searcher.index.scale == stats["scale"]
        assert searcher.index.meta["avgdl"] == stats["avgdl"]


# -- dense flat, fusion and rerank ---------------------------------------------------------


@pytest.fixture(scope="module")
def hybrid_versions(tmp_path_factory):
    kinds = {"bm25": {}, "dense": {"index": "flat"}}
    docs = demo_documents(N_DENSE)
    root = tmp_path_factory.mktemp("hybrid")
    plain = VersionStore(root / "plain")
    plain.build(docs, kinds)
    sharded = {}
    for n in SHARD_COUNTS:
        store = VersionStore(root / f"s{n}")
        build_sharded(store, docs, kinds, n, runner="inline")
        sharded[n] = open_version(store)
    return docs, open_version(plain), sharded


def assert_same_ranking(got, want, atol=1e-5):
    for g, w in zip(got, want, strict=True):
        assert [h.doc_id for h in g] == [h.doc_id for h in w]
        np.testing.assert_allclose([h.score for h in g], [h.score for h in w], atol=atol, rtol=0)


@pytest.mark.parametrize("n_shards", SHARD_COUNTS)
def test_dense_flat_sharded_equals_unsharded(hybrid_versions, n_shards):
    docs, plain, sharded = hybrid_versions
    queries = demo_queries(10)
    for filter_ in FILTERS:
        allowed = mask_of(docs, filter_)
        for k in (10, 100):
            want = plain.searchers["dense"].search(queries, k, allowed)
            got = sharded[n_shards].searchers["dense"].search(queries, k, allowed)
            assert_same_ranking(got, want)


def test_sharded_builds_share_the_encoding_store(tmp_path, monkeypatch):
    from specrag.indexing.encodings import session
    from specrag.indexing.encodings.gc import collect_garbage
    from specrag.indexing.kinds.dense.build import EMBEDDINGS_FILE

    docs = demo_documents(N_DENSE)
    kinds = {"bm25": {}, "dense": {"index": "flat"}}
    store = VersionStore(tmp_path / "c")
    plain = store.build(docs, kinds)
    encoded = []
    real = session.encode_texts
    monkeypatch.setattr(
        session, "encode_texts", lambda space, texts, *a: encoded.append(len(texts)) or real(space, texts, *a)
    )  # fmt: skip
    sharded = build_sharded(store, docs, kinds, 2, runner="inline")
    assert encoded == []  # after the unsharded build: nothing to encode
    (stats,) = store.manifest(sharded)["encodings"].values()
    assert (stats["encoded"], stats["reused"]) == (0, N_DENSE)
    # The version refers to the stored encodings by collection row, as the unsharded one.
    refs = sorted((store.path(plain) / "encodings").glob("*.npy"))
    assert refs and [p.name for p in refs] == sorted(
        p.name for p in (store.path(sharded) / "encodings").glob("*.npy")
    )
    for path in refs:
        assert np.array_equal(np.load(path), np.load(store.path(sharded) / "encodings" / path.name))
    # The shards' vectors are the stored ones, at their rows.
    want = np.load(store.path(plain) / "dense" / EMBEDDINGS_FILE)
    for s in range(2):
        rows = np.load(shard_dir(store.path(sharded), s) / "rows.npy")
        got = np.load(shard_dir(store.path(sharded), s) / "dense" / EMBEDDINGS_FILE)
        assert np.array_equal(got, want[rows])
    # A sharded build into a fresh store encodes every document (the counter can fail);
    # garbage collection keeps what the sharded version refers to.
    fresh = VersionStore(tmp_path / "fresh")
    vid = build_sharded(fresh, docs, kinds, 4, runner="inline")
    assert sum(encoded) == N_DENSE
    (fresh_stats,) = fresh.manifest(vid)["encodings"].values()
    assert (fresh_stats["encoded"], fresh_stats["reused"]) == (N_DENSE, 0)
    assert collect_garbage(fresh.root)["docs_dropped"] == 0
    fresh.build(docs, kinds)
    assert sum(encoded) == N_DENSE


def test_a_shard_below_the_self_check_floor_is_not_activated(tmp_path):
    from specrag.indexing.kinds.selfcheck import SelfCheckError

    docs = demo_documents(160)
    store = VersionStore(tmp_path / "c")
    # Lists of ~13 documents per shard, one probed (test_selfcheck.py's broken IVF).
    broken = {"dense": {"index": "ivf", "ivf_nlist": 6, "ivf_nprobe": 1}}
    with pytest.raises(SelfCheckError, match=r"dense \(shard \d\): recall@10") as err:
        build_sharded(store, docs, broken, 2, runner="inline")
    [vid] = store.list()
    assert vid in str(err.value) and store.current() is None
    checks = [s["self_check"] for s in store.manifest(vid)["kinds"]["dense"]["stats"]["shards"]]
    assert any(not c["passed"] for c in checks)
    sound = {"dense": {"index": "ivf", "ivf_nlist": 4, "ivf_nprobe": 4}}
    vid = build_sharded(store, docs, sound, 2, runner="inline")
    assert store.current() == vid


def test_fusion_and_rerank_see_the_merged_lists(hybrid_versions, n_shards=4):
    from specrag.indexing.encoders.tokens import TokenEncoder
    from specrag.rerank.maxsim import MaxSimReranker
    from specrag.rerank.stage import RerankStage

    docs, plain, sharded = hybrid_versions
    text_of = {d.id: d.full_text() for d in docs}
    stage = RerankStage(
        MaxSimReranker(TokenEncoder("all-MiniLM-L6-v2"), None, {"first": 0.5}),
        top_n=10,
        texts=lambda _version, ids: [text_of[i] for i in ids],
    )
    queries = demo_queries(3)
    requests = [
        SearchRequest(query="-", k=10),  # hybrid: rrf of bm25 and dense
        SearchRequest(query="-", k=10, fusion="convex", filter={"topic": "bio"}),
    ]
    for request in requests:
        allowed = mask_of(docs, request.filter)
        for stages in ((), (stage,)):
            want = pipeline.search_batch(plain, queries, request, allowed, stages).hits
            got = pipeline.search_batch(sharded[n_shards], queries, request, allowed, stages).hits
            assert_same_ranking(got, want, atol=1e-4)
            assert all("bm25" in h.scores or "dense" in h.scores for hits in got for h in hits)


# -- layouts, runners, jobs and REST -------------------------------------------------------


def test_shard_folders_are_versions_of_their_own(bm25_versions):
    _docs, _plain, sharded = bm25_versions
    version = sharded[2]
    for s in range(2):
        folder = shard_dir(version.path, s)
        store = VersionStore(folder.parent)
        store.versions_dir = folder.parent  # a shard folder opens like any version
        shard = open_version(store, folder.name)
        assert list(shard.searchers) == ["bm25"]
        rows = np.load(folder / "rows.npy")
        assert shard.doc_ids.tolist() == version.doc_ids[rows].tolist()
        assert np.all(np.diff(rows) > 0)
    assert not (version.path / ".work").exists()


def test_local_processes_build_the_same_index(tmp_path, bm25_versions):
    docs, _plain, sharded = bm25_versions
    config = sharded[2].manifest["kinds"]["bm25"]["config"]
    store = VersionStore(tmp_path / "procs")
    vid = build_sharded(store, docs, {"bm25": config}, 2, runner="processes")
    version = open_version(store, vid)
    assert version.manifest["shards"]["runner"] == "processes"
    queries = demo_queries(10)
    for s in range(2):
        for name in ("postings.npy", "offsets.npy", "block_max.npy"):
            got = (shard_dir(version.path, s) / "bm25" / name).read_bytes()
            want = (shard_dir(sharded[2].path, s) / "bm25" / name).read_bytes()
            assert got == want, name
    assert pairs(version.searchers["bm25"].search(queries, 10)) == pairs(
        sharded[2].searchers["bm25"].search(queries, 10)
    )


def test_empty_shards_are_skipped(tmp_path):
    docs = demo_documents(3)
    store = VersionStore(tmp_path / "few")
    build_sharded(store, docs, ["bm25"], 8, runner="inline")
    version = open_version(store)
    assert sorted(version.manifest["shards"]["n_docs"]) == [0, 0, 0, 0, 0, 1, 1, 1]
    hits = version.searchers["bm25"].search([docs[1].text[:200]], 5)[0]
    assert hits[0].doc_id == docs[1].id
    assert version.searchers["bm25"].search(["x"], 5, np.zeros(3, dtype=bool)) == [[]]


def test_kinds_that_cannot_shard_are_refused(tmp_path):
    with pytest.raises(ValueError, match="colbert cannot be sharded"):
        build_sharded(VersionStore(tmp_path), demo_documents(5), ["bm25", "colbert"], 2)
    with pytest.raises(ValueError, match="shards must be in"):
        write_shards(tmp_path, 0)
    with pytest.raises(ValueError, match="colbert cannot be sharded"):
        write_shards(tmp_path, 2, ["colbert"])
    assert read_shards(tmp_path) == 1
    write_shards(tmp_path, 3, ["bm25"])
    assert read_shards(tmp_path) == 3


def test_build_version_follows_the_collection_layout(tmp_path):
    store = VersionStore(tmp_path / "c")
    write_shards(store.root, 2)
    vid = build_version(store, demo_documents(20), ["bm25"])
    assert store.manifest(vid)["shards"]["count"] == 2
    write_shards(store.root, 1)
    assert "shards" not in store.manifest(build_version(store, demo_documents(20), ["bm25"]))


def test_rest_collection_with_shards(tmp_path):
    settings = Settings(home=tmp_path / "home")
    docs = demo_documents(60)
    body = [{"id": d.id, "text": d.text, "title": d.title, "metadata": d.metadata} for d in docs]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.post("/collections", json={"name": "sh", "kinds": ["bm25"], "shards": 2})
        assert r.status_code == 201, r.text
        assert r.json()["shards"] == 2
        r = client.post("/collections", json={"name": "bad", "kinds": ["colbert"], "shards": 2})
        assert r.status_code in (400, 422) and "cannot be sharded" in r.text
        assert client.get("/collections/bad").status_code == 404
        for name, shards in (("sh", 2), ("plain", 1)):
            if shards == 1:
                client.post("/collections", json={"name": name, "kinds": ["bm25"]})
            assert client.post(
                f"/collections/{name}/documents", json={"documents": body}
            ).is_success
            job = client.post(f"/collections/{name}/builds").json()
            deadline = time.monotonic() + 120
            while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
                time.sleep(0.2)
                job = client.get(f"/jobs/{job['id']}").json()
            assert job["status"] == "succeeded", job
        query = {
            "query": docs[7].text[:120],
            "k": 10,
            "retriever": "bm25",
            "filter": {"even": False},
        }
        got = client.post("/collections/sh/search", json=query).json()["hits"]
        want = client.post("/collections/plain/search", json=query).json()["hits"]
        assert got == want and got
        r = client.post("/collections/sh/builds", json={"kinds": ["colbert"]})
        assert r.status_code == 400 and "cannot be sharded" in r.text
