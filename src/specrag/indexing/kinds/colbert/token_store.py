"""Compressed token vectors on disk: per-token codes, memory-mapped, with doc offsets.

Every codec here decodes *affinely per dimension*: ``x[:, j] ~ lo[j] + level[:, j] *
scale[j]`` where ``level`` is a small integer (int8: 0..255, 1-bit: 0/1) or, for fp16, the
value itself (lo 0, scale 1). That one shape lets MaxSim fold ``lo`` and ``scale`` into the
query (``q @ x.T = (q * scale) @ level.T + q @ lo``) instead of decoding every token.

- ``fp16``: lossless for our purpose, the reference (2 bytes/dim).
- ``int8``: per-dimension scalar quantization between the fitted min and max (1 byte/dim);
  values outside the fitted range are clipped.
- ``binary``: 1 bit per dimension as in BTR (binary token representations): the bit says
  which side of the per-dimension mean the value lies; it decodes to the mean of the
  fitted values on that side (the least-squares levels for that threshold).

Layout of a store directory::

    store.json     codec name and parameters' shapes, n_tokens, n_docs, dim
    codec.npz      lo, scale (and the binary threshold)
    codes.bin      uint8 (n_tokens, bytes_per_token), raw, memory-mapped when read
    offsets.npy    int64 (n_docs + 1): doc i owns tokens offsets[i]:offsets[i+1]
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from specrag.atomic import write_json_atomic

CODECS = ("fp16", "int8", "binary")


class TokenCodec(ABC):
    """Encodes float32 token vectors to fixed-size uint8 codes and back."""

    name: ClassVar[str]

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.lo = np.zeros(dim, np.float32)
        self.scale = np.ones(dim, np.float32)

    @property
    @abstractmethod
    def bytes_per_token(self) -> int: ...

    def fit(self, sample: np.ndarray) -> TokenCodec:
        """Fit the parameters on a sample of token vectors (n, dim)."""
        self._check(sample)
        return self

    @abstractmethod
    def encode(self, x: np.ndarray) -> np.ndarray:
        """(n, dim) float -> (n, bytes_per_token) uint8."""

    @abstractmethod
    def levels(self, codes: np.ndarray) -> np.ndarray:
        """(n, bytes_per_token) uint8 -> (n, dim) float32 levels (before lo/scale)."""

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.lo + self.levels(codes) * self.scale

    def params(self) -> dict[str, np.ndarray]:
        return {"lo": self.lo, "scale": self.scale}

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        self.lo = np.asarray(params["lo"], np.float32)
        self.scale = np.asarray(params["scale"], np.float32)

    def _check(self, x: np.ndarray) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected token vectors of shape (n, {self.dim}), got {x.shape}")
        if len(x) and not np.isfinite(x).all():
            raise ValueError("token vectors contain NaN or inf")


class Fp16Codec(TokenCodec):
    name = "fp16"

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.dim

    def encode(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return np.ascontiguousarray(x, dtype=np.float16).view(np.uint8).reshape(len(x), -1)

    def levels(self, codes: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(codes).view(np.float16).astype(np.float32)


class Int8Codec(TokenCodec):
    """Per-dimension min-max scalar quantization to 256 levels: error <= scale/2 in range."""

    name = "int8"

    @property
    def bytes_per_token(self) -> int:
        return self.dim

    def fit(self, sample: np.ndarray) -> Int8Codec:
        self._check(sample)
        if len(sample) == 0:
            raise ValueError("cannot fit the int8 codec on an empty sample")
        lo = sample.min(axis=0).astype(np.float32)
        hi = sample.max(axis=0).astype(np.float32)
        self.lo = lo
        self.scale = np.maximum(hi - lo, 1e-8).astype(np.float32) / 255.0
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        q = np.rint((x - self.lo) / self.scale)
        return np.clip(q, 0, 255).astype(np.uint8)

    def levels(self, codes: np.ndarray) -> np.ndarray:
        return codes.astype(np.float32)


class BinaryCodec(TokenCodec):
    """1 bit per dimension: above or below the per-dimension mean; decodes to the mean
    of the fitted values on that side."""

    name = "binary"

    def __init__(self, dim: int):
        super().__init__(dim)
        self.threshold = np.zeros(dim, np.float32)

    @property
    def bytes_per_token(self) -> int:
        return (self.dim + 7) // 8

    def fit(self, sample: np.ndarray) -> BinaryCodec:
        self._check(sample)
        if len(sample) == 0:
            raise ValueError("cannot fit the binary codec on an empty sample")
        x = sample.astype(np.float64)
        t = x.mean(axis=0)
        above = x > t
        n_above = above.sum(axis=0)
        n_below = len(x) - n_above
        mean_above = np.where(n_above > 0, (x * above).sum(0) / np.maximum(n_above, 1), t)
        mean_below = np.where(n_below > 0, (x * ~above).sum(0) / np.maximum(n_below, 1), t)
        self.threshold = t.astype(np.float32)
        self.lo = mean_below.astype(np.float32)
        self.scale = (mean_above - mean_below).astype(np.float32)
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        return np.packbits(x > self.threshold, axis=1)

    def levels(self, codes: np.ndarray) -> np.ndarray:
        return np.unpackbits(codes, axis=1, count=self.dim).astype(np.float32)

    def params(self) -> dict[str, np.ndarray]:
        return {**super().params(), "threshold": self.threshold}

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        super().load_params(params)
        self.threshold = np.asarray(params["threshold"], np.float32)


def make_codec(name: str, dim: int) -> TokenCodec:
    classes = {c.name: c for c in (Fp16Codec, Int8Codec, BinaryCodec)}
    if name not in classes:
        raise ValueError(f"unknown token codec {name!r}; known: {', '.join(CODECS)}")
    return classes[name](dim)


class TokenStoreWriter:
    """Appends documents' token codes to ``codes.bin``; ``close`` writes the offsets and
    metadata (the store is readable only after ``close``, inside a version being built)."""

    def __init__(self, out_dir: Path, codec: TokenCodec):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.codec = codec
        self._file = open(self.dir / "codes.bin", "wb")  # noqa: SIM115 (closed in close())
        self._lengths: list[int] = []
        self._rows = 0

    def append(self, docs_tokens: list[np.ndarray]) -> None:
        """Append whole documents (one (n_i, dim) matrix each)."""
        for tokens in docs_tokens:
            self._lengths.append(len(tokens))
            self.append_rows(tokens)

    def append_rows(self, tokens: np.ndarray) -> None:
        """Append token rows only; the caller passes the doc lengths to ``close``."""
        if len(tokens):
            self._file.write(self.codec.encode(tokens).tobytes())
            self._rows += len(tokens)

    def append_codes(self, codes: np.ndarray) -> None:
        """Append already-encoded rows (n, bytes_per_token) uint8 of this codec, e.g.
        copied from a previous store with the same codec parameters."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] != self.codec.bytes_per_token:
            raise ValueError(
                f"codes of shape {codes.shape}, expected (n, {self.codec.bytes_per_token})"
            )
        if len(codes):
            self._file.write(codes.tobytes())
            self._rows += len(codes)

    def close(self, lengths: np.ndarray | None = None) -> TokenStore:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        lengths = np.asarray(self._lengths if lengths is None else lengths, dtype=np.int64)
        if lengths.sum() != self._rows:
            raise ValueError(f"doc lengths sum to {lengths.sum()}, {self._rows} rows written")
        self._lengths = lengths.tolist()
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        np.save(self.dir / "offsets.npy", offsets)
        np.savez(self.dir / "codec.npz", **self.codec.params())
        write_json_atomic(
            self.dir / "store.json",
            {
                "codec": self.codec.name,
                "dim": self.codec.dim,
                "bytes_per_token": self.codec.bytes_per_token,
                "n_tokens": int(offsets[-1]),
                "n_docs": len(self._lengths),
            },
        )
        return TokenStore.open(self.dir)


