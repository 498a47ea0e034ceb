"""Garbage collection of the encoding store: delete what no version refers to.

Each version lists the text hashes it was built from per space
(``versions/<id>/encodings/<space key>.npy``). Collection holds the store's lock
exclusively, so no build is between its look-ups and its version's rename. A space no
version refers to is deleted whole; a chunk with no referenced document is deleted; a
chunk whose referenced share is under ``min_live_fraction`` is rewritten with only those
documents (a new chunk, written atomically, before the old one is deleted: a kill in
between leaves a duplicate, which the index resolves and the next collection removes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from specrag.indexing.encodings.store import HASH_DTYPE, EncodingStore, SpaceStore

STORE_DIR = "encodings"


def referenced_hashes(*folders: Path) -> dict[str, np.ndarray]:
    """Space key -> sorted unique hashes referred to by any complete version (or delta
    segment) in ``folders``."""
    refs: dict[str, list[np.ndarray]] = {}
    for parent in folders:
        if not parent.exists():
            continue
        for version in parent.iterdir():
            folder = version / STORE_DIR
            if version.name.startswith(".") or not folder.is_dir():
                continue
            for path in folder.glob("*.npy"):
                refs.setdefault(path.stem, []).append(np.load(path))
    return {key: np.unique(np.concatenate(parts)) for key, parts in refs.items()}


def collect_garbage(collection_dir: Path, min_live_fraction: float = 0.5) -> dict[str, int]:
    """Delete stored encodings that no version of the collection refers to. Returns
    counts: spaces and chunks removed, chunks rewritten, documents dropped."""
    collection_dir = Path(collection_dir)
    store = EncodingStore(collection_dir / STORE_DIR)
    stats = {"spaces_removed": 0, "chunks_removed": 0, "chunks_rewritten": 0, "docs_dropped": 0}
    if not store.root.exists():
        return stats
    with store.lock(exclusive=True):
        refs = referenced_hashes(collection_dir / "versions", collection_dir / "deltas")
        for key in store.space_keys():
            space_dir = store.root / key
            if key not in refs:
                shutil.rmtree(space_dir, ignore_errors=True)
                stats["spaces_removed"] += 1
                continue
            _collect_space(SpaceStore.open_existing(space_dir), refs[key], min_live_fraction, stats)
    return stats


def _collect_space(
    space: SpaceStore, refs: np.ndarray, min_live_fraction: float, stats: dict[str, int]
) -> None:
    for leftover in space.chunks_dir.glob(".tmp-*"):  # a killed writer's chunk
        shutil.rmtree(leftover, ignore_errors=True)
    kept = np.zeros(0, HASH_DTYPE)
    for name in reversed(space.chunk_names()):  # newest first: it is the copy in use
        chunk = space.chunk(name)
        live = np.isin(chunk.hashes, refs) & ~np.isin(chunk.hashes, kept)
        n_live = int(live.sum())
        if n_live == len(chunk.hashes) or (n_live and n_live >= min_live_fraction * len(live)):
            kept = np.union1d(kept, chunk.hashes[live])
            continue
        if n_live:
            rows = np.flatnonzero(live)
            outputs = {
                f: [np.asarray(chunk.rows(f, int(i))) for i in rows] for f in chunk.meta["fields"]
            }
            if "pooled" in outputs:
                outputs["pooled"] = [r[0] for r in outputs["pooled"]]
            space.append(chunk.hashes[rows].tolist(), outputs, chunk.meta.get("extra"))
            kept = np.union1d(kept, chunk.hashes[rows])
            stats["chunks_rewritten"] += 1
        else:
            stats["chunks_removed"] += 1
        stats["docs_dropped"] += len(chunk.hashes) - n_live
        space.remove_chunk(name)
