"""Delta segments: documents upserted since the current version, searchable before the
next full build (issue #14, point 2).

An upsert is durable in the database before its 2xx. ``refresh`` compares the collection
(one snapshot) with the current version by text hash (the version lists its hashes per
encoding space), encodes the new and changed documents through the encoding store (a
document already encoded costs nothing), and writes one delta segment over that version:

```
<collection_dir>/deltas/<id>/   manifest.json (base version, generation, counts)
                                ids.npy          external ids of the delta's rows
                                superseded.npy   base rows whose document changed (masked)
                                dense/embeddings.npy   the rows' vectors, as dense stores
                                encodings/<space>.npy  their text hashes (GC keeps them)
<collection_dir>/DELTA          "<delta id> <base version id>": the live delta
```

The segment is written whole into a hidden folder and renamed into place, then ``DELTA``
is replaced atomically: a kill leaves the previous delta (or none) serving. A delta always
covers every pending document relative to its base (it is rebuilt, not appended: the
encoding store makes re-reading cheap), so there is only ever one. A delta whose base is
no longer current is ignored and removed by the next refresh.

Covered kinds: ``dense`` (the delta's rows are scanned exactly next to the base's index).
Other kinds answer from the base version minus superseded rows until the next build; a
kind follows by writing its own ``<kind>/`` part here and a segment-aware searcher in
``retrieval/live.py`` (bm25: an impact index over the delta's documents with the base's
collection statistics).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from specrag.atomic import atomic_directory, write_json_atomic, write_text_atomic
from specrag.errors import UserError
from specrag.indexing.encodings.gc import STORE_DIR
from specrag.indexing.encodings.session import ensure, text_hashes
from specrag.indexing.encodings.store import EncodingStore
from specrag.indexing.registry import get_kind
from specrag.indexing.versions import VersionStore, new_version_id
from specrag.types import Corpus, Progress, no_progress

DELTA_FILE = "DELTA"
DELTAS_DIR = "deltas"
#: The kinds a delta segment covers.
DELTA_KINDS = ("dense",)


class RefreshError(UserError, ValueError):
    """A refresh that cannot run (no version yet, no covered kind, an old version): the
    API answers 400 with the message."""


def delta_dir(versions: VersionStore, delta_id: str) -> Path:
    return versions.root / DELTAS_DIR / delta_id


def live_delta_id(versions: VersionStore, base: str) -> str | None:
    """The id of the live delta over version ``base`` (one small read: search asks on
    every request), or None."""
    try:
        delta_id, delta_base = (versions.root / DELTA_FILE).read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return delta_id if delta_base == base else None


def current_delta(versions: VersionStore, base: str) -> tuple[str, Path, dict[str, Any]] | None:
    """The live delta over version ``base``: (id, folder, manifest), or None."""
    delta_id = live_delta_id(versions, base)
    if delta_id is None:
        return None
    try:
        path = delta_dir(versions, delta_id)
        manifest = json.loads((path / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return (delta_id, path, manifest) if manifest.get("base") == base else None


def build_delta(
    corpus: Corpus, versions: VersionStore, generation: int = 0, progress: Progress = no_progress
) -> dict[str, Any]:
    """Write the delta of ``corpus`` (a snapshot of the collection) over the current
    version and make it live. Returns its manifest."""
    base = versions.current()
    if base is None:
        raise RefreshError("no index version yet: build one first")
    manifest = versions.manifest(base)
    if "dense" not in manifest["kinds"]:
        raise RefreshError(f"refresh covers {', '.join(DELTA_KINDS)}; the collection has none")
    dense = get_kind("dense")
    config = dense.parse_config(manifest["kinds"]["dense"]["config"])
    (need,) = dense.encodings(config)
    refs = versions.path(base) / STORE_DIR / f"{need.space.key}.npy"
    if not refs.exists():
        raise RefreshError(f"version {base} predates the encoding store: run a full build")
    base_ids = np.load(versions.path(base) / "ids.npy").tolist()
    base_hash = dict(zip(base_ids, np.load(refs).tolist(), strict=True))
    hashes = text_hashes(corpus, need.space)
    pending = [
        doc for doc, h in zip(corpus, hashes.tolist(), strict=True) if base_hash.get(doc.id) != h
    ]
    pending_ids = {doc.id for doc in pending}
    superseded = np.array([r for r, i in enumerate(base_ids) if i in pending_ids], np.int64)
    encodings = EncodingStore(versions.root / STORE_DIR)
    delta_id = new_version_id()
    with encodings.lock(), atomic_directory(delta_dir(versions, delta_id)) as tmp:
        (tmp / "dense").mkdir()
        (tmp / STORE_DIR).mkdir()
        stats = {"encoded": 0, "reused": 0}
        if pending:
            space = encodings.space(need.space)
            encoded = ensure(space, pending, need.fields, need.batch_size, progress, ["dense"])
            emb = encoded.pooled(config.normalize)
            stats = {"encoded": encoded.encoded, "reused": encoded.reused}
            np.save(tmp / STORE_DIR / f"{need.space.key}.npy", encoded.hashes)
        else:
            dim = np.load(versions.path(base) / "dense" / "embeddings.npy", mmap_mode="r").shape[1]
            emb = np.zeros((0, dim), np.float32)
        np.save(tmp / "dense" / "embeddings.npy", emb)
        np.save(tmp / "ids.npy", np.array([doc.id for doc in pending], dtype=str))
        np.save(tmp / "superseded.npy", superseded)
        delta_manifest = {
            "id": delta_id,
            "base": base,
            "generation": generation,
            "n_docs": len(pending),
            "n_superseded": len(superseded),
            "kinds": list(DELTA_KINDS),
            **stats,
        }
        write_json_atomic(tmp / "manifest.json", delta_manifest)
    write_text_atomic(versions.root / DELTA_FILE, f"{delta_id} {base}\n")
    _remove_other_deltas(versions, keep=delta_id)
    return delta_manifest


def _remove_other_deltas(versions: VersionStore, keep: str) -> None:
    """Older deltas are never read again (open files stay readable until closed)."""
    root = versions.root / DELTAS_DIR
    for path in root.iterdir():
        if path.name != keep and not path.name.startswith("."):
            shutil.rmtree(path, ignore_errors=True)
