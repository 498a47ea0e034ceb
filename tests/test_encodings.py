"""The encoding store (issue #14): stored outputs equal the encoders' own, kinds on one
model share one forward pass, a rebuild encodes only changed texts and equals a build
from scratch, and garbage collection keeps exactly what versions refer to."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from specrag.indexing.encoders.models import load_model
from specrag.indexing.encoders.tokens import TokenEncoder
from specrag.indexing.encodings import session as session_module
from specrag.indexing.encodings.gc import collect_garbage, referenced_hashes
from specrag.indexing.encodings.session import ensure
from specrag.indexing.encodings.spaces import EncodingSpace, bi_encoder_space
from specrag.indexing.encodings.store import EncodingStore
from specrag.indexing.versions import VersionStore
from specrag.retrieval.version import open_version
from specrag.types import Document
from tests.conftest import REPO, demo_documents, demo_queries

N_DOCS = 24
ALL_THREE = {"dense": {}, "binary": {}, "colbert": {}}


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return demo_documents(N_DOCS)


@pytest.fixture
def encode_calls(monkeypatch) -> list[list[str]]:
    """Every batch of texts the store sent to an encoder."""
    calls: list[list[str]] = []
    real = session_module.encode_texts

    def counting(space, texts, fields, batch_size, on_batch=lambda d: None):
        calls.append(list(texts))
        return real(space, texts, fields, batch_size, on_batch)

    monkeypatch.setattr(session_module, "encode_texts", counting)
    return calls


def changed(docs: list[Document], row: int) -> list[Document]:
    out = list(docs)
    d = out[row]
    out[row] = Document(d.id, d.text + " (revised)", d.title, d.metadata)
    return out


def test_one_forward_serves_the_encoders_own_outputs(tmp_path, docs):
    space = bi_encoder_space("all-MiniLM-L6-v2")
    assert space == bi_encoder_space("all-MiniLM-L6-v2", None, "plain")  # no prompt: shared
    store = EncodingStore(tmp_path).space(space)
    encoded = ensure(store, docs, ("pooled", "tokens"))
    texts = [d.full_text() for d in docs]

    pooled = encoded.pooled(normalize=False)
    direct = load_model("all-MiniLM-L6-v2").encode(texts, convert_to_numpy=True)
    cosine = (
        (pooled * direct).sum(1) / np.linalg.norm(pooled, axis=1) / np.linalg.norm(direct, axis=1)
    )
    assert np.all(cosine > 1 - 1e-5)
    np.testing.assert_allclose(pooled, direct, atol=1e-5)

    colbert = TokenEncoder("all-MiniLM-L6-v2").encode_documents(texts)
    stored = list(encoded.rows("tokens"))
    assert [len(t) for t in stored] == [len(t) for t in colbert]
    for got, want in zip(stored, colbert, strict=True):
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), want, atol=2e-3)  # fp16 storage


def test_kinds_share_one_pass_and_rebuilds_encode_only_changes(tmp_path, docs, encode_calls):
    versions = VersionStore(tmp_path / "c")
    stages: list[str] = []
    v1 = versions.build(docs, ALL_THREE, lambda d, t, s, u="doc": stages.append(s))
    assert sum(len(c) for c in encode_calls) == N_DOCS  # one forward per document
    (entry,) = versions.manifest(v1)["encodings"].values()
    assert (entry["encoded"], entry["reused"]) == (N_DOCS, 0)
    assert entry["kinds"] == ["dense", "binary", "colbert"]
    assert f"encode all-MiniLM-L6-v2 (dense, binary, colbert): {N_DOCS} new, 0 reused" in stages

    encode_calls.clear()
    v2 = versions.build(docs, ALL_THREE)
    assert encode_calls == []
    assert [*versions.manifest(v2)["encodings"].values()][0]["reused"] == N_DOCS

    edited = changed(docs, 5)
    v3 = versions.build(edited, ALL_THREE)
    assert encode_calls == [[edited[5].full_text()]]
    (entry,) = versions.manifest(v3)["encodings"].values()
    assert (entry["encoded"], entry["reused"]) == (1, N_DOCS - 1)

    # The incremental version answers as a build from scratch does.
    scratch = VersionStore(tmp_path / "fresh")
    fresh = open_version(scratch, scratch.build(edited, ALL_THREE))
    incremental = open_version(versions, v3)
    np.testing.assert_allclose(
        np.asarray(incremental.searchers["dense"].embeddings),
        np.asarray(fresh.searchers["dense"].embeddings),
        atol=1e-5,
    )
    queries = demo_queries(5)
    for kind in ALL_THREE:
        got = incremental.searchers[kind].search(queries, 5)
        want = fresh.searchers[kind].search(queries, 5)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose([h.score for h in g], [h.score for h in w], atol=1e-4)


def test_a_changed_model_setting_encodes_everything_again(tmp_path, docs, encode_calls):
    versions = VersionStore(tmp_path / "c")
    versions.build(docs[:6], {"dense": {}})
    versions.build(docs[:6], {"dense": {"max_seq_length": 64}})
    assert [len(c) for c in encode_calls] == [6, 6]
    encode_calls.clear()
    versions.build(docs[:6], {"dense": {"max_seq_length": 64}, "binary": {}})
    assert encode_calls == []  # both spaces stored; binary reads the default one


def test_gc_keeps_exactly_what_versions_refer_to(tmp_path, docs, encode_calls):
    versions = VersionStore(tmp_path / "c")
    old = versions.build(docs[:8], {"dense": {}})
    edited = [changed(docs[:8], i)[i] for i in range(3)] + docs[3:8]
    new = versions.build(edited, {"dense": {}})
    versions.build(docs[:4], {"dense": {"max_seq_length": 32}})  # a second space
    store = EncodingStore(tmp_path / "c" / "encodings")
    assert len(store.space_keys()) == 2
    kept_key = bi_encoder_space("all-MiniLM-L6-v2").key
    leftover = store.root / kept_key / "chunks" / ".tmp-killed-writer"
    leftover.mkdir()  # what a kill during a chunk write leaves: never read, removed by GC

    for vid in versions.list():
        if vid != new:
            shutil.rmtree(versions.path(vid))
    # Chunks mostly still referred to are kept whole by default; 1.0 rewrites any with
    # a dead document, so what is left is exactly what the version refers to.
    stats = collect_garbage(tmp_path / "c", min_live_fraction=1.0)
    assert stats["spaces_removed"] == 1 and stats["chunks_rewritten"] == 1
    assert not leftover.exists()
    assert store.space_keys() == [kept_key]
    key = kept_key
    refs = referenced_hashes(versions.versions_dir)[key]
    space = EncodingStore(tmp_path / "c" / "encodings").space(
        EncodingSpace(**json.loads((store.root / key / "space.json").read_text()))
    )
    stored = np.unique(np.concatenate([space.chunk(n).hashes for n in space.chunk_names()]))
    assert stored.tolist() == refs.tolist()  # the old texts of docs 0-2 are gone
    assert stats["docs_dropped"] == 3 and old not in versions.list()

    encode_calls.clear()
    versions.build(edited, {"dense": {}})
    assert encode_calls == []  # nothing a version needs was collected


def test_store_appends_are_whole_and_the_newest_copy_wins(tmp_path):
    space = EncodingSpace("sparse", "toy", "fp")
    store = EncodingStore(tmp_path).space(space)
    h = [b"a" * 64, b"b" * 64]
    store.append(
        h, {"terms": [np.array([1, 2]), np.array([3])], "weights": [np.ones(2), np.ones(1)]}
    )
    store.append(h[:1], {"terms": [np.array([1, 2])], "weights": [np.full(2, 2.0)]})
    got = list(store.get(np.array(h, "S64"), "weights"))
    assert got[0].tolist() == [2.0, 2.0] and got[1].tolist() == [1.0]
    assert store.has(np.array([b"c" * 64], "S64"), ["terms"]).tolist() == [False]
    with pytest.raises(ValueError, match="hold no"):
        store.append(h, {"pooled": [np.ones(3), np.ones(3)]})
    with pytest.raises(KeyError):
        list(store.get(np.array([b"c" * 64], "S64"), "terms"))


def test_sparse_weights_are_stored_and_reused(tmp_path, docs, encode_calls):
    from tests.tiny_models import tiny_splade_dir

    config = {"splade": {"model": str(tiny_splade_dir(tmp_path / "model")), "mode": "exhaustive"}}
    versions = VersionStore(tmp_path / "c")
    first = open_version(versions, versions.build(docs[:10], config))
    again = open_version(versions, versions.build(docs[:10], config))
    assert [len(c) for c in encode_calls] == [10]
    queries = demo_queries(4)
    np.testing.assert_array_equal(
        first.searchers["splade"].reference_scores(queries),
        again.searchers["splade"].reference_scores(queries),
    )


KILLED_WRITER = """
import sys
from pathlib import Path
from specrag.indexing.encodings import session
from specrag.indexing.encodings.spaces import bi_encoder_space
from specrag.indexing.encodings.store import EncodingStore
from tests.conftest import demo_documents

session.CHUNK_DOCS = session.CHUNK_DOCS_TOKENS = 3
store = EncodingStore(Path(sys.argv[1])).space(bi_encoder_space("all-MiniLM-L6-v2"))
session.ensure(store, demo_documents(int(sys.argv[2])), ("pooled", "tokens"), batch_size=3)
"""


def test_kill_during_encoding_keeps_whole_chunks(tmp_path, docs):
    root = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(root), str(N_DOCS)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])},
    )
    space = bi_encoder_space("all-MiniLM-L6-v2")
    chunks = root / space.key / "chunks"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            chunks.exists()
            and len([p for p in chunks.iterdir() if not p.name.startswith(".")]) >= 2
        ):
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer finished before it was killed"

    store = EncodingStore(root).space(space)
    names = store.chunk_names()
    assert 2 <= len(names) < N_DOCS // 3
    kept = sum(len(store.chunk(n).hashes) for n in names)  # every visible chunk opens whole
    again = ensure(store, docs, ("pooled", "tokens"))
    assert (again.encoded, again.reused) == (N_DOCS - kept, kept)
