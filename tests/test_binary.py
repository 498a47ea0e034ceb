"""The ``binary`` kind: with the default config on a small corpus, search equals the
exhaustive int8 rescoring under masks; with a forced Hamming stage, results agree with a
numpy Hamming + rescoring truth; quantization bounds; memory; HNSW/IVF; reload."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.kinds.binary.build import calibrate, dequantize, quantize, write_binary_index
from specrag.indexing.kinds.binary.config import BinaryConfig
from specrag.indexing.kinds.binary.search import BinarySearcher
from specrag.retrieval.version import open_version
from tests.conftest import demo_queries
from tests.dense_fixtures import N_DOCS, dense_and_binary_store

K = 10


@pytest.fixture(scope="module")
def version():
    return open_version(dense_and_binary_store())


@pytest.fixture(scope="module")
def searcher(version) -> BinarySearcher:
    return version.searchers["binary"]


@pytest.fixture(scope="module")
def float_emb(version) -> np.ndarray:
    return np.asarray(version.searchers["dense"].embeddings)


@pytest.fixture(scope="module")
def queries():
    return demo_queries(6)


@pytest.fixture(scope="module")
def query_emb(searcher, queries):
    return searcher.encode(queries)


@pytest.fixture(scope="module")
def reference(searcher, queries):
    return searcher.reference_scores(queries)


def masks(n: int):
    rng = np.random.default_rng(2)
    return {
        "none": np.zeros(n, bool),
        "one": np.eye(1, n, 42, dtype=bool)[0],
        "few": rng.random(n) < 0.03,
        "some": rng.random(n) < 0.5,
        "all": np.ones(n, bool),
        "unmasked": None,
    }


def reference_topk(ref_row: np.ndarray, allowed, k: int = K) -> list[int]:
    scores = ref_row.astype(np.float64).copy()
    if allowed is not None:
        scores[~allowed] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [int(r) for r in order[:k] if np.isfinite(scores[r])]


@pytest.mark.parametrize("mask_name", list(masks(1)))
def test_default_config_is_exact_on_a_small_corpus(searcher, queries, reference, mask_name):
    allowed = masks(N_DOCS)[mask_name]
    ref = reference
    for qi, hits in enumerate(searcher.search(queries, K, allowed)):
        want = reference_topk(ref[qi], allowed)
        assert [h.doc_id for h in hits] == [str(searcher.doc_ids[r]) for r in want]
        np.testing.assert_allclose([h.score for h in hits], ref[qi, want], rtol=1e-5, atol=1e-5)


def test_reference_is_float_query_dot_dequantized_doc(searcher, float_emb, query_emb, queries):
    """Built from the dense kind's embeddings (one encoding), and equal to an independent
    quantization of them."""
    calibration = calibrate(float_emb)
    np.testing.assert_array_equal(searcher.int8, quantize(float_emb, calibration))
    np.testing.assert_array_equal(searcher.codes, np.packbits(float_emb > 0, axis=1))
    ref = searcher.reference_scores(queries)
    np.testing.assert_allclose(
        ref, query_emb @ dequantize(quantize(float_emb, calibration), calibration).T, atol=1e-5
    )
    # int8 rescoring is close to float scoring.
    assert np.abs(ref - query_emb @ float_emb.T).max() < 0.02


def test_quantization_error_is_at_most_half_a_step(float_emb):
    calibration = calibrate(float_emb)
    lo, step = calibration
    assert np.allclose(lo, float_emb.min(axis=0))
    error = np.abs(dequantize(quantize(float_emb, calibration), calibration) - float_emb)
    assert (error <= step / 2 + 1e-6).all()
    constant = np.ones((5, 3), np.float32)
    assert np.array_equal(
        dequantize(quantize(constant, calibrate(constant)), calibrate(constant)), constant
    )


def hamming_truth(searcher, q: np.ndarray, n_cand: int, allowed):
    """Rows certainly inside the n_cand Hamming neighbours (distance < cutoff) and rows
    possibly inside (distance <= cutoff: ties at the cut-off may go either way)."""
    qbits = np.unpackbits(np.packbits(q > 0)[None, :], axis=1)
    dist = (np.unpackbits(np.asarray(searcher.codes), axis=1) != qbits).sum(axis=1).astype(float)
    if allowed is not None:
        dist[~allowed] = np.inf
    cutoff = np.sort(dist)[n_cand - 1]
    return set(np.flatnonzero(dist < cutoff)), set(np.flatnonzero(dist <= cutoff))


@pytest.mark.parametrize("index", ["flat", "ivf"])
@pytest.mark.parametrize("mask_name", ["some", "unmasked"])
def test_hamming_stage_then_rescoring(float_emb, searcher, query_emb, tmp_path, index, mask_name):
    config = BinaryConfig(
        index=index, rescore_factor=2, min_candidates=30, ivf_nlist=4, ivf_nprobe=4
    )
    write_binary_index(float_emb, tmp_path, config)
    small = BinarySearcher.load(tmp_path, config, searcher.doc_ids)
    allowed = masks(N_DOCS)[mask_name]
    n_cand = 30
    ref = query_emb @ dequantize(np.asarray(small.int8), small.calibration).T
    for qi, (rows, scores) in enumerate(small.search_rows(query_emb, K, allowed)):
        certain, possible = hamming_truth(small, query_emb[qi], n_cand, allowed)
        assert len(rows) == K
        assert set(rows.tolist()) <= possible
        np.testing.assert_allclose(scores, ref[qi, rows], rtol=1e-5, atol=1e-5)
        assert all(np.diff(scores) <= 0)
        # Every certain candidate scoring above the k-th hit was returned.
        missed = [r for r in certain if ref[qi, r] > scores[-1] + 1e-5 and r not in set(rows)]
        assert not missed


def test_rescored_binary_recalls_float_search(float_emb, searcher, query_emb, tmp_path):
    config = BinaryConfig(rescore_factor=4, min_candidates=40)
    write_binary_index(float_emb, tmp_path, config)
    small = BinarySearcher.load(tmp_path, config, searcher.doc_ids)
    float_scores = query_emb @ float_emb.T
    overlap = []
    for qi, (rows, _) in enumerate(small.search_rows(query_emb, K)):
        overlap.append(len(set(rows.tolist()) & set(reference_topk(float_scores[qi], None))) / K)
    assert np.mean(overlap) >= 0.8, overlap


def test_hnsw_and_ivf_with_masks_return_k_allowed_hits(float_emb, searcher, query_emb, tmp_path):
    for index in ("hnsw", "ivf"):
        config = BinaryConfig(index=index, min_candidates=20, rescore_factor=1, ivf_nprobe=2)
        (tmp_path / index).mkdir()
        write_binary_index(float_emb, tmp_path / index, config)
        approx = BinarySearcher.load(tmp_path / index, config, searcher.doc_ids)
        for name in ("one", "few", "some"):
            allowed = masks(N_DOCS)[name]
            for rows, _ in approx.search_rows(query_emb, K, allowed):
                assert len(rows) == min(K, int(allowed.sum()))
                assert allowed[rows].all()


def test_memory_per_document_is_under_30_percent_of_float(version):
    stats = version.manifest["kinds"]["binary"]["stats"]
    assert stats["code_bytes_per_doc"] == 384 // 8
    assert stats["rescore_bytes_per_doc"] == 384
    assert stats["memory_ratio_vs_float32"] == pytest.approx((48 + 384) / (4 * 384), abs=1e-4)
    assert not list(dense_and_binary_store().path(version.id).joinpath("binary").glob(".*tmp*"))


def test_reload_answers_the_same(searcher, queries):
    again = open_version(dense_and_binary_store()).searchers["binary"]
    assert [[h.doc_id for h in hs] for hs in again.search(queries, K)] == [
        [h.doc_id for h in hs] for hs in searcher.search(queries, K)
    ]


def test_bad_input_is_refused(searcher, queries, query_emb):
    with pytest.raises(ValueError, match="shape"):
        searcher.search(queries[:1], K, np.ones(N_DOCS - 1, bool))
    with pytest.raises(ValueError, match="shape"):
        searcher.search_rows(query_emb[:, :10], K)
    with pytest.raises(ValueError, match="NaN"):
        calibrate(np.full((2, 4), np.nan, np.float32))
