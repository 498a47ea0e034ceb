"""Builds at encoder speed (issue #17, point 1), on the CPU through the same code as on
cuda: encoder precision (``dtype``), and the torch spherical k-means for the colbert
centroids against faiss's (the objective, not the exact centroids, is what must match)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from specrag.indexing.encoders.models import load_model
from specrag.indexing.encoders.precision import encode_precision, model_device
from specrag.indexing.encoders.tokens import TokenEncoder
from specrag.indexing.encodings.spaces import bi_encoder_space
from specrag.indexing.kinds.colbert import build as colbert_build
from specrag.indexing.kinds.colbert.build import (
    build_token_index,
    kmeans_engine,
    nearest_centroid,
)
from specrag.indexing.kinds.colbert.config import ColbertConfig
from specrag.indexing.kinds.colbert.kmeans import assign, spherical_kmeans
from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.indexing.kinds.torchsearch import device as device_mod
from specrag.indexing.versions import VersionStore
from tests.conftest import demo_documents

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
    ),
]


def clustered(n: int = 6000, dim: int = 32, clusters: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def objective(x: np.ndarray, centroids: np.ndarray) -> float:
    """Mean inner product of each point with its nearest centroid (higher is better;
    ``2 - 2 x`` is the squared-distance inertia on the unit sphere)."""
    return float((x @ centroids.T).max(axis=1).mean())


@pytest.mark.parametrize("device", DEVICES)
def test_torch_kmeans_matches_faiss_quality(device):
    import faiss

    x = clustered()
    for k in (16, 64, 256):
        km = faiss.Kmeans(x.shape[1], k, niter=8, spherical=True, seed=0, verbose=False)
        km.train(x)
        ours = spherical_kmeans(x, k, iters=8, seed=0, device=device)
        assert ours.shape == (k, x.shape[1]) and ours.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        theirs = objective(x, km.centroids)
        # Inertia (2 - 2 * objective) within 3% of faiss's, either side.
        assert abs((2 - 2 * objective(x, ours)) - (2 - 2 * theirs)) <= 0.03 * (2 - 2 * theirs)


def test_torch_kmeans_refills_empty_clusters():
    base = clustered(n=40, clusters=8)
    x = np.repeat(base, 5, axis=0)  # duplicates: identical initial centroids collide
    centroids = spherical_kmeans(x, 40, iters=5, seed=1)
    assert np.isfinite(centroids).all()
    labels, _ = assign(torch.from_numpy(x), torch.from_numpy(centroids))
    assert len(np.unique(labels.numpy())) == 40  # every centroid holds a point


def test_kmeans_engine_choice(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    assert kmeans_engine("auto") == ("faiss", "cpu")
    assert kmeans_engine("torch") == ("torch", "cpu")
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    assert kmeans_engine("auto") == ("torch", "cuda")
    assert kmeans_engine("faiss") == ("faiss", "cpu")


def test_colbert_index_with_torch_centroids(tmp_path):
    rng = np.random.default_rng(0)
    docs = [clustered(n=int(rng.integers(5, 40)), seed=i) for i in range(300)]
    config = ColbertConfig(kmeans_backend="torch", n_centroids=64, exhaustive_max_docs=0)
    stats = build_token_index([docs[:150], docs[150:]], tmp_path, config)
    assert stats["kmeans"] == "torch/cpu" and stats["n_centroids"] == 64
    assert stats["self_check"]["passed"], stats["self_check"]


@pytest.mark.parametrize("device", DEVICES)
def test_token_assignment_on_torch_breaks_ties_like_faiss(device):
    rng = np.random.default_rng(1)
    c = clustered(n=12, dim=16, seed=1)
    c = np.concatenate([c, c, c])[rng.permutation(36)]  # each centroid three times
    x = np.concatenate([c, clustered(n=500, dim=16, seed=2), c])  # exact ties, and not
    sims = x @ c.T
    lowest_best = np.array([np.flatnonzero(row == row.max())[0] for row in sims])
    for n in (7, len(x)):  # faiss: the sequential and the BLAS paths
        by_faiss = nearest_centroid(c, "faiss", "cpu")(x[:n])
        by_torch = nearest_centroid(c, "torch", device)(x[:n])
        assert by_torch.tolist() == by_faiss.tolist() == lowest_best[:n].tolist()


def test_colbert_compression_on_torch_equals_faiss(tmp_path, monkeypatch):
    """Same centroids (faiss k-means), the token assignment forced onto the torch path
    (the one cuda takes): identical ``token_centroids`` and inverted lists."""
    rng = np.random.default_rng(0)
    docs = [clustered(n=int(rng.integers(5, 40)), seed=i) for i in range(120)]
    config = ColbertConfig(kmeans_backend="faiss", n_centroids=48, exhaustive_max_docs=0)
    (tmp_path / "faiss").mkdir()
    (tmp_path / "torch").mkdir()
    build_token_index([docs], tmp_path / "faiss", config)
    used: list[str] = []

    def torch_path(centroids, engine, device):
        used.append(engine)
        return nearest_centroid(centroids, "torch", "cpu")

    monkeypatch.setattr(colbert_build, "nearest_centroid", torch_path)
    build_token_index([docs], tmp_path / "torch", config)
    assert used == ["faiss"]  # the build asked for faiss; the torch path ran instead
    for name in ("centroids", "token_centroids", "ivf_offsets", "ivf_docs"):
        a, b = (
            np.load(tmp_path / "faiss" / f"{name}.npy"),
            np.load(tmp_path / "torch" / f"{name}.npy"),
        )
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [d.full_text() for d in demo_documents(12)]


def test_bfloat16_encoding_stays_close_to_float32(texts):
    model = load_model("all-MiniLM-L6-v2")
    full = model.encode(texts, normalize_embeddings=True)
    with encode_precision(model_device(model), "bfloat16"):
        half = model.encode(texts, normalize_embeddings=True)
    assert half.dtype == np.float32
    cos = (full * half).sum(axis=1)
    assert cos.min() >= 0.99, cos
    assert not np.array_equal(full, half)  # autocast really ran


def test_bfloat16_token_encoder_stays_close(texts):
    full = TokenEncoder("all-MiniLM-L6-v2").encode_documents(texts[:4])
    half = TokenEncoder("all-MiniLM-L6-v2", dtype="bfloat16").encode_documents(texts[:4])
    for a, b in zip(full, half, strict=True):
        assert a.shape == b.shape and b.dtype == np.float32
        assert (a * b).sum(axis=1).min() >= 0.98


def test_float16_on_the_cpu_is_refused(tmp_path, texts):
    if torch.cuda.is_available():
        pytest.skip("the refusal is for a CPU-only machine")
    with pytest.raises(ValueError, match="float16.*needs a cuda device"):
        VersionStore(tmp_path).build(demo_documents(3), {"dense": {"dtype": "float16"}})


def test_dtype_is_part_of_the_encoding_space():
    """bf16 encodings are stored apart from float32 ones; a float32 space keeps the key it
    had before spaces had a dtype (existing encoding stores stay valid)."""
    full = bi_encoder_space("all-MiniLM-L6-v2")
    half = bi_encoder_space("all-MiniLM-L6-v2", dtype="bfloat16")
    assert full.dtype == "float32" and half.key != full.key
    legacy = {k: v for k, v in asdict(full).items() if k not in ("model", "dtype")}
    assert full.key == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:24]
    assert DenseConfig(dtype="bfloat16").dtype == "bfloat16"
