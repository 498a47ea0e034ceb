"""An opened index version: its external ids and one searcher per kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.kinds.base import Searcher
from specrag.indexing.registry import get_kind
from specrag.indexing.versions import VersionStore


@dataclass
class OpenVersion:
    id: str
    path: Path
    manifest: dict[str, Any]
    doc_ids: np.ndarray  # internal row -> external id (str)
    searchers: dict[str, Searcher] = field(default_factory=dict)
    _row_of: dict[str, int] | None = None

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    def row_of(self, doc_id: str) -> int | None:
        if self._row_of is None:
            self._row_of = {d: i for i, d in enumerate(self.doc_ids.tolist())}
        return self._row_of.get(doc_id)

    def mask_for(self, doc_ids) -> np.ndarray:
        """A DocMask allowing exactly the given external ids (unknown ids ignored)."""
        mask = np.zeros(self.n_docs, dtype=bool)
        for d in doc_ids:
            row = self.row_of(d)
            if row is not None:
                mask[row] = True
        return mask


def open_version(store: VersionStore, version_id: str | None = None) -> OpenVersion:
    """Open ``version_id`` (default: CURRENT) with a searcher for every kind it holds."""
    vid = version_id or store.current()
    if vid is None:
        raise FileNotFoundError(f"no index version has been built under {store.root}")
    path = store.path(vid)
    manifest = store.manifest(vid)
    doc_ids = np.load(path / "ids.npy", allow_pickle=False)
    version = OpenVersion(vid, path, manifest, doc_ids)
    if "shards" in manifest:  # one searcher per kind over every shard (docs/scaling.md)
        from specrag.indexing.shards.search import open_sharded

        version.searchers.update(open_sharded(path, manifest, doc_ids))
        return version
    for name, entry in manifest["kinds"].items():
        kind = get_kind(name)
        version.searchers[name] = kind.searcher.load(
            path / name, kind.parse_config(entry["config"]), doc_ids
        )
    return version
