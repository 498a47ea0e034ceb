"""Exact top-k on a torch device with the contract's tie rule, without a sort.

Each (score, row) pair becomes one int64 key whose order is (score desc, row asc): the
high 32 bits hold the score's float32 bits made order-preserving as a signed integer (or
minus a Hamming distance), the low 32 bits ``2**32 - 1 - row``. Keys are then distinct,
so ``torch.topk`` on them is deterministic and picks the lower row among equal scores at
the cut-off too -- which ``topk`` on the scores themselves does not promise. A corpus is
scanned in chunks, keeping the best k keys so far, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

LOW = 0xFFFFFFFF
#: 2**32: the high half is placed by multiplying and read back by floor division, which
#: are defined for negative int64 on every device (shifts of negatives need not be).
_HIGH = 1 << 32
#: The key of a row that may not match (masked out); below every real key.
NO_KEY = torch.iinfo(torch.int64).min
_FLIP = 0x7FFFFFFF


def _ordered_bits(scores: torch.Tensor) -> torch.Tensor:
    """float32 -> int32 with the same order (``+ 0.0`` folds -0.0 into 0.0)."""
    bits = (scores.float() + 0.0).view(torch.int32)
    return torch.where(bits < 0, bits ^ _FLIP, bits)


def float_keys(scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Keys ordering by (score desc, row asc); ``rows`` broadcasts against ``scores``."""
    return _ordered_bits(scores).to(torch.int64) * _HIGH + (LOW - rows.to(torch.int64))


def distance_keys(distance: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Keys ordering by (distance asc, row asc) for integer distances."""
    return -distance.to(torch.int64) * _HIGH + (LOW - rows.to(torch.int64))


def key_rows(keys: torch.Tensor) -> torch.Tensor:
    return LOW - (keys & LOW)


def key_scores(keys: torch.Tensor) -> torch.Tensor:
    """The float32 scores that ``float_keys`` encoded."""
    bits = torch.div(keys, _HIGH, rounding_mode="floor").to(torch.int32)
    return torch.where(bits < 0, bits ^ _FLIP, bits).view(torch.float32)


def masked(keys: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """``NO_KEY`` where ``allowed`` (broadcasting) is False."""
    if allowed is None:
        return keys
    return torch.where(allowed, keys, torch.full_like(keys, NO_KEY))


def chunked_top_keys(
    key_chunk: Callable[[int, int], torch.Tensor], n: int, k: int, chunk: int
) -> torch.Tensor:
    """The best ``k`` keys (descending, per query row) over rows ``[0, n)``, computing
    ``key_chunk(start, stop)`` -> (n_queries, stop - start) one chunk at a time."""
    best: torch.Tensor | None = None
    for start in range(0, n, chunk):
        keys = key_chunk(start, min(n, start + chunk))
        top = keys.topk(min(k, keys.shape[1]), dim=1).values
        if best is not None:
            both = torch.cat([best, top], dim=1)
            top = both.topk(min(k, both.shape[1]), dim=1).values
        best = top
    assert best is not None, "chunked_top_keys over an empty range"
    return best


def to_numpy_hits(keys: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows int64, scores float32) per query from float keys, ``NO_KEY`` dropped."""
    keys = keys.cpu()
    valid = (keys != NO_KEY).numpy()
    rows = key_rows(keys).numpy()
    scores = key_scores(keys).numpy()
    return [(rows[i][valid[i]], scores[i][valid[i]]) for i in range(len(keys))]


def chunk_rows(n_queries: int, bytes_per_pair: int, memory_mib: int, floor: int = 256) -> int:
    """Corpus rows per chunk so that a (queries x rows) block of ``bytes_per_pair`` bytes
    per pair stays under ``memory_mib`` (at least ``floor`` rows)."""
    return max(floor, (memory_mib << 20) // max(1, n_queries * bytes_per_pair))
