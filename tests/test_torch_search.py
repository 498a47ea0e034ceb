"""The torch search engine (``indexing/kinds/torchsearch``) against independent truths:
numpy exhaustive top-k with the tie rule, faiss's answers, and Hamming distances from
``np.unpackbits``. Runs on cpu here and in CI, and on cuda where there is one (the same
code: the device is a parameter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specrag.indexing.kinds.binary.build import binarize, calibrate, quantize
from specrag.indexing.kinds.binary.config import BinaryConfig
from specrag.indexing.kinds.binary.search import BinarySearcher
from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.indexing.kinds.dense.search import DenseSearcher
from specrag.indexing.kinds.torchsearch import device as device_mod
from specrag.indexing.kinds.torchsearch import hamming
from specrag.indexing.kinds.torchsearch.binary import TorchBinary
from specrag.indexing.kinds.torchsearch.device import Backend, resolve_backend
from specrag.indexing.kinds.torchsearch.flat import TorchFlat
from specrag.indexing.kinds.torchsearch.hamming import pack_words, popcount64, unpack_signs
from specrag.indexing.kinds.torchsearch.keys import float_keys, key_rows, key_scores

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
    ),
]
N, DIM, K = 3000, 48, 10


def truth(scores: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Exhaustive top-k per query: (score desc, row asc), only allowed rows."""
    out = []
    for row in scores.astype(np.float64):
        rows = np.arange(len(row)) if allowed is None else np.flatnonzero(allowed)
        order = np.lexsort((rows, -row[rows]))[:k]
        out.append((rows[order], row[rows][order]))
    return out


def masks(n: int):
    rng = np.random.default_rng(3)
    return [None, rng.random(n) < 0.3, rng.random(n) < 0.003, np.eye(1, n, 5, dtype=bool)[0]]


@pytest.fixture(scope="module")
def tied():
    """Vectors of -1/0/1 entries: integer scores, computed exactly, with many ties."""
    rng = np.random.default_rng(0)
    docs = rng.integers(-1, 2, size=(N, DIM)).astype(np.float32)
    queries = rng.integers(-1, 2, size=(64, DIM)).astype(np.float32)
    return docs, queries


