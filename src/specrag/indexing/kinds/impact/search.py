"""``ImpactSearcher``: search over an impact index, shared by the ``bm25`` and ``splade``
kinds (each adds how it loads and encodes queries).

Search runs the numba kernels of ``bmp.py``: Block-Max Pruning (``mode="bmp"``, safe when
``alpha == 1``) or exhaustive term-at-a-time scoring (``mode="exhaustive"``), with the
fallback rules of the config (``config.py``).
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp

from specrag.indexing.kinds.impact.bmp import PATH_UP_FRONT, bmp_search, exhaustive_search
from specrag.indexing.kinds.impact.config import ImpactConfig
from specrag.indexing.kinds.impact.index import ImpactIndex
from specrag.indexing.kinds.topk import check_k, check_mask
from specrag.types import DocMask, Hit


class QueryBatch:
    """Queries as a CSR of (unique term id, positive weight) pairs, in term order as given."""

    def __init__(self, offsets: np.ndarray, terms: np.ndarray, weights: np.ndarray):
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.terms = np.ascontiguousarray(terms, dtype=np.int64)
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)

    @classmethod
    def from_lists(
        cls, terms: list[np.ndarray], weights: list[np.ndarray], n_terms: int
    ) -> QueryBatch:
        """Validate per-query (terms, weights): drops zero weights, merges duplicate terms
        (summing weights), rejects negative or non-finite weights and unknown term ids."""
        out_t, out_w, offsets = [], [], [0]
        for t, w in zip(terms, weights, strict=True):
            t = np.asarray(t, dtype=np.int64)
            w = np.asarray(w, dtype=np.float64)
            if len(t) != len(w):
                raise ValueError("query terms and weights differ in length")
            if len(w) and (not np.all(np.isfinite(w)) or w.min() < 0):
                raise ValueError("query weights must be finite and non-negative")
            if len(t) and (t.min() < 0 or t.max() >= n_terms):
                raise ValueError(f"query term ids must lie in [0, {n_terms})")
            keep = w > 0
            t, w = t[keep], w[keep]
            if len(np.unique(t)) != len(t):
                uniq, inverse = np.unique(t, return_inverse=True)
                t, w = uniq, np.bincount(inverse, weights=w)
            out_t.append(t)
            out_w.append(w)
            offsets.append(offsets[-1] + len(t))
        cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
        return cls(np.asarray(offsets), cat(out_t, np.int64), cat(out_w, np.float64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def matrix(self, n_terms: int) -> sp.csr_matrix:
        return sp.csr_matrix((self.weights, self.terms, self.offsets), shape=(len(self), n_terms))


class ImpactSearcher:
    """Searches an impact index by the knobs of its ``config`` (an ImpactConfig): BMP or
    exhaustive, ``alpha``, and the fallback rules. Subclasses (``bm25``, ``splade``) add
    ``load``, ``prepare_queries`` and ``encode_prepared``; this class alone searches
    already-encoded queries (benchmarks, synthetic indexes)."""

    kind = "impact"

    def __init__(self, index: ImpactIndex, doc_ids: np.ndarray, config: ImpactConfig | None = None):
        if len(doc_ids) != index.n_docs:
            raise ValueError(f"{len(doc_ids)} doc ids for an index of {index.n_docs} docs")
        self.index = index
        self.doc_ids = doc_ids
        self.config = config if config is not None else ImpactConfig()
        self._matrix: sp.csc_matrix | None = None
        self._doc_id_list: list[str] | None = None
        #: Blocks fully scored per query by the last BMP search, and the path each query
        #: took there (``bmp.PATH_*``): benchmark and test diagnostics.
        self.last_blocks_scored: np.ndarray | None = None
        self.last_paths: np.ndarray | None = None
        self._local = threading.local()
        self._mask_memo: tuple[np.ndarray, np.ndarray, np.ndarray, int, int] | None = None
        # A document reordering (BP) stores rows internally in another order: the kernels
        # break ties and return by corpus row (row_key), masks are taken to internal order.
        perm = index.perm
        self._use_key = perm is not None
        self._row_key = perm if perm is not None else np.zeros(1, dtype=np.int32)
        self._block_key = (
            np.minimum.reduceat(perm, np.arange(0, index.n_docs, index.block_size))
            if perm is not None
            else np.zeros(1, dtype=np.int32)
        )

    def _scratch(self) -> np.ndarray:
        """Per-thread accumulators over all documents (zero between searches)."""
        buf = getattr(self._local, "scratch", None)
        if buf is None:
            buf = self._local.scratch = np.zeros(self.index.n_docs, np.float64)
        return buf

    def _ranges(self, max_terms: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-thread BMP (term, block) -> postings table with at least ``max_terms`` rows
        (8 bytes per query term and block; only the rows of sparse terms are written) and
        its last stamp (retrieval/bmp.py)."""
        table = getattr(self._local, "ranges", None)
        if table is None or len(table) < max_terms:
            rows = max(max_terms, 32 if table is None else 2 * len(table))
            table = self._local.ranges = np.zeros((rows, self.index.n_blocks), np.int64)
            self._local.stamp = np.zeros(1, np.int64)
        return table, self._local.stamp

    def encode_queries(self, queries: list[str]) -> QueryBatch:
        """Queries as (term id, weight) pairs, the way the kind encodes them."""
        return self.encode_prepared(self.prepare_queries(queries))

    def prepare_queries(self, queries: list[str]) -> object:
        """The index-independent part of encoding queries (bm25: analysis; splade: the
        encoder's forward), done once when several indexes of the kind are searched (a
        version and its delta segment, ``retrieval/live.py``)."""
        raise NotImplementedError(f"{type(self).__name__} searches encoded queries only")

    def encode_prepared(self, prepared: object) -> QueryBatch:
        """Prepared queries as this index's (term id, weight) pairs."""
        raise NotImplementedError(f"{type(self).__name__} searches encoded queries only")

    # -- search --------------------------------------------------------------------------

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        check_k(k)
        return self.search_encoded(self.encode_queries(queries), k, allowed)

    def search_encoded(
        self, batch: QueryBatch, k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]:
        rows, scores, counts = self.search_rows(batch, k, allowed)
        if self._doc_id_list is None:
            self._doc_id_list = [str(d) for d in self.doc_ids.tolist()]
        ids, kind = self._doc_id_list, self.kind
        out = []
        for q, n in enumerate(counts.tolist()):
            out.append(
                [
                    Hit(ids[r], s, {kind: s})
                    for r, s in zip(rows[q, :n].tolist(), scores[q, :n].tolist(), strict=True)
                ]
            )
        return out

    def search_rows(
        self, batch: QueryBatch, k: int, allowed: DocMask | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k rows, scores (in score units) and hit counts per query, as arrays."""
        check_k(k)
        cfg, ix = self.config, self.index
        k = int(min(k, ix.n_docs))
        mask = check_mask(allowed, ix.n_docs)
        use_mask = mask is not None
        block_allowed = np.zeros(1, dtype=np.int64)
        n_allowed, allowed_blocks = ix.n_docs, ix.n_blocks
        if mask is None:
            mask = np.ones(1, dtype=bool)
        else:
            mask, block_allowed, n_allowed, allowed_blocks = self._internal_mask(mask)
        if cfg.mode == "exhaustive" or ix.n_blocks < cfg.bmp_min_blocks:
            rows, scores, counts = exhaustive_search(
                ix.offsets,
                ix.postings,
                ix.doc_bits,
                ix.n_docs,
                batch.offsets,
                batch.terms,
                batch.weights,
                k,
                mask,
                use_mask,
                self._row_key,
                self._use_key,
                self._scratch(),
            )
            if cfg.mode == "bmp":
                self.last_blocks_scored = np.full(len(batch), ix.n_blocks, dtype=np.int64)
                self.last_paths = np.full(len(batch), PATH_UP_FRONT, dtype=np.int8)
        else:
            scored = np.zeros(len(batch), dtype=np.int64)
            paths = np.zeros(len(batch), dtype=np.int8)
            ranges, stamp = self._ranges(int(np.diff(batch.offsets).max(initial=0)))
            rows, scores, counts = bmp_search(
                ix.offsets,
                ix.postings,
                ix.doc_bits,
                ix.block_offsets,
                ix.block_ids,
                ix.block_max,
                ix.block_postings,
                ix.dense_slot,
                ix.dense_max,
                ix.dense_starts,
                ix.n_docs,
                ix.block_size,
                batch.offsets,
                batch.terms,
                batch.weights,
                k,
                float(cfg.alpha),
                mask,
                block_allowed,
                use_mask,
                scored,
                paths,
                int(
                    min(256, max(1, ix.n_blocks // 64))
                    if cfg.probe_blocks is None
                    else cfg.probe_blocks
                ),
                max(1, int(np.ceil(cfg.fallback_fraction * ix.n_blocks))),
                -1 if cfg.early_probe_blocks is None else int(cfg.early_probe_blocks),
                max(1, int(np.ceil(cfg.early_fallback_fraction * ix.n_blocks))),
                float(cfg.term_block_cost),
                float(cfg.blocks_per_hit),
                n_allowed,
                allowed_blocks,
                self._scratch(),
                ranges,
                stamp,
                self._row_key,
                self._block_key,
                self._use_key,
            )
            self.last_blocks_scored = scored
            self.last_paths = paths
        return rows, scores * ix.scale, counts

    def _internal_mask(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``mask`` in internal row order, its allowed rows per block (BMP never visits a
        block with none), and its allowed rows and blocks with one (BMP's up-front cost
        estimate). They cost O(n_docs) a call, more than a pruned search
        of 200k documents, so they are kept for the last *read-only* mask seen: the
        service hands the same cached read-only mask to every search until the next
        write (a writable mask may change between calls, so it is never kept)."""
        kept = self._mask_memo
        if kept is not None and kept[0] is mask:
            return kept[1:]
        ix = self.index
        internal = mask[ix.perm] if self._use_key else mask
        counts = np.add.reduceat(internal, np.arange(0, ix.n_docs, ix.block_size), dtype=np.int64)
        out = (internal, counts, int(counts.sum()), int(np.count_nonzero(counts)))
        if not mask.flags.writeable:
            self._mask_memo = (mask, *out)
        return out

    # -- reference -----------------------------------------------------------------------

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        """Dense exhaustive scores by scipy over the stored quantized impacts; rows that
        share no term with a query get -inf."""
        return self.reference_scores_encoded(self.encode_queries(queries))

    def reference_scores_encoded(self, batch: QueryBatch) -> np.ndarray:
        ix = self.index
        if self._matrix is None:
            docs, impacts = ix.unpack()
            self._matrix = sp.csc_matrix(
                (impacts.astype(np.float64), docs, ix.offsets), shape=(ix.n_docs, ix.n_terms)
            )
        q = batch.matrix(ix.n_terms)
        scores = np.asarray((self._matrix @ q.T).todense()).T * ix.scale
        matched = np.asarray(
            ((self._matrix != 0).astype(np.float64) @ (q != 0).T.astype(np.float64)).todense()
        ).T
        scores[matched == 0] = -np.inf
        if ix.perm is not None:  # columns are internal rows: back to corpus rows
            by_corpus_row = np.empty_like(scores)
            by_corpus_row[:, ix.perm] = scores
            scores = by_corpus_row
        return scores
