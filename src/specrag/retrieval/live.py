"""A version with its live delta segment (``indexing/delta.py``): one searchable view.

Rows are the base version's rows followed by the delta's rows. Base rows whose document
changed are *superseded*: never allowed, whatever the mask says (they also drop out of
the service's tombstone mask, since ``row_of`` resolves a repeated id to its delta row).
Each covered kind searches the base (its own index, with its mask, superseded rows off)
and the delta's part (its allowed rows), and merges the two by the contract's order
(higher score, then lower row; a base row is always lower than a delta row):

- ``dense``: the base's search (flat, HNSW or IVF) and an exact scan of the delta's
  vectors. Over a flat base this is exactly what a full build over the same documents
  returns.
- ``bm25``: the kind's own searcher over the delta's impact index, whose weights use the
  base's statistics and scale (``kinds/bm25/delta.py``): scores in the same units.
- ``splade``: the same, over the delta's splade index (the base's scale and term ids).
- ``binary``: the kind's own searcher over the delta's codes and int8 rows (quantized with
  the base's calibration, ``kinds/binary/delta.py``): exact up to ``min_candidates``
  allowed delta rows.
- ``colbert``: exact MaxSim over the delta's allowed documents (their token store is coded
  with the base's codec, ``kinds/colbert/delta.py``).
- every other kind (lucene, datastore; and a kind whose delta part is missing): the base's search with the
  superseded rows masked out; the delta's documents reach it at the next full build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.delta import current_delta, live_delta_id
from specrag.indexing.kinds.base import Searcher
from specrag.indexing.kinds.binary.delta import open_binary_delta
from specrag.indexing.kinds.colbert.build import open_token_store
from specrag.indexing.kinds.colbert.maxsim import maxsim_store
from specrag.indexing.kinds.colbert.search import reference_maxsim
from specrag.indexing.kinds.dense.search import EmbeddingSearcher
from specrag.indexing.kinds.topk import check_k, check_mask, top_k
from specrag.indexing.versions import VersionStore
from specrag.retrieval.version import OpenVersion
from specrag.types import DocMask, Hit

Rows = tuple[np.ndarray, np.ndarray]


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
        part = path / name
        opener = SEGMENTED.get(name)
        if opener is not None and name in manifest.get("kinds", ()) and part.is_dir():
            searchers[name] = opener(searcher, part, doc_ids, valid)
        else:
            searchers[name] = BaseRowsSearcher(searcher, doc_ids, valid)
    live_manifest = {**base.manifest, "delta": manifest}
    return OpenVersion(f"{base.id}+{delta_id}", base.path, live_manifest, doc_ids, searchers)


def merge(parts: list[Rows], k: int) -> Rows:
    """The best ``k`` of several (rows, scores) lists by (higher score, lower row); rows
    that cannot match (score -inf) are dropped."""
    rows = np.concatenate([np.asarray(r, np.int64) for r, _ in parts])
    scores = np.concatenate([np.asarray(s) for _, s in parts])
    finite = np.isfinite(scores)
    rows, scores = rows[finite], scores[finite]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


def _mask(valid: np.ndarray, allowed: DocMask | None) -> np.ndarray:
    mask = check_mask(allowed, len(valid))
    return valid if mask is None else mask & valid


def _no_rows(n: int) -> list[Rows]:
    return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in range(n)]


class _Segmented:
    """What every view over base + delta shares: ids, validity, the base's attributes
    (encoders, stores: what stages reach for)."""

    def __init__(self, base: Any, doc_ids: np.ndarray, valid: np.ndarray):
        self.base = base
        self.kind = base.kind
        self.config = base.config
        self.doc_ids = doc_ids
        self.valid = valid
        self.n_base = len(base.doc_ids)
        self._id_list: list[str] | None = None

    @property
    def n_docs(self) -> int:
        """Rows of the view: base and delta."""
        return len(self.doc_ids)

    def __getattr__(self, name: str) -> Any:
        # Never a search entry point: the base's would search the base's rows only, with a
        # mask over the view's rows. A view answers only the searches it defines, so
        # ``hasattr(view, "search_weighted")`` tells the truth.
        if name == "base" or name.startswith("search"):  # "base": not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.base, name)

    def masks(self, allowed: DocMask | None) -> tuple[np.ndarray, np.ndarray]:
        """The allowed base rows (a mask over the base) and delta rows (a mask over the
        delta), superseded base rows off."""
        mask = _mask(self.valid, allowed)
        return mask[: self.n_base], mask[self.n_base :]

    def hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        if self._id_list is None:  # str per row once: numpy indexing per hit is slow
            self._id_list = [str(d) for d in self.doc_ids.tolist()]
        ids, kind = self._id_list, self.kind
        return [
            Hit(ids[r], s, {kind: s}) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
        ]

    def joined(self, base_scores: np.ndarray, delta_scores: np.ndarray) -> np.ndarray:
        """Reference scores over base + delta rows, -inf on superseded rows."""
        scores = np.concatenate([base_scores, delta_scores], axis=1).astype(np.float64)
        scores[:, ~self.valid] = -np.inf
        return scores


class SegmentedEmbeddingSearcher(_Segmented, EmbeddingSearcher):
    """An embedding kind (``dense``, ``binary``): the base's ``search_rows`` and the
    delta's, merged. Queries are encoded once, by the base."""

    def __init__(self, base, delta, doc_ids: np.ndarray, valid: np.ndarray):
        super().__init__(base, doc_ids, valid)
        self.delta = delta

    def search_rows(self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None):
        check_k(k)
        base_mask, delta_mask = self.masks(allowed)
        base = self.base.search_rows(query_emb, k, base_mask) if base_mask.any() else None
        delta = self.delta.search_rows(query_emb, k, delta_mask) if delta_mask.any() else None
        base = base or _no_rows(len(query_emb))
        delta = delta or _no_rows(len(query_emb))
        return [
            merge([b, (d_rows + self.n_base, d_scores)], k)
            for b, (d_rows, d_scores) in zip(base, delta, strict=True)
        ]

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        return self.joined(
            self.base.reference_scores(queries), self.delta.reference_scores(queries)
        )


