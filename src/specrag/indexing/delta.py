"""Delta segments: documents upserted since the current version, searchable before the
next full build (issue #14, points 2 and 3).

An upsert is durable in the database before its 2xx. ``refresh`` compares the collection
(one snapshot) with the current version by text hash (``texts.npy``, one per row, written
by every build; versions from before it was written fall back to their encoder spaces'
hashes), encodes the new and changed documents through the encoding store (a
document already encoded costs nothing; one forward per model for all kinds), and writes
one delta segment over that version with a part per covered kind:

```
<collection_dir>/deltas/<id>/   manifest.json (base version, generation, counts, kinds)
                                ids.npy          external ids of the delta's rows
                                superseded.npy   base rows whose document changed (masked)
                                dense/embeddings.npy   the rows' vectors, as dense stores
                                bm25/            a bm25 index, the base's statistics
                                splade/          a splade index, the base's scale
                                binary/          codes + int8 rows, the base's calibration
                                colbert/tokens/  a token store, the base's codec
                                encodings/<space>.npy  their text hashes (GC keeps them)
<collection_dir>/DELTA          "<delta id> <base version id>": the live delta
```

Each part is written by its kind (``kinds/<kind>/delta.py``) with the base's frozen
parameters, so that delta scores are in the base's units and merge by value
(``retrieval/live.py``): bm25 with the base's N, avgdl, df and scale; binary with its
int8 calibration; colbert with its token codec; splade with its scale. A kind outside
``DELTA_KINDS`` (lucene, datastore) and a sharded base's kinds other than dense answer
from the base minus superseded rows until the next build.

The segment is written whole into a hidden folder and renamed into place, then ``DELTA``
is replaced atomically: a kill leaves the previous delta (or none) serving. A delta always
covers every pending document relative to its base (it is rebuilt, not appended: the
encoding store makes re-reading cheap), so there is only ever one. A delta whose base is
no longer current is ignored and removed by the next refresh.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specrag.atomic import atomic_directory, write_json_in_tree, write_text_atomic
from specrag.errors import UserError
from specrag.indexing.encodings.gc import STORE_DIR
from specrag.indexing.encodings.session import (
    BuildEncodings,
    EncodingNeed,
    encodings_for,
)
from specrag.indexing.encodings.store import EncodingStore
from specrag.indexing.kinds.binary.delta import write_binary_delta
from specrag.indexing.kinds.bm25.delta import write_bm25_delta
from specrag.indexing.kinds.colbert.delta import write_colbert_delta
from specrag.indexing.kinds.splade.delta import write_splade_delta
from specrag.indexing.registry import get_kind
from specrag.indexing.texts import TEXTS_FILE, text_hash
from specrag.indexing.versions import VersionStore, new_version_id
from specrag.types import Corpus, Document, Progress, no_progress

DELTA_FILE = "DELTA"
DELTAS_DIR = "deltas"


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


def covered_kinds(manifest: dict[str, Any]) -> list[str]:
    """The kinds of a version a delta segment covers (a sharded version: dense only)."""
    covered = [n for n in DELTA_KINDS if n in manifest.get("kinds", {})]
    if "shards" in manifest:  # sharded kinds keep their files per shard: dense only
        covered = [n for n in covered if n == "dense"]
    return covered


@dataclass(frozen=True)
class _Plan:
    """What a refresh over the current version works with."""

    base: str
    configs: dict[str, Any]  # covered kind -> its parsed config
    needs: dict[str, list[EncodingNeed]]  # covered kind with an encoder -> its spaces
    refs: BaseHashes


def _plan(versions: VersionStore) -> _Plan | str:
    """The refresh plan over the current version, or why there can be none."""
    base = versions.current()
    if base is None:
        return "it has no index yet: build one first"
    manifest = versions.manifest(base)
    covered = covered_kinds(manifest)
    if not covered:
        return f"a refresh covers {', '.join(DELTA_KINDS)}; the current version has none"
    configs = {n: get_kind(n).parse_config(manifest["kinds"][n]["config"]) for n in covered}
    needs = {n: get_kind(n).encodings(c) for n, c in configs.items() if get_kind(n).encodings}
    refs = _base_hashes(versions.path(base), [need for ns in needs.values() for need in ns])
    if refs is None:
        return f"version {base} has no stored text hashes (it predates them): run a full build"
    return _Plan(base, configs, needs, refs)


def unrefreshable(versions: VersionStore) -> str | None:
    """Why no refresh can extend the current version (None: one can): no version yet,
    no kind a delta covers, or a version that recorded no text hashes to find the
    changed documents by."""
    plan = _plan(versions)
    return plan if isinstance(plan, str) else None


def build_delta(
    corpus: Corpus, versions: VersionStore, generation: int = 0, progress: Progress = no_progress
) -> dict[str, Any]:
    """Write the delta of ``corpus`` (a snapshot of the collection) over the current
    version and make it live. Returns its manifest."""
    plan = _plan(versions)
    if isinstance(plan, str):
        raise RefreshError(f"cannot refresh: {plan}")
    base, configs, needs = plan.base, plan.configs, plan.needs
    base_dir = versions.path(base)
    covered = list(configs)
    hash_of, base_hash, base_row = plan.refs
    # One pass over the snapshot (it pages through the database): hash each text and
    # keep the documents whose hash differs from the base's.
    pending = [doc for doc in corpus if base_hash.get(doc.id) != hash_of(doc)]
    superseded = np.array(
        sorted(base_row[doc.id] for doc in pending if doc.id in base_row), np.int64
    )
    previous = current_delta(versions, base)  # a part may copy what it already wrote
    previous_dir = previous[1] if previous is not None else None
    encodings = EncodingStore(versions.root / STORE_DIR)
    delta_id = new_version_id()
    with encodings.lock(), atomic_directory(delta_dir(versions, delta_id)) as tmp:
        stats: dict[str, Any] = {"encoded": 0, "reused": 0}
        parts: dict[str, Any] = {}
        if pending:
            session = BuildEncodings(encodings, pending, needs)
            session.prepare(progress)
            session.write_references(tmp / STORE_DIR)
            stats = {
                "encoded": sum(e.encoded for e in session.encoded.values()),
                "reused": sum(e.reused for e in session.encoded.values()),
            }
            with session.active():
                for name, config in configs.items():
                    out = tmp / name
                    out.mkdir()
                    parts[name] = WRITERS[name](
                        pending, out, base_dir / name, config, progress, previous_dir
                    )
        elif "dense" in covered:  # an empty dense part, as before kinds had parts
            (tmp / "dense").mkdir()
            dim = np.load(base_dir / "dense" / "embeddings.npy", mmap_mode="r").shape[1]
            np.save(tmp / "dense" / "embeddings.npy", np.zeros((0, dim), np.float32))
        np.save(tmp / "ids.npy", np.array([doc.id for doc in pending], dtype=str))
        np.save(tmp / "superseded.npy", superseded)
        delta_manifest = {
            "id": delta_id,
            "base": base,
            "generation": generation,
            "n_docs": len(pending),
            "n_superseded": len(superseded),
            "kinds": covered,
            "parts": parts,
            **stats,
        }
        write_json_in_tree(tmp / "manifest.json", delta_manifest)  # fsynced with the folder
    write_text_atomic(versions.root / DELTA_FILE, f"{delta_id} {base}\n")
    _remove_other_deltas(versions, keep=delta_id)
    return delta_manifest


#: (hash of a document, id -> text hash, id -> row) of a base version.
BaseHashes = tuple[Callable[[Document], bytes], dict[str, bytes], dict[str, int]]
#: (base folder, hash source) -> (id -> text hash, id -> row) of a version: a version's
#: files never change once written, so every refresh over it reuses them (a few kept).
_BASE_CACHE: dict[tuple[str, str], tuple[dict[str, bytes], dict[str, int]]] = {}
_BASE_CACHE_SIZE = 4
_BASE_CACHE_LOCK = threading.Lock()


def _base_hashes(base_dir: Path, needs: list[EncodingNeed]) -> BaseHashes | None:
    """How the base version's rows are compared with the collection: its ``texts.npy``
    (every version written since), else the first encoder space of ``needs`` whose hashes
    it stored; with the base's id -> hash and id -> row maps. None: neither exists."""
    sources: list[tuple[str, Path, Callable[[Document], bytes]]] = [
        (TEXTS_FILE, base_dir / TEXTS_FILE, text_hash)
    ]
    for need in needs:
        space = need.space
        sources.append(
            (
                space.key,
                base_dir / STORE_DIR / f"{space.key}.npy",
                lambda doc, space=space: space.text_hash(doc.full_text()),
            )
        )
    for source, path, hash_of in sources:
        key = (str(base_dir.resolve()), source)
        with _BASE_CACHE_LOCK:
            cached = _BASE_CACHE.get(key)
        if cached is not None and path.exists():
            return hash_of, *cached
        if path.exists():
            base_ids = np.load(base_dir / "ids.npy").tolist()
            hashes = np.load(path).tolist()
            maps = (
                dict(zip(base_ids, hashes, strict=True)),
                {doc_id: row for row, doc_id in enumerate(base_ids)},
            )
            with _BASE_CACHE_LOCK:
                while len(_BASE_CACHE) >= _BASE_CACHE_SIZE:
                    _BASE_CACHE.pop(next(iter(_BASE_CACHE)))
                _BASE_CACHE[key] = maps
            return hash_of, *maps
    return None


