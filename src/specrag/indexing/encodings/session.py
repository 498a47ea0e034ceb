"""Encodings during a build: encode what the store lacks, once per space, then let every
kind read its outputs from the store.

``VersionStore.build`` asks each kind what it needs (``IndexKind.encodings``), merges the
needs per space (so ``dense``, ``binary`` and ``colbert`` on one model share one forward
pass), encodes only the documents whose text hash the space lacks, and makes the session
active while the builders run. A builder calls :func:`encodings_for`; outside a build
(benchmarks, tests calling a builder directly) that encodes into a temporary store inside
the builder's folder, removed when the builder is done.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.encodings.encode import encode_texts
from specrag.indexing.encodings.spaces import EncodingSpace
from specrag.indexing.encodings.store import HASH_DTYPE, EncodingStore, SpaceStore
from specrag.types import Corpus, Progress, no_progress

#: Documents per stored chunk (and per encode call): fewer when token matrices are kept,
#: so that a chunk's outputs stay around 100 MB in memory before they are written.
CHUNK_DOCS = 4096
CHUNK_DOCS_TOKENS = 512
#: Rows normalized at a time when pooled vectors are copied out.
_COPY_ROWS = 65536


@dataclass(frozen=True)
class EncodingNeed:
    """What one kind reads from one space."""

    space: EncodingSpace
    fields: tuple[str, ...]
    batch_size: int = 64


@dataclass
class Encoded:
    """One corpus's encodings in one space: row i is the corpus's i-th document."""

    store: SpaceStore
    hashes: np.ndarray
    encoded: int = 0
    reused: int = 0
    kinds: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.hashes)

    def pooled(self, normalize: bool, out: np.ndarray | None = None) -> np.ndarray:
        """The pooled vectors (n, dim) float32, L2-normalized when ``normalize``, written
        into ``out`` (e.g. a memory-mapped ``.npy``) when given."""
        if out is None:
            first = next(self.store.get(self.hashes[:1], "pooled"))
            out = np.empty((len(self.hashes), first.shape[1]), np.float32)
        self.store.gather_pooled(self.hashes, out)
        if normalize:
            for start in range(0, len(out), _COPY_ROWS):
                block = np.asarray(out[start : start + _COPY_ROWS], np.float32)
                norms = np.linalg.norm(block, axis=1, keepdims=True)
                out[start : start + len(block)] = block / np.maximum(norms, 1e-12)
        return out

    def rows(self, field_name: str) -> Iterator[np.ndarray]:
        """Each document's stored rows of ``field_name``, in corpus order."""
        return self.store.get(self.hashes, field_name)

    def batches(self, field_name: str, size: int = 256) -> Iterator[list[np.ndarray]]:
        batch: list[np.ndarray] = []
        for rows in self.rows(field_name):
            batch.append(rows)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def text_hashes(corpus: Corpus, space: EncodingSpace) -> np.ndarray:
    return np.array([space.text_hash(doc.full_text()) for doc in corpus], HASH_DTYPE)


def ensure(
    store: SpaceStore,
    corpus: Corpus,
    fields: Sequence[str],
    batch_size: int = 64,
    progress: Progress = no_progress,
    kinds: Sequence[str] = (),
) -> Encoded:
    """Encode the documents of ``corpus`` whose text the space lacks any of ``fields``
    for (each distinct text once, all fields from one forward), store them, and return
    the corpus's view of the space."""
    started = time.perf_counter()
    space = store.space
    hashes = text_hashes(corpus, space)
    missing = ~store.has(hashes, fields)
    wanted = np.unique(hashes[missing])
    n_new = len(wanted)
    label = (
        f"encode {space.model} ({', '.join(kinds) or space.encoder}): "
        f"{n_new} new, {len(hashes) - int(missing.sum())} reused"
    )
    progress(0, n_new, label)
    if n_new:
        per_chunk = CHUNK_DOCS_TOKENS if "tokens" in fields else CHUNK_DOCS
        pending: dict[bytes, str] = {}
        todo = set(wanted.tolist())
        done = 0

        def flush() -> None:
            nonlocal done
            keys = list(pending)
            outputs, extra = encode_texts(
                space,
                list(pending.values()),
                fields,
                batch_size,
                lambda d: progress(done + d, n_new, label),
            )
            store.append(keys, outputs, extra)
            done += len(keys)
            pending.clear()

        for doc, h in zip(corpus, hashes.tolist(), strict=True):
            if h in todo and h not in pending:
                todo.discard(h)
                pending[h] = doc.full_text()
                if len(pending) >= per_chunk:
                    flush()
        if pending:
            flush()
    return Encoded(store, hashes, encoded=n_new, reused=len(hashes) - int(missing.sum()),
                   kinds=list(kinds), seconds=time.perf_counter() - started)  # fmt: skip


