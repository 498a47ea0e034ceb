"""The encoding store: every encoder output, kept per (space, text hash), on disk in
append-only chunks beside a collection's versions, memory-mapped for reads.

```
<collection_dir>/encodings/LOCK                       flock: builds shared, GC exclusive
<collection_dir>/encodings/<space key>/space.json     the space (model, fingerprint, ...)
<collection_dir>/encodings/<space key>/chunks/<name>/ one append: hashes.npy (S64, n),
        meta.json, and per output field <field>.npy (the rows of all n documents, one
        after the other) and <field>.offsets.npy (int64, n + 1)
```

A chunk is written into a hidden directory, fsynced and renamed into place
(``specrag.atomic.atomic_directory``), so a kill leaves either the whole chunk or nothing
visible; existing chunks are never modified, only deleted whole by garbage collection.
The hash -> (chunk, document) index is rebuilt in memory from the chunks' hash lists
(32 bytes a document, sorted once, looked up with ``searchsorted``); when a hash is in two
chunks (two builds encoded it at once), the newer chunk wins: the contents are equal.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specrag.atomic import atomic_directory, write_json_atomic, write_json_in_tree
from specrag.indexing.encodings.spaces import FIELDS, EncodingSpace

HASH_DTYPE = np.dtype("S64")
#: Storage dtype per field (tokens in float16: the colbert builder keeps fp16 anyway).
FIELD_DTYPES = {
    "pooled": np.float32,
    "tokens": np.float16,
    "terms": np.int32,
    "weights": np.float32,
}


@dataclass
class Chunk:
    """One append: its documents' hashes and, per field, the rows and offsets."""

    name: str
    path: Path
    hashes: np.ndarray
    data: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: Path) -> Chunk:
        meta = json.loads((path / "meta.json").read_text())
        data, offsets = {}, {}
        for field in meta["fields"]:
            data[field] = np.load(path / f"{field}.npy", mmap_mode="r")
            offsets[field] = np.load(path / f"{field}.offsets.npy")
        hashes = np.load(path / "hashes.npy")
        return cls(path.name, path, hashes, data, offsets, meta)

    def rows(self, field: str, i: int) -> np.ndarray:
        off = self.offsets[field]
        return self.data[field][off[i] : off[i + 1]]


