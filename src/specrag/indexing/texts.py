"""Which text each row of a version was built from: one sha256 per row (``texts.npy``,
row order), written by every build path. A refresh compares the collection with it to
find the new and changed documents, whatever the version's kinds (bm25 alone has no
encoder whose stored hashes could serve)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from specrag.indexing.encodings.store import HASH_DTYPE
from specrag.types import Document

TEXTS_FILE = "texts.npy"


def text_hash(doc: Document) -> bytes:
    """sha256 (hex, 64 ASCII bytes) of the text every kind indexes (title and body)."""
    return hashlib.sha256(doc.full_text().encode()).hexdigest().encode()


def write_rows(folder: Path, docs: Iterable[Document]) -> int:
    """A version's rows, in one pass over ``docs``: ``ids.npy`` (external ids) and
    ``texts.npy`` (their text hashes). Returns the number of rows."""
    ids, hashes = [], []
    for doc in docs:
        ids.append(doc.id)
        hashes.append(text_hash(doc))
    np.save(folder / "ids.npy", np.array(ids, dtype=str))
    np.save(folder / TEXTS_FILE, np.array(hashes, HASH_DTYPE))
    return len(ids)


def load_text_hashes(version_dir: Path) -> np.ndarray | None:
    """The version's per-row text hashes, or None for a version built before they were
    written (its encoder spaces' hashes serve instead, where it has any)."""
    path = version_dir / TEXTS_FILE
    return np.load(path) if path.exists() else None