class BuildEncodings:
    """The encodings of one build: one corpus, the kinds' needs merged per space."""

    def __init__(self, store: EncodingStore, corpus: Corpus, needs: dict[str, list[EncodingNeed]]):
        self.store = store
        self.corpus = corpus
        self.plan: dict[str, dict[str, Any]] = {}
        for kind, kind_needs in needs.items():
            for need in kind_needs:
                entry = self.plan.setdefault(
                    need.space.key,
                    {"space": need.space, "fields": [], "kinds": [], "batch": need.batch_size},
                )
                entry["fields"] += [f for f in need.fields if f not in entry["fields"]]
                entry["kinds"].append(kind)
        self.encoded: dict[str, Encoded] = {}

    def prepare(self, progress: Progress = no_progress) -> None:
        for key, entry in self.plan.items():
            self.encoded[key] = ensure(
                self.store.space(entry["space"]),
                self.corpus,
                entry["fields"],
                entry["batch"],
                progress,
                entry["kinds"],
            )

    def covers(self, corpus: Corpus, need: EncodingNeed) -> bool:
        entry = self.plan.get(need.space.key)
        return (
            corpus is self.corpus
            and need.space.key in self.encoded
            and entry is not None
            and set(need.fields) <= set(entry["fields"])
        )

    @contextmanager
    def active(self) -> Iterator[BuildEncodings]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def write_references(self, folder: Path) -> None:
        """Which stored encodings the version refers to (row order), per space: what
        garbage collection keeps and what a later build can compare against."""
        if not self.encoded:
            return
        folder.mkdir(exist_ok=True)
        for key, enc in self.encoded.items():
            np.save(folder / f"{key}.npy", enc.hashes)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {
            key: {
                "model": self.plan[key]["space"].model,
                "encoder": self.plan[key]["space"].encoder,
                "kinds": enc.kinds,
                "fields": self.plan[key]["fields"],
                "encoded": enc.encoded,
                "reused": enc.reused,
                "seconds": round(enc.seconds, 3),
            }
            for key, enc in self.encoded.items()
        }


def summary(stats: dict[str, dict[str, Any]]) -> str:
    """One line per build for people: how many documents were encoded and reused, per
    model (``stats``: a manifest's ``encodings``)."""
    return "; ".join(
        f"{s['model']} ({', '.join(s['kinds'])}): encoded {s['encoded']}, reused {s['reused']}"
        for s in stats.values()
    )


_ACTIVE: ContextVar[BuildEncodings | None] = ContextVar("specrag_build_encodings", default=None)


@contextmanager
def encodings_for(
    corpus: Corpus, need: EncodingNeed, out_dir: Path, progress: Progress = no_progress
) -> Iterator[Encoded]:
    """A builder's encodings: the active build's when it planned them, else encoded into
    a temporary store in ``out_dir`` that is removed on exit."""
    session = _ACTIVE.get()
    if session is not None and session.covers(corpus, need):
        yield session.encoded[need.space.key]
        return
    scratch = Path(out_dir) / ".encodings.tmp"
    try:
        space_store = EncodingStore(scratch).space(need.space)
        yield ensure(space_store, corpus, need.fields, need.batch_size, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
