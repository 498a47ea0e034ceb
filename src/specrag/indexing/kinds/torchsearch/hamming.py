"""Exact Hamming distances between packed sign codes on a torch device, two ways:

- few queries: XOR of 64-bit words and a SWAR popcount (a handful of integer operations
  per (query, document, word); nothing is unpacked);
- many queries: one matrix product of +-1 vectors, ``hamming(a, b) = (n_bits - a . b) / 2``,
  the corpus chunk unpacked once for the whole batch, so each pair costs a multiply-add on
  the BLAS / tensor units. The sums are small integers: exact in float32 (and under TF32
  or bf16 products, whose +-1 inputs are exact too).

Measured with the CPU rehearsal of scripts/gpu_check.sh (20k codes of 384 bits, one
thread): popcount 21 QPS at batch 256, the product 212; at batch 1 the product (unpacking
the corpus per query) fell to 7 QPS, hence the switch at ``MATMUL_MIN_QUERIES``.
"""

from __future__ import annotations

import numpy as np
import torch

#: From this many queries on, distances come from the +-1 matrix product.
MATMUL_MIN_QUERIES = 16
_M1, _M2, _M4 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F
_LOW63 = 0x7FFFFFFFFFFFFFFF
#: np.packbits order: the first dimension is the byte's highest bit.
_SHIFTS = (7, 6, 5, 4, 3, 2, 1, 0)


def pack_words(codes: np.ndarray) -> np.ndarray:
    """uint8 codes (n, n_bytes) -> int64 words (n, ceil(n_bytes / 8)), zero padded (zero
    bytes on both sides add no distance)."""
    n, n_bytes = codes.shape
    padded = np.zeros((n, -(-n_bytes // 8) * 8), np.uint8)
    padded[:, :n_bytes] = codes
    return padded.view(np.int64)


def popcount64(x: torch.Tensor) -> torch.Tensor:
    """Set bits of each int64 (SWAR). The sign bit is counted apart, so every step works
    on non-negative values: no signed overflow, no shift of a negative number."""
    sign = (x < 0).to(torch.int64)
    x = x & _LOW63
    x = x - ((x >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4  # one count per byte, each <= 8
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)
    return (x & 0x7F) + sign


def unpack_signs(codes: torch.Tensor) -> torch.Tensor:
    """Packed uint8 codes (n, n_bytes) -> +-1 float32 (n, 8 * n_bytes)."""
    shifts = torch.tensor(_SHIFTS, dtype=torch.uint8, device=codes.device)
    bits = (codes.unsqueeze(2) >> shifts) & 1
    return bits.reshape(len(codes), -1).float() * 2.0 - 1.0


def distances(query_words: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """(n_queries, n_docs) int64 Hamming distances between two sets of packed words."""
    if len(query_words) < MATMUL_MIN_QUERIES:
        return popcount64(query_words[:, None, :] ^ words[None, :, :]).sum(dim=2)
    q = unpack_signs(query_words.view(torch.uint8))
    dot = q @ unpack_signs(words.view(torch.uint8)).T
    return ((q.shape[1] - dot) * 0.5).round().to(torch.int64)


def bytes_per_row(n_queries: int, n_words: int) -> int:
    """Scratch bytes per corpus row of one ``distances`` call (for chunk sizing)."""
    if n_queries < MATMUL_MIN_QUERIES:
        return n_queries * n_words * 8 * 4 + n_queries * 32
    return 2 * 4 * 64 * n_words + n_queries * 32