class DeltaVectors:
    """The delta's ``dense`` part: its float vectors, scanned exactly."""

    def __init__(self, embeddings: np.ndarray, encode):
        self.embeddings = embeddings
        self.encode = encode

    def search_rows(self, query_emb: np.ndarray, k: int, allowed: np.ndarray) -> list[Rows]:
        rows = np.flatnonzero(allowed)
        scores = np.asarray(query_emb, np.float32) @ np.asarray(self.embeddings[rows]).T
        return [top_k(s, k, rows) for s in scores]

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        return self.encode(queries) @ np.asarray(self.embeddings, np.float32).T


def open_dense(base, part: Path, doc_ids: np.ndarray, valid: np.ndarray):
    # In memory: a delta is small, and every search gathers its allowed rows.
    delta = DeltaVectors(np.load(part / "embeddings.npy"), base.encode)
    return SegmentedEmbeddingSearcher(base, delta, doc_ids, valid)


def open_binary(base, part: Path, doc_ids: np.ndarray, valid: np.ndarray):
    delta = open_binary_delta(part, base.config, doc_ids[len(base.doc_ids) :])
    return SegmentedEmbeddingSearcher(base, delta, doc_ids, valid)


class SegmentedImpactSearcher(_Segmented):
    """An impact kind (``bm25``, ``splade``): the kind's searcher over the base and over
    the delta's index (same scale, so scores compare by value). Queries are prepared
    (analyzed, or run through the encoder) once and mapped to each index's term ids."""

    def __init__(self, base, delta, doc_ids: np.ndarray, valid: np.ndarray):
        super().__init__(base, doc_ids, valid)
        self.delta = delta

    @classmethod
    def open(cls, base, part: Path, doc_ids: np.ndarray, valid: np.ndarray):
        delta = type(base).load(part, base.config, doc_ids[len(base.doc_ids) :])
        return cls(base, delta, doc_ids, valid)

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        check_k(k)
        prepared = self.base.prepare_queries(queries)  # analyzed or encoded once
        return self._search(lambda s: s.encode_prepared(prepared), k, allowed)

    def search_weighted(
        self, queries: list[dict[str, float]], k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]:
        """bm25's weighted queries (a PRF expansion) over base and delta."""
        check_k(k)
        return self._search(lambda s: s.encode_weighted(queries), k, allowed)

    def _search(self, encode, k: int, allowed: DocMask | None) -> list[list[Hit]]:
        base_mask, delta_mask = self.masks(allowed)
        base = _impact_rows(self.base, encode(self.base), k, base_mask)
        delta = _impact_rows(self.delta, encode(self.delta), k, delta_mask)
        return [
            self.hits(*merge([b, (d_rows + self.n_base, d_scores)], k))
            for b, (d_rows, d_scores) in zip(base, delta, strict=True)
        ]

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        return self.joined(
            self.base.reference_scores(queries), self.delta.reference_scores(queries)
        )


