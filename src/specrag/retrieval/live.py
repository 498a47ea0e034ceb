"""A version with its live delta segment (``indexing/delta.py``): one searchable view.

Rows are the base version's rows followed by the delta's rows. Base rows whose document
changed are *superseded*: never allowed, whatever the mask says (they also drop out of
the service's tombstone mask, since ``row_of`` resolves a repeated id to its delta row).

- ``dense``: the base's own search (flat, HNSW or IVF, with its mask) merged with an exact
  scan of the delta's rows, by the contract's order (higher score, then lower row). Over a
  flat base this is exactly what a full build over the same documents returns.
- every other kind: the base's search, with the superseded rows masked out; the delta's
  documents reach them at the next full build.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specrag.indexing.delta import current_delta, live_delta_id
from specrag.indexing.kinds.base import Searcher
from specrag.indexing.kinds.dense.search import EmbeddingSearcher
from specrag.indexing.kinds.topk import check_k, check_mask, top_k
from specrag.indexing.versions import VersionStore
from specrag.retrieval.version import OpenVersion
from specrag.types import DocMask, Hit


def live_id(versions: VersionStore, base: str) -> str:
    """The id of what search serves over ``base``: ``base`` or ``base+delta``."""
    delta_id = live_delta_id(versions, base)
    return base if delta_id is None else f"{base}+{delta_id}"


def with_delta(versions: VersionStore, base: OpenVersion) -> OpenVersion:
    """``base`` joined with its live delta segment (``base`` itself when there is none)."""
    delta = current_delta(versions, base.id)
    if delta is None:
        return base
    delta_id, path, manifest = delta
    delta_ids = np.load(path / "ids.npy")
    n_base = base.n_docs
    valid = np.ones(n_base + len(delta_ids), bool)
    valid[np.load(path / "superseded.npy")] = False
    valid.setflags(write=False)
    doc_ids = np.concatenate([base.doc_ids.astype(str), delta_ids.astype(str)])
    searchers: dict[str, Searcher] = {}
    for name, searcher in base.searchers.items():
        if name == "dense":
            emb = np.load(path / "dense" / "embeddings.npy", mmap_mode="r")
            searchers[name] = SegmentedDenseSearcher(searcher, emb, doc_ids, valid)
        else:
            searchers[name] = BaseRowsSearcher(searcher, doc_ids, valid)
    live_manifest = {**base.manifest, "delta": manifest}
    return OpenVersion(f"{base.id}+{delta_id}", base.path, live_manifest, doc_ids, searchers)


def _mask(valid: np.ndarray, allowed: DocMask | None) -> np.ndarray:
    mask = check_mask(allowed, len(valid))
    return valid if mask is None else mask & valid


class SegmentedDenseSearcher(EmbeddingSearcher):
    """The base ``dense`` searcher plus an exact scan of the delta's vectors."""

    kind = "dense"

    def __init__(self, base, delta_emb: np.ndarray, doc_ids: np.ndarray, valid: np.ndarray):
        self.base = base
        self.config = base.config
        self.delta_emb = delta_emb
        self.doc_ids = doc_ids
        self.valid = valid
        self.n_base = base.n_docs

    def search_rows(
        self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        check_k(k)
        mask = _mask(self.valid, allowed)
        base_mask = mask[: self.n_base]
        delta_rows = np.flatnonzero(mask[self.n_base :])
        if base_mask.any():
            base = self.base.search_rows(query_emb, k, base_mask)
        else:
            base = [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in query_emb]
        delta_scores = (
            np.asarray(query_emb, np.float32) @ np.asarray(self.delta_emb[delta_rows], np.float32).T
        )
        results = []
        for qi, (b_rows, b_scores) in enumerate(base):
            d_rows, d_scores = top_k(delta_scores[qi], k, delta_rows + self.n_base)
            rows = np.concatenate([np.asarray(b_rows, np.int64), d_rows.astype(np.int64)])
            scores = np.concatenate([np.asarray(b_scores, np.float32), d_scores])
            order = np.lexsort((rows, -scores))[:k]
            results.append((rows[order], scores[order]))
        return results

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        q = self.encode(queries)
        scores = np.concatenate(
            [q @ np.asarray(self.base.embeddings).T, q @ np.asarray(self.delta_emb).T], axis=1
        )
        scores[:, ~self.valid] = -np.inf
        return scores


class BaseRowsSearcher:
    """A kind the delta does not cover: the base's search over its still-valid rows."""

    def __init__(self, base: Any, doc_ids: np.ndarray, valid: np.ndarray):
        self.base = base
        self.kind = base.kind
        self.config = base.config
        self.doc_ids = doc_ids
        self.valid = valid
        self.n_base = len(base.doc_ids)

    def __getattr__(self, name: str) -> Any:  # encoders, stores: what stages reach for
        return getattr(self.base, name)

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        mask = _mask(self.valid, allowed)[: self.n_base]
        if not mask.any():
            return [[] for _ in queries]
        return self.base.search(queries, k, mask)

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        scores = np.full((len(queries), len(self.valid)), -np.inf)
        scores[:, : self.n_base] = self.base.reference_scores(queries)
        scores[:, ~self.valid] = -np.inf
        return scores
