"""Spherical k-means in torch, for the ``colbert`` centroids on a GPU (issue #17, point 1:
faiss's k-means ran 9 s on the CPU of the H200 machine, where faiss-gpu cannot be
installed). The same code runs on the CPU (tests compare its objective with faiss's);
faiss stays the CPU default.

Lloyd iterations on the unit sphere, as ``faiss.Kmeans(spherical=True)``: assign each
point to the centroid of highest inner product, move each centroid to the normalized sum
of its points. Initial centroids: k-means++ over a subsample (random initial points, as
faiss takes, left 16% more inertia than faiss on clustered data with 64 centroids; its
splitting of large clusters makes up for that, k-means++ does it up front). An empty
cluster takes the point farthest from its centroid, so no centroid is wasted.
"""

from __future__ import annotations

import numpy as np
import torch

#: Points assigned per matrix product (bounds the (points x centroids) score block).
ASSIGN_CHUNK = 16384
#: k-means++ draws its seeds from this many points per centroid (a random subsample).
PLUSPLUS_POINTS = 32


def assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest centroid, its inner product) of every point, chunk by chunk."""
    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    sims = torch.empty(len(x), dtype=torch.float32, device=x.device)
    for lo in range(0, len(x), ASSIGN_CHUNK):
        best = (x[lo : lo + ASSIGN_CHUNK] @ centroids.T).max(dim=1)
        sims[lo : lo + ASSIGN_CHUNK], labels[lo : lo + ASSIGN_CHUNK] = best.values, best.indices
    return labels, sims


def plusplus(x: torch.Tensor, k: int, seed: int, oversample: int = PLUSPLUS_POINTS) -> torch.Tensor:
    """k-means++ seeds (each next seed drawn with probability proportional to its squared
    distance ``2 - 2 x.c`` to the nearest seed so far) from ``oversample * k`` random
    points of ``x``."""
    rng = np.random.default_rng(seed)
    pool = x[
        torch.from_numpy(rng.choice(len(x), size=min(len(x), oversample * k), replace=False)).to(
            x.device
        )
    ]
    generator = torch.Generator(device=x.device).manual_seed(seed)
    seeds = torch.empty((k, x.shape[1]), dtype=x.dtype, device=x.device)
    seeds[0] = pool[int(rng.integers(len(pool)))]
    nearest = pool @ seeds[0]
    for i in range(1, k):
        weight = (1.0 - nearest).clamp_(min=0)
        if float(weight.sum()) <= 0:  # every pool point is a seed already: any will do
            weight = torch.ones_like(weight)
        seeds[i] = pool[torch.multinomial(weight, 1, generator=generator)[0]]
        nearest = torch.maximum(nearest, pool @ seeds[i])
    return seeds


def spherical_kmeans(
    points: np.ndarray, n_centroids: int, iters: int, seed: int = 0, device: str = "cpu"
) -> np.ndarray:
    """float32 (n_centroids, dim) unit centroids of ``points`` (n, dim)."""
    n, dim = points.shape
    if not 1 <= n_centroids <= n:
        raise ValueError(f"n_centroids={n_centroids} must be in [1, {n}]")
    x = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(device)
    x = torch.nn.functional.normalize(x, dim=1)
    with torch.inference_mode():
        centroids = plusplus(x, n_centroids, seed)
        for _ in range(iters):
            labels, sims = assign(x, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=n_centroids)
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):  # re-seed with the worst-fitting points
                worst = torch.topk(-sims, len(empty)).indices
                sums[empty] = x[worst]
            centroids = torch.nn.functional.normalize(sums, dim=1)
    return centroids.cpu().numpy().astype(np.float32)