class SpaceStore:
    """The stored outputs of one encoding space."""

    def __init__(self, root: Path, space: EncodingSpace):
        self.space = space
        self.root = Path(root)
        self.chunks_dir = self.root / "chunks"
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        if not (self.root / "space.json").exists():
            write_json_atomic(self.root / "space.json", space.describe())
        self._chunks: dict[str, Chunk] = {}
        self._order: list[str] = []
        self._index: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def open_existing(cls, root: Path) -> SpaceStore:
        """A space folder found on disk (garbage collection walks them)."""
        spec = json.loads((Path(root) / "space.json").read_text())
        return cls(root, EncodingSpace(**spec))

    # -- reading -------------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up chunks written since the last look (by this or another process) and
        forget deleted ones."""
        names = sorted(p.name for p in self.chunks_dir.iterdir() if not p.name.startswith("."))
        if names == self._order:
            return
        self._chunks = {n: self._chunks.get(n) or Chunk.open(self.chunks_dir / n) for n in names}
        self._order = names
        self._index = {}

    def _field_index(self, field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sorted unique hashes holding ``field``, with their (chunk number, document)."""
        if field not in self._index:
            keys, chunk_no, doc = [], [], []
            for number, name in enumerate(self._order):
                chunk = self._chunks[name]
                if field in chunk.data:
                    keys.append(chunk.hashes)
                    chunk_no.append(np.full(len(chunk.hashes), number, np.int32))
                    doc.append(np.arange(len(chunk.hashes), dtype=np.int64))
            if not keys:
                empty = np.zeros(0, HASH_DTYPE), np.zeros(0, np.int32), np.zeros(0, np.int64)
                self._index[field] = empty
                return empty
            all_keys = np.concatenate(keys)
            order = np.argsort(all_keys, kind="stable")  # equal keys stay in chunk order
            sorted_keys = all_keys[order]
            last = np.r_[sorted_keys[1:] != sorted_keys[:-1], True]  # the newest copy
            pick = order[last]
            self._index[field] = (
                sorted_keys[last],
                np.concatenate(chunk_no)[pick],
                np.concatenate(doc)[pick],
            )
        return self._index[field]

    def locate(self, hashes: np.ndarray, field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found, chunk number, document in chunk) per hash."""
        self.refresh()
        keys, chunk_no, doc = self._field_index(field)
        hashes = np.asarray(hashes, HASH_DTYPE)
        if len(keys) == 0:
            nothing = np.zeros(len(hashes), np.int64)
            return np.zeros(len(hashes), bool), nothing, nothing
        pos = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
        return keys[pos] == hashes, chunk_no[pos], doc[pos]

    def has(self, hashes: np.ndarray, fields: Sequence[str]) -> np.ndarray:
        """Per hash: every one of ``fields`` is stored."""
        ok = np.ones(len(hashes), bool)
        for field in fields:
            ok &= self.locate(hashes, field)[0]
        return ok

    def get(self, hashes: np.ndarray, field: str) -> Iterator[np.ndarray]:
        """The stored rows of each hash in order (memory-mapped slices); KeyError when
        one is missing."""
        found, chunk_no, doc = self.locate(hashes, field)
        if not found.all():
            missing = np.asarray(hashes)[~found][0]
            raise KeyError(f"no {field!r} stored for text hash {missing.decode()}")
        chunks = [self._chunks[n] for n in self._order]
        for c, d in zip(chunk_no.tolist(), doc.tolist(), strict=True):
            yield chunks[c].rows(field, d)

    def gather_pooled(self, hashes: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (n, dim) with the pooled vectors of ``hashes``, chunk by chunk."""
        found, chunk_no, doc = self.locate(hashes, "pooled")
        if not found.all():
            raise KeyError(f"{int((~found).sum())} documents have no stored pooled vector")
        chunks = [self._chunks[n] for n in self._order]
        for c in np.unique(chunk_no).tolist():
            rows = np.flatnonzero(chunk_no == c)
            chunk = chunks[c]
            out[rows] = chunk.data["pooled"][chunk.offsets["pooled"][doc[rows]]]
        return out

    def chunk_extra(self, key: str) -> list[Any]:
        """A value every chunk recorded in its meta (e.g. the sparse vocabulary size)."""
        self.refresh()
        return [c.meta.get("extra", {}).get(key) for c in self._chunks.values()]

    # -- writing -------------------------------------------------------------------
    def append(
        self,
        hashes: Sequence[bytes],
        outputs: dict[str, list[np.ndarray]],
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Store the outputs of the documents ``hashes`` (``outputs[field][i]`` for the
        i-th) as one new chunk, atomically. Returns the chunk's name."""
        unknown = set(outputs) - set(FIELDS[self.space.encoder])
        if unknown:
            raise ValueError(f"{self.space.encoder} spaces hold no {sorted(unknown)}")
        n = len(hashes)
        if n == 0:
            raise ValueError("nothing to append")
        if any(len(rows) != n for rows in outputs.values()):
            raise ValueError("every field needs one entry per document")
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with atomic_directory(self.chunks_dir / name) as tmp:
            np.save(tmp / "hashes.npy", np.asarray(list(hashes), HASH_DTYPE))
            for field, rows in outputs.items():
                dtype = FIELD_DTYPES[field]
                arrays = [np.asarray(r, dtype) for r in rows]
                if field == "pooled":
                    arrays = [a.reshape(1, -1) for a in arrays]
                lengths = np.array([len(a) for a in arrays], np.int64)
                np.save(tmp / f"{field}.offsets.npy", np.r_[0, np.cumsum(lengths)])
                np.save(tmp / f"{field}.npy", np.concatenate(arrays))
            write_json_in_tree(
                tmp / "meta.json", {"fields": sorted(outputs), "n": n, "extra": extra or {}}
            )
        return name

    def chunk_names(self) -> list[str]:
        self.refresh()
        return list(self._order)

    def chunk(self, name: str) -> Chunk:
        self.refresh()
        return self._chunks[name]

    def remove_chunk(self, name: str) -> None:
        """Delete a chunk (garbage collection, under the store's exclusive lock)."""
        shutil.rmtree(self.chunks_dir / name, ignore_errors=True)
        self._chunks.pop(name, None)
        self._order = [n for n in self._order if n != name]
        self._index = {}


class EncodingStore:
    """All encoding spaces of one collection, under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._spaces: dict[str, SpaceStore] = {}

    def space(self, space: EncodingSpace) -> SpaceStore:
        if space.key not in self._spaces:
            self._spaces[space.key] = SpaceStore(self.root / space.key, space)
        return self._spaces[space.key]

    def space_keys(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and (p / "space.json").exists()
        )

    @contextmanager
    def lock(self, exclusive: bool = False) -> Iterator[None]:
        """Builds hold the lock shared from their first look-up until their version is
        in place; garbage collection holds it exclusive, so it never deletes what a
        running build is about to refer to. (flock: released by the kernel on kill.)"""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)
