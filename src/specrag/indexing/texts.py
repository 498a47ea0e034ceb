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


def save_text_hashes(folder: Path, docs: Iterable[Document]) -> None:
    np.save(folder / TEXTS_FILE, np.array([text_hash(d) for d in docs], HASH_DTYPE))


def load_text_hashes(version_dir: Path) -> np.ndarray | None:
    """The version's per-row text hashes, or None for a version built before they were
    written (its encoder spaces' hashes serve instead, where it has any)."""
    path = version_dir / TEXTS_FILE
    return np.load(path) if path.exists() else None