def _impact_rows(searcher, batch, k: int, mask: np.ndarray) -> list[Rows]:
    if not mask.any():
        return _no_rows(len(batch))
    rows, scores, counts = searcher.search_rows(batch, k, mask)
    return [(rows[q, :n], scores[q, :n]) for q, n in enumerate(counts.tolist())]


class SegmentedColbertSearcher(_Segmented):
    """``colbert``: the base's candidates and exact MaxSim, plus exact MaxSim over every
    allowed delta document (its tokens coded with the base's codec)."""

    def __init__(self, base, delta_store, doc_ids: np.ndarray, valid: np.ndarray):
        super().__init__(base, doc_ids, valid)
        self.delta_store = delta_store

    @classmethod
    def open(cls, base, part: Path, doc_ids: np.ndarray, valid: np.ndarray):
        return cls(base, open_token_store(part), doc_ids, valid)

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        return self.search_encoded(self.base.encoder.encode_queries(list(queries)), k, allowed)

    def search_encoded(
        self, query_tokens: list[np.ndarray], k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]:
        check_k(k)
        base_mask, delta_mask = self.masks(allowed)
        delta_rows = np.flatnonzero(delta_mask)
        out = []
        for q in query_tokens:
            q = np.asarray(q, np.float32)
            base = (
                self.base.score_candidates(q, k, base_mask) if base_mask.any() else _no_rows(1)[0]
            )
            delta = (delta_rows + self.n_base, maxsim_store(q, self.delta_store, delta_rows))
            out.append(self.hits(*merge([base, delta], k)))
        return out

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        q_tokens = self.base.encoder.encode_queries(list(queries))
        return self.joined(
            self.base.reference_scores_encoded(q_tokens),
            reference_maxsim(self.delta_store, q_tokens),
        )


#: kind -> opener(base searcher, the delta's part folder, doc ids, valid) of its view.
SEGMENTED = {
    "dense": open_dense,
    "binary": open_binary,
    "bm25": SegmentedImpactSearcher.open,
    "splade": SegmentedImpactSearcher.open,
    "colbert": SegmentedColbertSearcher.open,
}


class BaseRowsSearcher(_Segmented):
    """A kind the delta does not cover: the base's search over its still-valid rows."""

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        mask = self.masks(allowed)[0]
        if not mask.any():
            return [[] for _ in queries]
        return self.base.search(queries, k, mask)

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        n_delta = len(self.valid) - self.n_base
        return self.joined(
            self.base.reference_scores(queries), np.full((len(queries), n_delta), -np.inf)
        )
