"""An opened index version: its external ids and one searcher per kind, and the DocMasks
of sets of ids over its rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    _arrow_ids: pa.Array | None = None
    _last_rows: np.ndarray | None = None  # rows that are their id's last; None: ids unique

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    def row_of(self, doc_id: str) -> int | None:
        if self._row_of is None:
            self._row_of = {d: i for i, d in enumerate(self.doc_ids.tolist())}
        return self._row_of.get(doc_id)

    def mask_for(self, doc_ids: Sequence[str]) -> np.ndarray:
        """A DocMask allowing exactly the rows of the given external ids (unknown ids
        ignored). An id on several rows (a base row superseded by a delta row) allows only
        its last row, the one ``row_of`` resolves it to.

        Vectorized, as masks are built per request over up to every document: pyarrow's
        hash-based ``is_in`` of the version's ids (an Arrow array made once per version)
        in the given set; no Python loop over ids."""
        ids = self._arrow_ids
        if ids is None:
            ids = pa.array(self.doc_ids.tolist(), pa.string())  # 2x faster than from numpy
            if "delta" in self.manifest:  # only a delta repeats ids (a build's are unique)
                _, first_from_end = np.unique(self.doc_ids[::-1], return_index=True)
                last = np.zeros(len(ids), dtype=bool)
                last[len(ids) - 1 - first_from_end] = True
                self._last_rows = last
            self._arrow_ids = ids
        wanted = pa.array(doc_ids if isinstance(doc_ids, list) else list(doc_ids), pa.string())
        mask = pc.is_in(ids, value_set=wanted).to_numpy(zero_copy_only=False)
        if self._last_rows is not None:
            mask &= self._last_rows
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
