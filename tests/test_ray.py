"""Builds on Ray (issue #16, docs/scaling.md), on a local Ray cluster the test starts
(2 CPUs, tens of documents): a Ray Data build writes the version a local build writes
(bm25 files byte-identical, dense vectors equal within float tolerance, the same ids in the
same order), shards built as Ray tasks answer as the local ones, and ``specrag index
--ray --shards`` runs end to end. Skipped, with the reason, where the ``ray`` extra is not
installed (``make install-ray``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip(
    "ray",
    reason="Ray is not installed: the `ray` extra (pip install 'specrag[ray]', make install-ray)",
)

from specrag.api.cli import main  # noqa: E402
from specrag.indexing.kinds.dense.build import EMBEDDINGS_FILE  # noqa: E402
from specrag.indexing.ray_build import build_with_ray  # noqa: E402
from specrag.indexing.scaleout import RayOptions  # noqa: E402
from specrag.indexing.shards.build import build_sharded  # noqa: E402
from specrag.indexing.versions import VersionStore  # noqa: E402
from specrag.retrieval.version import open_version  # noqa: E402
from tests.conftest import demo_documents, demo_queries  # noqa: E402

N_DOCS = 24


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_data_build_writes_the_local_version(cluster, tmp_path):
    docs = demo_documents(N_DOCS)
    kinds = {"bm25": {}, "dense": {"batch_size": 8}}
    local = VersionStore(tmp_path / "local")
    local_id = local.build(docs, kinds)
    remote = VersionStore(tmp_path / "ray")
    options = RayOptions(batch_size=5, concurrency=1, num_gpus=0)
    ray_id = build_with_ray(remote, docs, kinds, options=options)
    a, b = local.path(local_id), remote.path(ray_id)
    for rows_file in ("ids.npy", "texts.npy"):  # texts.npy: what a refresh compares with
        assert (a / rows_file).read_bytes() == (b / rows_file).read_bytes(), rows_file
    bm25_files = sorted(p.name for p in (a / "bm25").iterdir())
    assert bm25_files == sorted(p.name for p in (b / "bm25").iterdir())
    for name in bm25_files:
        assert (a / "bm25" / name).read_bytes() == (b / "bm25" / name).read_bytes(), name
    want, got = np.load(a / "dense" / EMBEDDINGS_FILE), np.load(b / "dense" / EMBEDDINGS_FILE)
    assert want.shape == got.shape == (N_DOCS, 384)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert json.loads((a / "dense/meta.json").read_text()) == json.loads(
        (b / "dense/meta.json").read_text()
    )
    manifest_a, manifest_b = local.manifest(local_id), remote.manifest(ray_id)
    assert manifest_b["built_on"]["ray"] is True
    for name in kinds:
        assert manifest_a["kinds"][name]["config"] == manifest_b["kinds"][name]["config"]
    queries = demo_queries(5)
    va, vb = open_version(local, local_id), open_version(remote, ray_id)
    for kind in kinds:
        ha, hb = va.searchers[kind].search(queries, 10), vb.searchers[kind].search(queries, 10)
        assert [[h.doc_id for h in x] for x in ha] == [[h.doc_id for h in x] for x in hb]


def test_ray_data_build_runs_the_self_check(cluster, tmp_path):
    from specrag.indexing.kinds.selfcheck import SelfCheckError

    docs = demo_documents(80)
    store = VersionStore(tmp_path / "c")
    options = RayOptions(batch_size=40, concurrency=1, num_gpus=0)
    # test_selfcheck.py's broken IVF: lists of ~13 documents, one probed.
    broken = {"dense": {"index": "ivf", "ivf_nlist": 6, "ivf_nprobe": 1}}
    with pytest.raises(SelfCheckError, match="dense: recall@10"):
        build_with_ray(store, docs, broken, options=options)
    [vid] = store.list()
    assert store.current() is None
    assert not store.manifest(vid)["kinds"]["dense"]["stats"]["self_check"]["passed"]


def test_shards_as_ray_tasks(cluster, tmp_path):
    docs = demo_documents(60)
    inline, tasks = VersionStore(tmp_path / "inline"), VersionStore(tmp_path / "tasks")
    build_sharded(inline, docs, ["bm25"], 2, runner="inline")
    build_sharded(tasks, docs, ["bm25"], 2, runner="ray")
    va, vb = open_version(inline), open_version(tasks)
    assert vb.manifest["shards"]["runner"] == "ray"
    queries = demo_queries(10)
    got = [[(h.doc_id, h.score) for h in x] for x in vb.searchers["bm25"].search(queries, 20)]
    want = [[(h.doc_id, h.score) for h in x] for x in va.searchers["bm25"].search(queries, 20)]
    assert got == want


def test_cli_index_with_ray_and_shards(cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECRAG_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": d.id, "text": d.text}) + "\n" for d in demo_documents(40))
    )
    args = ["index", "--collection", "c", "--corpus", str(corpus), "--shards", "2", "--ray"]
    assert main(args) == 0
    assert main(["collections", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("[") :])[0]["shards"] == 2
    assert main(["search", "--collection", "c", "--query", "cancer", "--retriever", "bm25"]) == 0


def test_serve_runs_the_app_as_a_deployment(cluster, tmp_path):
    import socket
    import time

    import httpx
    from ray import serve

    from specrag.api import ray_serve
    from specrag.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_serve.run(Settings(home=tmp_path / "home"), "127.0.0.1", port, blocking=False)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Serve did not answer /health"
            time.sleep(1)
        docs = [{"id": d.id, "text": d.text} for d in demo_documents(30)]
        r = httpx.post(f"{base}/collections", json={"name": "s", "kinds": ["bm25"], "shards": 2})
        assert r.status_code == 201, r.text
        assert httpx.post(f"{base}/collections/s/documents", json={"documents": docs}).is_success
        job = httpx.post(f"{base}/collections/s/builds").json()
        while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = httpx.get(f"{base}/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        query = {"query": docs[3]["text"][:100], "k": 3, "retriever": "bm25"}
        hits = httpx.post(f"{base}/collections/s/search", json=query, timeout=30).json()["hits"]
        assert hits[0]["doc_id"] == docs[3]["id"]
    finally:
        serve.shutdown()