# -- the kinds' parts: (pending documents, out folder, the base's kind folder, config,
# progress, the previous delta's folder over the same base or None) -> the part's
# statistics. Encodings come from the refresh's session.


def _pooled(kind: str, docs: list[Document], out: Path, config, progress) -> np.ndarray:
    """The pooled vectors of ``docs`` in ``kind``'s encoding space (from the store)."""
    (need,) = get_kind(kind).encodings(config)
    with encodings_for(docs, need, out, progress) as encoded:
        return encoded.pooled(config.normalize)


def _dense_part(
    docs: list[Document], out: Path, base_dir: Path, config, progress, _previous
) -> dict:
    np.save(out / "embeddings.npy", _pooled("dense", docs, out, config, progress))
    return {"n_docs": len(docs)}


def _bm25_part(
    docs: list[Document], out: Path, base_dir: Path, config, progress, _previous
) -> dict:
    return write_bm25_delta(docs, out, base_dir, config)


def _binary_part(
    docs: list[Document], out: Path, base_dir: Path, config, progress, _previous
) -> dict:
    embeddings = _pooled("binary", docs, out, config, progress)
    return write_binary_delta(embeddings, out, base_dir, config)


def _colbert_part(
    docs: list[Document], out: Path, base_dir: Path, config, progress, previous
) -> dict:
    (need,) = get_kind("colbert").encodings(config)
    with encodings_for(docs, need, out, progress) as encoded:
        return write_colbert_delta(encoded, need.space.key, out, base_dir, previous)


def _splade_part(
    docs: list[Document], out: Path, base_dir: Path, config, progress, _previous
) -> dict:
    return write_splade_delta(docs, out, base_dir, config, progress)


WRITERS = {
    "dense": _dense_part,
    "bm25": _bm25_part,
    "splade": _splade_part,
    "binary": _binary_part,
    "colbert": _colbert_part,
}
#: The kinds a delta segment covers.
DELTA_KINDS = tuple(WRITERS)


def _remove_other_deltas(versions: VersionStore, keep: str) -> None:
    """Older deltas are never read again (open files stay readable until closed)."""
    root = versions.root / DELTAS_DIR
    for path in root.iterdir():
        if path.name != keep and not path.name.startswith("."):
            shutil.rmtree(path, ignore_errors=True)
