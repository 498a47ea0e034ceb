"""The ``dense`` kind over the offline MiniLM: exact search under masks (through both the
exact-scan and the faiss-IDSelector paths), HNSW/IVF recall against flat, reload."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.encoders.models import load_model
from specrag.indexing.kinds.dense.build import write_dense_index
from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.indexing.kinds.dense.search import DenseSearcher
from specrag.retrieval.version import open_version
from tests.conftest import demo_documents, demo_queries
from tests.dense_fixtures import N_DOCS, dense_and_binary_store

K = 10


@pytest.fixture(scope="module")
def docs():
    return demo_documents(N_DOCS)


@pytest.fixture(scope="module")
def queries():
    return demo_queries(6)


@pytest.fixture(scope="module")
def reference(searcher, queries):
    return searcher.reference_scores(queries)


@pytest.fixture(scope="module")
def store():
    return dense_and_binary_store()


@pytest.fixture(scope="module")
def searcher(store) -> DenseSearcher:
    return open_version(store).searchers["dense"]


def masks(n: int):
    rng = np.random.default_rng(1)
    return {
        "none": np.zeros(n, bool),
        "one": np.eye(1, n, 57, dtype=bool)[0],  # row 57 < N_DOCS
        "few": rng.random(n) < 0.02,
        "some": rng.random(n) < 0.4,
        "all": np.ones(n, bool),
        "unmasked": None,
    }


def assert_matches_reference(hits_per_query, ref, doc_ids, allowed):
    for qi, hits in enumerate(hits_per_query):
        scores = ref[qi].astype(np.float64)
        if allowed is not None:
            scores[~allowed] = -np.inf
        order = np.lexsort((np.arange(len(scores)), -scores))
        want = [r for r in order[:K] if np.isfinite(scores[r])]
        assert len(hits) == len(want)
        assert [h.doc_id for h in hits] == [str(doc_ids[r]) for r in want]
        np.testing.assert_allclose([h.score for h in hits], scores[want], rtol=1e-5, atol=1e-5)
        assert all(h.scores == {"dense": h.score} for h in hits)


def test_embeddings_are_the_models_normalized_encodings(searcher, docs):
    model = load_model("all-MiniLM-L6-v2")
    direct = model.encode([d.full_text() for d in docs[:3]], normalize_embeddings=True)
    np.testing.assert_allclose(searcher.embeddings[:3], direct, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(searcher.embeddings, axis=1), 1.0, atol=1e-5)
    assert isinstance(searcher.embeddings, np.memmap)


@pytest.mark.parametrize("path", ["exact-scan", "faiss-selector"])
@pytest.mark.parametrize("mask_name", list(masks(1)))
def test_search_equals_reference_under_masks(
    searcher, queries, reference, monkeypatch, path, mask_name
):
    if path == "faiss-selector":  # force faiss + IDSelectorBitmap even for tiny masks
        changes = {"exact_filter_min_rows": 0, "exact_filter_fraction": 0.0}
    else:
        changes = {"exact_filter_min_rows": N_DOCS}
    monkeypatch.setattr(searcher, "config", searcher.config.with_changes(**changes))
    allowed = masks(N_DOCS)[mask_name]
    assert reference.shape == (len(queries), N_DOCS)
    hits = searcher.search(queries, K, allowed)
    assert_matches_reference(hits, reference, searcher.doc_ids, allowed)


def test_reference_is_an_independent_matmul(searcher, docs, queries):
    model = load_model("all-MiniLM-L6-v2")
    q = model.encode(queries[:2], normalize_embeddings=True)
    d = model.encode([doc.full_text() for doc in docs[:6]], normalize_embeddings=True)
    np.testing.assert_allclose(searcher.reference_scores(queries[:2])[:, :6], q @ d.T, atol=1e-5)


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_indexes_recall_flat(searcher, queries, tmp_path, monkeypatch, index):
    config = DenseConfig(index=index, ivf_nprobe=4)
    write_dense_index(np.asarray(searcher.embeddings), tmp_path, config)
    approx = DenseSearcher.load(tmp_path, config, searcher.doc_ids)
    q = searcher.encode(queries)
    flat_hits = searcher.search_embeddings(q, K)
    approx_hits = approx.search_embeddings(q, K)
    overlap = [
        len({h.doc_id for h in a} & {h.doc_id for h in f}) / K
        for a, f in zip(approx_hits, flat_hits, strict=True)
    ]
    assert np.mean(overlap) >= 0.9, overlap
    # Masks yield min(k, allowed) allowed hits, also through faiss + IDSelector (forced
    # here: on a tiny corpus every mask would otherwise take the exact scan).
    approx.config = approx.config.with_changes(exact_filter_min_rows=0, exact_filter_fraction=0.0)
    row_of = {d: i for i, d in enumerate(searcher.doc_ids.tolist())}
    for name in ("one", "few", "some"):
        allowed = masks(N_DOCS)[name]
        for hits in approx.search_embeddings(q, K, allowed):
            assert len(hits) == min(K, int(allowed.sum()))
            assert all(allowed[row_of[h.doc_id]] for h in hits)


def test_ivf_probing_every_list_is_exact(searcher, queries, tmp_path):
    config = DenseConfig(index="ivf", ivf_nlist=4, ivf_nprobe=4)
    write_dense_index(np.asarray(searcher.embeddings), tmp_path, config)
    ivf = DenseSearcher.load(tmp_path, config, searcher.doc_ids)
    q = searcher.encode(queries)
    assert [[h.doc_id for h in hs] for hs in ivf.search_embeddings(q, K)] == [
        [h.doc_id for h in hs] for hs in searcher.search_embeddings(q, K)
    ]


def test_reload_answers_the_same(store, searcher, queries):
    again = open_version(store).searchers["dense"]
    assert [[h.doc_id for h in hs] for hs in again.search(queries, K)] == [
        [h.doc_id for h in hs] for hs in searcher.search(queries, K)
    ]


def test_k_larger_than_corpus_returns_every_doc(searcher, queries):
    hits = searcher.search(queries[:1], N_DOCS + 50)[0]
    assert len(hits) == N_DOCS
    assert len({h.doc_id for h in hits}) == N_DOCS


def test_bad_input_is_refused(searcher, queries, tmp_path):
    with pytest.raises(ValueError, match="shape"):
        searcher.search(queries[:1], K, np.ones(N_DOCS + 1, bool))
    with pytest.raises(ValueError, match="boolean"):
        searcher.search(queries[:1], K, np.ones(N_DOCS, int))
    with pytest.raises(ValueError, match="k must"):
        searcher.search(queries[:1], 0)
    with pytest.raises(ValueError, match="ivf_nlist"):
        write_dense_index(
            np.ones((3, 4), np.float32), tmp_path, DenseConfig(index="ivf", ivf_nlist=5)
        )
