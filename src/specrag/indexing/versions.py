"""Immutable index versions on disk, switched in atomically.

```
<collection_dir>/versions/<id>/   manifest.json  ids.npy  texts.npy  <kind>/...  encodings/<space>.npy
<collection_dir>/CURRENT          the live version id
<collection_dir>/encodings/       the encoding store (indexing/encodings/)
```
A build first encodes what the encoding store lacks (once per encoder space, for all the
kinds), then writes into a hidden temporary directory, fsyncs it, renames it into
``versions/`` and only then replaces ``CURRENT``. A crash (even ``kill -9``) at any point
leaves the previous version serving and no partial version visible.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from specrag.atomic import atomic_directory, write_json_atomic, write_text_atomic
from specrag.indexing.encodings.gc import STORE_DIR
from specrag.indexing.encodings.session import BuildEncodings
from specrag.indexing.encodings.store import EncodingStore
from specrag.indexing.kinds.base import KindConfig
from specrag.indexing.kinds.selfcheck import SelfCheckError, failed_checks
from specrag.indexing.previous import building_over
from specrag.indexing.registry import KindsSpec, get_kind, parse_kinds
from specrag.indexing.texts import write_rows
from specrag.types import Corpus, Progress, no_progress

MANIFEST_FORMAT = 1


def new_version_id() -> str:
    """Sortable by creation time, unique across processes."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def new_manifest(version_id: str, n_docs: int, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The head of a version's manifest, before its kinds are built (every builder: local,
    sharded, Ray)."""
    return {
        "format": MANIFEST_FORMAT,
        "version": version_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_docs": n_docs,
        "kinds": {},
        **(extra or {}),
    }


def plan_encodings(
    store: EncodingStore, corpus: Corpus, kinds: dict[str, KindConfig]
) -> BuildEncodings:
    """The encodings a build of ``kinds`` over ``corpus`` reads from ``store``, merged per
    space (every builder that encodes: local, and each shard of a sharded build)."""
    return BuildEncodings(
        store,
        corpus,
        {
            name: get_kind(name).encodings(cfg)
            for name, cfg in kinds.items()
            if get_kind(name).encodings is not None
        },
    )


class VersionStore:
    """The versions of one collection."""

    def __init__(self, collection_dir: Path):
        self.root = Path(collection_dir)
        self.versions_dir = self.root / "versions"

    def current(self) -> str | None:
        try:
            vid = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return vid or None

    def path(self, version_id: str) -> Path:
        return self.versions_dir / version_id

    def list(self) -> list[str]:
        """Complete versions only; temporary build directories are never listed."""
        if not self.versions_dir.exists():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def manifest(self, version_id: str) -> dict[str, Any]:
        return json.loads((self.path(version_id) / "manifest.json").read_text())

    def build(
        self,
        corpus: Corpus,
        kinds: KindsSpec,
        progress: Progress = no_progress,
        *,
        activate: bool = True,
        extra_manifest: dict[str, Any] | None = None,
        full: bool = False,
    ) -> str:
        """Build every kind over ``corpus`` into a new version and (by default) make it
        current. Returns the version id. Kinds may reuse parts of the current version
        (colbert: its codebook when few documents changed) unless ``full``."""
        parsed: dict[str, KindConfig] = parse_kinds(kinds)
        version_id = new_version_id()
        started = time.time()
        encodings = EncodingStore(self.root / STORE_DIR)
        # Held shared until the version is renamed into place: GC never removes what
        # this build is about to refer to.
        with encodings.lock(), atomic_directory(self.path(version_id)) as tmp:
            n_docs = write_rows(tmp, corpus)
            if n_docs == 0:
                raise ValueError("cannot build an index over an empty collection")
            session = plan_encodings(encodings, corpus, parsed)
            session.prepare(progress)
            manifest = new_manifest(version_id, n_docs, extra_manifest)
            manifest["encodings"] = session.stats()
            previous = None if full else self.current()
            previous_dir = self.path(previous) if previous else None
            with session.active(), building_over(previous_dir):
                for position, (name, cfg) in enumerate(parsed.items(), start=1):
                    kind_started = time.time()
                    out = tmp / name
                    out.mkdir()
                    label = f"{name} ({position}/{len(parsed)})"
                    stats = get_kind(name).build(corpus, out, cfg, _labelled(progress, label))
                    manifest["kinds"][name] = {
                        "config": cfg.model_dump(),
                        "stats": stats or {},
                        "build_seconds": round(time.time() - kind_started, 3),
                    }
            session.write_references(tmp / STORE_DIR)
            manifest["build_seconds"] = round(time.time() - started, 3)
            write_json_atomic(tmp / "manifest.json", manifest)
        if activate:
            self.activate(version_id)
        return version_id

    def activate(self, version_id: str, *, force: bool = False) -> None:
        """Make ``version_id`` current. Refused (SelfCheckError) when one of its kinds
        failed the build's recall self-check, unless ``force``; the version stays on
        disk and listed."""
        if not (self.path(version_id) / "manifest.json").exists():
            raise ValueError(f"version {version_id!r} does not exist")
        failed = failed_checks(self.manifest(version_id))
        if failed and not force:
            raise SelfCheckError(
                f"version {version_id} was built but not activated: "
                + "; ".join(failed)
                + ". Raise the search knobs (ivf_nprobe, hnsw_ef_search, nprobe, candidates), "
                "use an exact index, or lower self_check_floor."
            )
        write_text_atomic(self.root / "CURRENT", version_id + "\n")


def _labelled(progress: Progress, label: str) -> Progress:
    """Prefix a builder's stage names with its kind, so a multi-kind build's progress
    says which kind is running."""

    def report(done: int, total: int, stage: str, unit: str = "doc") -> None:
        progress(done, total, stage if stage.startswith(label) else f"{label}: {stage}", unit)

    return report
