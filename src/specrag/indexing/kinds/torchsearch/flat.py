"""Exact inner-product search over float vectors held on a torch device."""

from __future__ import annotations

import numpy as np
import torch

from specrag.indexing.kinds.torchsearch.keys import (
    chunk_rows,
    chunked_top_keys,
    float_keys,
    masked,
    to_numpy_hits,
)

#: Queries scored together; a larger batch is split (the score block grows with it).
QUERY_BATCH = 1024
#: Bytes per (query, row) pair in a chunk: the score, its key, temporaries.
PAIR_BYTES = 32
_UPLOAD_ROWS = 65536


def upload(array: np.ndarray, device: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A (possibly memory-mapped) matrix copied to ``device`` chunk by chunk, so the host
    never holds a second full copy."""
    dtype = dtype or torch.from_numpy(np.zeros(0, array.dtype)).dtype
    out = torch.empty(array.shape, dtype=dtype, device=device)
    for start in range(0, len(array), _UPLOAD_ROWS):
        # A copy: a read-only memory map cannot back a tensor.
        part = torch.from_numpy(np.array(array[start : start + _UPLOAD_ROWS]))
        out[start : start + len(part)] = part.to(device=device, dtype=out.dtype)
    return out


class TorchFlat:
    """Exact top-k by inner product, the ``allowed`` mask applied inside the scan."""

    def __init__(self, vectors: np.ndarray, device: str, memory_mib: int = 256):
        self.device = device
        self.memory_mib = memory_mib
        self.vectors = upload(vectors, device, torch.float32)

    @property
    def n(self) -> int:
        return self.vectors.shape[0]

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, scores) per query, best first (higher score, then lower row); at most
        ``k`` hits, only allowed rows."""
        mask = None if allowed is None else torch.tensor(allowed, device=self.device)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for lo in range(0, len(queries), QUERY_BATCH):
            q = torch.from_numpy(np.ascontiguousarray(queries[lo : lo + QUERY_BATCH]))
            out += to_numpy_hits(self._top_keys(q.to(self.device, torch.float32), k, mask))
        return out

    def _top_keys(self, q: torch.Tensor, k: int, mask: torch.Tensor | None) -> torch.Tensor:
        def keys(start: int, stop: int) -> torch.Tensor:
            scores = q @ self.vectors[start:stop].T
            rows = torch.arange(start, stop, device=self.device)
            return masked(float_keys(scores, rows), None if mask is None else mask[start:stop])

        with torch.inference_mode():
            chunk = chunk_rows(len(q), PAIR_BYTES, self.memory_mib)
            return chunked_top_keys(keys, self.n, k, chunk)