@pytest.fixture(scope="module")
def continuous():
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((N, DIM)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = rng.standard_normal((40, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return docs, queries


@pytest.mark.parametrize("device", DEVICES)
def test_keys_round_trip_and_order(device):
    scores = torch.tensor([[1.5, -0.0, 0.0, -2.25, float("-inf"), 1.5, 3e-39]], device=device)
    rows = torch.arange(7, device=device)
    keys = float_keys(scores, rows)
    assert key_rows(keys)[0].tolist() == list(range(7))
    assert key_scores(keys).tolist() == (scores + 0.0).tolist()
    order = keys.argsort(dim=1, descending=True)[0].tolist()
    want = np.lexsort((np.arange(7), -(scores.cpu().numpy()[0] + 0.0))).tolist()
    assert order == want


@pytest.mark.parametrize("device", DEVICES)
def test_flat_ties_follow_the_contract(tied, device):
    docs, queries = tied
    # memory_mib=1 splits 3000 rows into chunks of 512: the merge across chunks is tested.
    engine = TorchFlat(docs, device, memory_mib=1)
    for allowed in masks(N):
        got = engine.search(queries, K, allowed)
        for (rows, scores), (want_rows, want_scores) in zip(
            got, truth(queries @ docs.T, K, allowed), strict=True
        ):
            assert rows.tolist() == want_rows.tolist()
            assert scores.tolist() == want_scores.tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_flat_equals_faiss(continuous, device):
    import faiss

    docs, queries = continuous
    index = faiss.IndexFlatIP(DIM)
    index.add(docs)
    want_scores, want_rows = index.search(queries, K)
    for qi, (rows, scores) in enumerate(TorchFlat(docs, device, memory_mib=1).search(queries, K)):
        assert rows.tolist() == want_rows[qi].tolist()
        np.testing.assert_allclose(scores, want_scores[qi], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_popcount_matches_numpy(device):
    rng = np.random.default_rng(2)
    words = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, 1000, dtype=np.int64)
    words[:3] = [-1, 0, np.iinfo(np.int64).min]
    want = np.unpackbits(words.view(np.uint8)).reshape(-1, 64).sum(axis=1)
    assert popcount64(torch.from_numpy(words).to(device)).tolist() == want.tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_unpacked_signs_are_the_sign_bits(device):
    x = np.random.default_rng(2).standard_normal((50, 20)).astype(np.float32)
    signs = unpack_signs(torch.from_numpy(binarize(x)).to(device)).cpu().numpy()
    assert signs.shape == (50, 24)  # 20 dimensions, padded to 3 bytes
    np.testing.assert_array_equal(signs[:, :20], np.where(x > 0, 1.0, -1.0))
    np.testing.assert_array_equal(signs[:, 20:], -1.0)  # zero padding on both sides


def _binary_parts(docs: np.ndarray):
    calibration = calibrate(docs)
    return binarize(docs), quantize(docs, calibration), calibration


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("switch", [1, 10**6], ids=["matmul", "popcount"])
def test_hamming_candidates_are_the_nearest_lowest_rows(continuous, device, switch, monkeypatch):
    monkeypatch.setattr(hamming, "MATMUL_MIN_QUERIES", switch)
    docs, queries = continuous
    codes, int8, calibration = _binary_parts(docs)
    engine = TorchBinary(codes, int8, calibration, device, memory_mib=1)
    q_codes = torch.from_numpy(pack_words(binarize(queries))).to(device)
    q_bits = np.unpackbits(binarize(queries), axis=1)
    d_bits = np.unpackbits(codes, axis=1)
    distance = (q_bits[:, None, :] != d_bits[None, :, :]).sum(axis=2)
    for allowed in masks(N):
        mask = None if allowed is None else torch.from_numpy(allowed).to(device)
        got = engine.hamming_candidates(q_codes, 50, mask).cpu().numpy()
        for (rows, _), cand in zip(truth(-distance, 50, allowed), got, strict=True):
            assert cand[cand >= 0].tolist() == rows.tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("min_candidates", [40, 10**6])  # Hamming stage, rescore-all
def test_binary_torch_equals_faiss_path(continuous, device, min_candidates):
    docs, queries = continuous
    codes, int8, calibration = _binary_parts(docs)
    ids = np.array([f"d{i}" for i in range(N)])

    def searcher(backend: str) -> BinarySearcher:
        cfg = BinaryConfig(
            backend=backend,
            device="cpu" if backend == "faiss" else device,
            min_candidates=min_candidates,
            torch_memory_mib=1,
        )
        return BinarySearcher(codes, int8, calibration, None, cfg, ids)

    faiss_side, torch_side = searcher("faiss"), searcher("torch")
    assert torch_side.backend == Backend("torch", device)
    for allowed in masks(N):
        want = faiss_side.search_rows(queries, K, allowed)
        got = torch_side.search_rows(queries, K, allowed)
        for (rows, scores), (want_rows, want_scores) in zip(got, want, strict=True):
            assert rows.tolist() == want_rows.tolist()
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_dense_torch_equals_faiss_path(continuous, device):
    docs, queries = continuous
    ids = np.array([f"d{i}" for i in range(N)])
    faiss_side = DenseSearcher(docs, None, DenseConfig(backend="faiss", device="cpu"), ids)
    torch_side = DenseSearcher(docs, None, DenseConfig(backend="torch", device=device), ids)
    assert faiss_side.backend == Backend("faiss", "cpu")
    assert torch_side.backend == Backend("torch", device) and torch_side.index is None
    for allowed in masks(N):
        want = faiss_side.search_rows(queries, K, allowed)
        got = torch_side.search_rows(queries, K, allowed)
        for (rows, scores), (want_rows, want_scores) in zip(got, want, strict=True):
            assert rows.tolist() == want_rows.tolist()
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("cuda", "faiss_gpu", "backend", "device", "index", "want"),
    [
        (False, False, "auto", "auto", "flat", Backend("faiss", "cpu")),
        (True, False, "auto", "auto", "flat", Backend("torch", "cuda")),
        (True, True, "auto", "auto", "flat", Backend("faiss-gpu", "cuda")),
        (True, True, "auto", "auto", "hnsw", Backend("faiss", "cpu")),
        (True, False, "auto", "auto", "ivf", Backend("faiss", "cpu")),
        (True, False, "auto", "cpu", "flat", Backend("faiss", "cpu")),
        (False, False, "torch", "auto", "flat", Backend("torch", "cpu")),
        (True, True, "torch", "auto", "flat", Backend("torch", "cuda")),
        (True, True, "faiss", "cpu", "flat", Backend("faiss", "cpu")),
    ],
)
def test_auto_resolution(monkeypatch, cuda, faiss_gpu, backend, device, index, want):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: cuda)
    monkeypatch.setattr(device_mod, "faiss_gpu_available", lambda: faiss_gpu)
    assert resolve_backend(backend, device, index) == want


def test_impossible_requests_are_refused(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    monkeypatch.setattr(device_mod, "faiss_gpu_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA"):
        resolve_backend("torch", "cuda")
    with pytest.raises(ValueError, match="index='flat'"):
        DenseConfig(backend="torch", index="hnsw")
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    with pytest.raises(RuntimeError, match="faiss-gpu"):
        resolve_backend("faiss", "cuda")
    # binary has no faiss-gpu path: auto on a GPU machine goes to torch.
    monkeypatch.setattr(device_mod, "faiss_gpu_available", lambda: True)
    assert resolve_backend("auto", "auto", faiss_gpu=False) == Backend("torch", "cuda")
