"""Search a sharded version: one searcher per shard and kind, scattered and merged.

:class:`ShardedSearcher` satisfies the ``Searcher`` contract over the collection's rows,
so the pipeline (fusion, stages, cut-offs) runs unchanged on a sharded version. A search
splits the ``allowed`` mask by shard (``mask[rows]``), asks every shard that has an
allowed document for its own top ``min(k, shard size)`` (in threads: the numba kernels
and faiss release the GIL), and merges by (score desc, collection row asc). Each shard's
list is already ordered that way (a shard's rows are increasing collection rows), and the
global top ``k`` is among the union of the shards' top ``k``, so the merge returns what an
unsharded search returns, ties included -- provided the shards score as the unsharded
index does: exactly for ``bm25`` (collection-wide statistics, ``bm25.py``), up to float
rounding for ``dense`` (each shard encodes its documents in other batches).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.kinds.base import Searcher
from specrag.indexing.kinds.topk import check_k, check_mask
from specrag.indexing.registry import KINDS, get_kind
from specrag.indexing.shards.build import ROWS_FILE, SHARDS_DIR, shard_dir
from specrag.types import DocMask, Hit

_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=min(32, os.cpu_count() or 1), thread_name_prefix="specrag-shard"
        )
    return _pool


class ShardedSearcher:
    """One kind over every shard of a version, searched as one index."""

    def __init__(
        self,
        kind: str,
        config: Any,
        shards: list[tuple[Searcher | None, np.ndarray]],
        doc_ids: np.ndarray,
        parallel: bool = True,
    ):
        self.kind = kind
        self.config = config
        #: (searcher or None for an empty shard, collection rows of its documents)
        self.shards = shards
        self.doc_ids = doc_ids
        self.parallel = parallel
        n = sum(len(rows) for _, rows in shards)
        if n != len(doc_ids):
            raise ValueError(f"shards hold {n} documents, the version {len(doc_ids)}")
        self._row_of: dict[str, int] | None = None

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def load(cls, index_dir: Path, config: Any, doc_ids: np.ndarray) -> ShardedSearcher:
        """Open the kind whose config ``config`` is, over the shards of the version folder
        ``index_dir``."""
        names = [name for name, kind in KINDS.items() if type(config) is kind.config]
        if len(names) != 1:
            raise ValueError(f"no single kind has the config type {type(config).__name__}")
        manifest = _read_manifest(Path(index_dir))
        return open_sharded_kind(Path(index_dir), manifest, names[0], config, doc_ids)

    # -- search --------------------------------------------------------------------------

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        check_k(k)
        mask = check_mask(allowed, self.n_docs)
        jobs = []
        for searcher, rows in self.shards:
            if searcher is None or len(rows) == 0:
                continue
            sub = None if mask is None else mask[rows]
            if sub is not None and not sub.any():
                continue
            jobs.append((searcher, min(k, len(rows)), sub))
        if not jobs:
            return [[] for _ in queries]
        first = jobs[0][0]
        if hasattr(first, "encode") and hasattr(first, "search_embeddings"):
            # Vector kinds: encode the queries once, not once per shard.
            encoded = first.encode(queries)

            def one(searcher, kk, sub):
                return searcher.search_embeddings(encoded, kk, sub)
        else:

            def one(searcher, kk, sub):
                return searcher.search(queries, kk, sub)

        if self.parallel and len(jobs) > 1:
            futures = [_threads().submit(one, *job) for job in jobs]
            lists = [f.result() for f in futures]
        else:
            lists = [one(*job) for job in jobs]
        return [self._merge([hits[q] for hits in lists], k) for q in range(len(queries))]

    def _merge(self, lists: list[list[Hit]], k: int) -> list[Hit]:
        row_of = self.row_of
        merged = [(-h.score, row_of(h.doc_id), h) for hits in lists for h in hits]
        merged.sort(key=lambda item: (item[0], item[1]))
        return [h for _, _, h in merged[:k]]

    def row_of(self, doc_id: str) -> int:
        if self._row_of is None:
            self._row_of = {d: i for i, d in enumerate(self.doc_ids.tolist())}
        return self._row_of[doc_id]

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        """Every shard's reference scores, placed at the collection's rows."""
        out = np.full((len(queries), self.n_docs), -np.inf)
        for searcher, rows in self.shards:
            if searcher is not None and len(rows):
                out[:, rows] = searcher.reference_scores(queries)
        return out


def _read_manifest(version_dir: Path) -> dict[str, Any]:
    import json

    return json.loads((version_dir / "manifest.json").read_text())


def open_sharded_kind(
    version_dir: Path, manifest: dict[str, Any], name: str, config: Any, doc_ids: np.ndarray
) -> ShardedSearcher:
    kind = get_kind(name)
    shards = []
    for s in range(int(manifest["shards"]["count"])):
        folder = shard_dir(version_dir, s)
        rows = np.load(folder / ROWS_FILE, allow_pickle=False)
        ids = np.load(folder / "ids.npy", allow_pickle=False)
        if len(ids) != len(rows) or not np.array_equal(doc_ids[rows], ids):
            raise ValueError(f"{folder}: its ids are not the version's rows {ROWS_FILE} names")
        searcher = kind.searcher.load(folder / name, config, ids) if len(ids) else None
        shards.append((searcher, rows))
    return ShardedSearcher(name, config, shards, doc_ids)


def open_sharded(
    version_dir: Path, manifest: dict[str, Any], doc_ids: np.ndarray
) -> dict[str, ShardedSearcher]:
    """A ShardedSearcher for every kind of a sharded version (``retrieval/version.py``)."""
    if not (Path(version_dir) / SHARDS_DIR).is_dir():
        raise FileNotFoundError(f"{version_dir}: a sharded manifest but no {SHARDS_DIR}/ folder")
    out = {}
    for name, entry in manifest["kinds"].items():
        config = get_kind(name).parse_config(entry["config"])
        out[name] = open_sharded_kind(Path(version_dir), manifest, name, config, doc_ids)
    return out
