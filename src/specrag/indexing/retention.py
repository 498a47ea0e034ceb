"""Which version is current, and which old ones may go (docs/storage.md).

**The CURRENT file is the one source of truth** for the version a collection serves: it is
what every searcher opens, it is replaced atomically (rename) on the same file system as
the version folder it names, so it can never name a version whose files are missing, and
it needs no database round trip to read. The database's ``index_versions.status ==
"current"`` is derived from it: written after the file by ``run_build``, and repaired by
:func:`reconcile_current` (at service start) when a crash came between the two; the API
reports the file's value.

Old versions are pruned by :func:`prune_versions`: the current one and the newest
``keep - 1`` others stay; an older one goes only once it has been superseded for
``grace_s`` seconds (a request that opened it just before the swap can finish) and when
no searcher of this process holds it. Temporary folders left by a killed build
(``.tmp-*``, ``.deleted-*``) are removed by :func:`sweep_temporaries` at start, unless
the process that made them is alive.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Collection
from pathlib import Path

from specrag.indexing.encodings.gc import collect_garbage
from specrag.indexing.versions import VersionStore
from specrag.storage.store import DocumentStore, NotFound

log = logging.getLogger(__name__)

#: ``.tmp-<final>-<pid>`` (atomic_directory), ``.<file>.tmp-<pid>`` (write_bytes_atomic),
#: ``.deleted-<folder>-<pid>-<ns>`` (a collection's folder being removed).
_TEMP = re.compile(r"^\.(?:tmp-.*-(?P<a>\d+)|.*\.tmp-(?P<b>\d+)|deleted-.*-(?P<c>\d+)-\d+)$")


def by_age(versions: VersionStore) -> list[str]:
    """Complete versions, oldest first, by when their manifest (the last file a build
    writes) was written: ids sort by creation second only, two builds in one second
    would sort by their random suffix."""

    def written(vid: str) -> tuple[int, str]:
        try:
            return (versions.path(vid).joinpath("manifest.json").stat().st_mtime_ns, vid)
        except OSError:
            return (0, vid)

    return sorted(versions.list(), key=written)


def superseded_at(versions: VersionStore, version_id: str, ids: list[str]) -> float | None:
    """When ``version_id`` stopped being the newest version: when the next one (``ids``:
    oldest first) was written; None for the newest."""
    position = ids.index(version_id)
    if position + 1 >= len(ids):
        return None
    successor = versions.path(ids[position + 1]) / "manifest.json"
    try:
        return successor.stat().st_mtime
    except OSError:
        return None


def prune_versions(
    versions: VersionStore,
    keep: int,
    grace_s: float,
    held: Collection[str] = (),
    now: float | None = None,
) -> list[str]:
    """Remove old versions (see the module docstring) and the stored encodings no
    remaining version refers to; returns the removed ids."""
    now = time.time() if now is None else now
    ids = by_age(versions)
    current = versions.current()
    others = [v for v in ids if v != current]
    kept = set(others[-(keep - 1) :]) if keep > 1 else set()
    removed = []
    for vid in others:
        if vid in kept or vid in held:
            continue
        since = superseded_at(versions, vid, ids)
        if since is None or now - since < grace_s:
            continue
        shutil.rmtree(versions.path(vid), ignore_errors=True)
        removed.append(vid)
    if removed:
        collect_garbage(versions.root)
        log.info("pruned versions %s of %s", ", ".join(removed), versions.root.name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # maybe another service in this process is writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temporaries(collections_dir: Path) -> list[Path]:
    """Remove the temporary files and folders of builds, atomic writes and collection
    deletes whose process is gone (a ``kill -9``), in the collections folder, each
    collection's folder and its ``versions/``, ``encodings/`` and ``deltas/``; returns what
    went."""
    collections_dir = Path(collections_dir)
    if not collections_dir.is_dir():
        return []
    places = [collections_dir]
    for folder in collections_dir.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            places += [folder, folder / "versions", folder / "encodings", folder / "deltas"]
    removed = []
    for place in places:
        if not place.is_dir():
            continue
        for path in place.iterdir():
            m = _TEMP.match(path.name)
            if m is None or _alive(int(m.group("a") or m.group("b") or m.group("c"))):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning("removed %d leftovers of killed builds: %s", len(removed), removed)
    return removed


def reconcile_current(store: DocumentStore, versions: VersionStore, name: str) -> str | None:
    """Make the database agree with the CURRENT file (the truth) for collection ``name``:
    record the file's version when a crash came before its row was written, and mark it
    current. Returns the current version id."""
    current = versions.current()
    if current is None:
        return None
    info = store.get_collection(name)
    if info.current_version == current:
        return current
    try:
        store.set_current_version(name, current)
    except NotFound:  # the row was never written: record it from the manifest
        manifest = versions.manifest(current)
        kinds = {k: v.get("config", {}) for k, v in manifest.get("kinds", {}).items()}
        store.record_version(
            name,
            current,
            kinds,
            int(manifest.get("n_docs", 0)),
            generation=manifest.get("generation"),
            current=True,
        )
    log.warning(
        "collection %r: the database said version %s, CURRENT says %s; the database now "
        "follows CURRENT",
        name,
        info.current_version,
        current,
    )
    return current