class TokenStore:
    """Read side: memory-mapped codes, doc offsets and the codec."""

    def __init__(self, codes: np.ndarray, offsets: np.ndarray, codec: TokenCodec):
        if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != len(codes):
            raise ValueError("token store offsets do not match its codes")
        self.codes = codes
        self.offsets = offsets
        self.codec = codec

    @classmethod
    def open(cls, store_dir: Path) -> TokenStore:
        store_dir = Path(store_dir)
        meta = json.loads((store_dir / "store.json").read_text())
        codec = make_codec(meta["codec"], meta["dim"])
        with np.load(store_dir / "codec.npz") as params:
            codec.load_params(dict(params))
        shape = (meta["n_tokens"], meta["bytes_per_token"])
        if meta["n_tokens"]:
            codes = np.memmap(store_dir / "codes.bin", dtype=np.uint8, mode="r", shape=shape)
        else:
            codes = np.zeros(shape, np.uint8)
        return cls(codes, np.load(store_dir / "offsets.npy"), codec)

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.offsets.nbytes)

    def token_rows(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token row indices of ``docs`` (concatenated, in the given doc order) and the
        offsets of each doc inside that concatenation."""
        docs = np.asarray(docs, dtype=np.int64)
        starts = self.offsets[docs]
        lengths = self.offsets[docs + 1] - starts
        local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = np.repeat(starts - local[:-1], lengths) + np.arange(local[-1], dtype=np.int64)
        return rows, local

    def doc_codes(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, local = self.token_rows(docs)
        return np.asarray(self.codes[rows]), local

    def doc_tokens(self, doc: int) -> np.ndarray:
        """The decoded float32 token vectors of one document (the simple path)."""
        return self.codec.decode(np.asarray(self.codes[self.offsets[doc] : self.offsets[doc + 1]]))
