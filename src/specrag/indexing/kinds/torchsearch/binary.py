"""The ``binary`` kind's search on a torch device: Hamming candidates over the sign bits
(``hamming.py``), rescored as ``q . dequantize(int8 row)``.

Candidates are the ``n_cand`` allowed rows nearest in Hamming distance, ties by lower
row; the final top-k is over their rescoring scores with the contract's tie rule. With
``n_cand`` >= the allowed rows every allowed row is rescored (exact).
"""

from __future__ import annotations

import numpy as np
import torch

from specrag.indexing.kinds.torchsearch.flat import PAIR_BYTES, QUERY_BATCH, upload
from specrag.indexing.kinds.torchsearch.hamming import bytes_per_row, distances, pack_words
from specrag.indexing.kinds.torchsearch.keys import (
    NO_KEY,
    chunk_rows,
    chunked_top_keys,
    distance_keys,
    float_keys,
    key_rows,
    masked,
    to_numpy_hits,
)


class TorchBinary:
    def __init__(
        self,
        codes: np.ndarray,
        int8: np.ndarray,
        calibration: np.ndarray,
        device: str,
        memory_mib: int = 256,
    ):
        self.device = device
        self.memory_mib = memory_mib
        self.words = torch.from_numpy(pack_words(np.asarray(codes))).to(device)
        self.int8 = upload(int8, device)
        self.lo, self.step = (torch.from_numpy(np.asarray(c)).to(device) for c in calibration)

    @property
    def n(self) -> int:
        return self.words.shape[0]

    def search(
        self,
        queries: np.ndarray,
        query_codes: np.ndarray,
        k: int,
        n_cand: int,
        allowed: np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, scores) per query, best first; ``n_cand`` Hamming candidates each
        (every allowed row when ``n_cand`` >= their number)."""
        mask = None if allowed is None else torch.tensor(allowed, device=self.device)
        n_allowed = self.n if allowed is None else int(allowed.sum())
        out: list[tuple[np.ndarray, np.ndarray]] = []
        with torch.inference_mode():
            for lo in range(0, len(queries), QUERY_BATCH):
                q = torch.from_numpy(np.ascontiguousarray(queries[lo : lo + QUERY_BATCH]))
                q = q.to(self.device, torch.float32)
                if n_cand >= n_allowed:
                    keys = self._rescore_all(q, k, mask)
                else:
                    qc = torch.from_numpy(pack_words(query_codes[lo : lo + QUERY_BATCH]))
                    rows = self.hamming_candidates(qc.to(self.device), n_cand, mask)
                    keys = self._rescore_candidates(q, rows, k)
                out += to_numpy_hits(keys)
        return out

    def _weights(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q . dequantize(c) = c . (q * step) + (q . lo + 128 * sum(q * step))``."""
        weighted = q * self.step
        return weighted, q @ self.lo + 128.0 * weighted.sum(dim=1)

    def _rescore_all(self, q: torch.Tensor, k: int, mask: torch.Tensor | None) -> torch.Tensor:
        weighted, offset = self._weights(q)

        def keys(start: int, stop: int) -> torch.Tensor:
            scores = weighted @ self.int8[start:stop].float().T + offset[:, None]
            rows = torch.arange(start, stop, device=self.device)
            return masked(float_keys(scores, rows), None if mask is None else mask[start:stop])

        chunk = chunk_rows(len(q), PAIR_BYTES, self.memory_mib)
        return chunked_top_keys(keys, self.n, k, chunk)

    def hamming_candidates(
        self, query_words: torch.Tensor, n_cand: int, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(n_queries, n_cand) rows nearest in Hamming distance to the packed
        ``query_words`` (ties: lower row); -1 where fewer allowed rows exist."""

        def keys(start: int, stop: int) -> torch.Tensor:
            distance = distances(query_words, self.words[start:stop])
            rows = torch.arange(start, stop, device=self.device)
            return masked(distance_keys(distance, rows), None if mask is None else mask[start:stop])

        per_row = bytes_per_row(len(query_words), self.words.shape[1])
        chunk = chunk_rows(1, per_row, self.memory_mib)
        top = chunked_top_keys(keys, self.n, n_cand, chunk)
        return torch.where(top == NO_KEY, -1, key_rows(top))

    def _rescore_candidates(self, q: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
        weighted, offset = self._weights(q)
        valid = rows >= 0
        safe = rows.clamp(min=0)
        # One query block of candidate vectors at a time keeps (queries, n_cand, dim) bounded.
        per_query = rows.shape[1] * self.int8.shape[1] * 4
        step = max(1, (self.memory_mib << 20) // max(1, per_query))
        out = []
        for lo in range(0, len(q), step):
            vecs = self.int8[safe[lo : lo + step]].float()  # (b, n_cand, dim)
            scores = torch.einsum("bcd,bd->bc", vecs, weighted[lo : lo + step])
            scores = scores + offset[lo : lo + step, None]
            keys = masked(float_keys(scores, safe[lo : lo + step]), valid[lo : lo + step])
            out.append(keys.topk(min(k, keys.shape[1]), dim=1).values)
        return torch.cat(out)
