"""``ImpactSearcher``: the searcher of the impact-index kinds ``bm25`` and ``splade``.

The index directory says which encoder built it (``meta.encoder``); queries are encoded the
same way: BM25 queries by the analyzer, weights = query term frequency; SPLADE queries by
the SparseEncoder, weights = its float outputs. Search runs the numba kernels of
``retrieval/bmp.py``: Block-Max Pruning (``mode="bmp"``, safe when ``alpha == 1``) or
exhaustive term-at-a-time scoring (``mode="exhaustive"``).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from specrag.indexing.analyzer import Analyzer
from specrag.indexing.impact_index import ImpactIndex
from specrag.retrieval.bmp import block_allowed_counts, bmp_search, exhaustive_search
from specrag.retrieval.topk import check_k, check_mask
from specrag.types import DocMask, Hit

Mode = Literal["bmp", "exhaustive"]


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
    """Searches an impact index; ``mode`` and ``alpha`` may be changed after loading."""

    def __init__(
        self,
        index: ImpactIndex,
        doc_ids: np.ndarray,
        *,
        mode: Mode = "bmp",
        alpha: float = 1.0,
        vocab: list[str] | None = None,
        model_name: str | None = None,
        max_seq_length: int | None = None,
    ):
        if len(doc_ids) != index.n_docs:
            raise ValueError(f"{len(doc_ids)} doc ids for an index of {index.n_docs} docs")
        self.index = index
        self.doc_ids = doc_ids
        self.kind = index.meta.get("encoder", "impact")
        self.mode: Mode = mode
        self.alpha = alpha
        self._term_of = {t: i for i, t in enumerate(vocab)} if vocab is not None else None
        self._model_name = model_name
        self._max_seq_length = max_seq_length
        self._analyzer = Analyzer() if self.kind == "bm25" else None
        self._matrix: sp.csc_matrix | None = None
        self._doc_id_list: list[str] | None = None
        #: Blocks fully scored per query by the last BMP search (benchmark diagnostics).
        self.last_blocks_scored: np.ndarray | None = None
        #: After scoring this many blocks, BMP checks whether the blocks it could still
        #: visit would cost more than scoring the query exhaustively, and then does that
        #: instead (retrieval/bmp.py). Default: n_blocks / 64 within [1, 256]: enough for a
        #: useful k-th score (fewer made 1M-document queries fall back needlessly), a small
        #: share of the blocks.
        self.probe_blocks: int | None = None
        #: The cost model of that check: scoring one query term in one block costs as
        #: much as an exhaustive pass spends on ``term_block_cost`` postings; 0 turns the
        #: model off. A (term, block) run costs 14-21 ns against ~0.6 ns a posting, but the
        #: blocks counted at the probe overstate those visited in the end, so the best
        #: setting is lower: 20 (1M docs, 300 queries, one process: 20 as fast as 0-15,
        #: 50 10-15% slower; docs/benchmarks.md). ``fallback_fraction`` of all blocks
        #: always falls back.
        self.term_block_cost = 20.0
        self.fallback_fraction = 0.4
        #: An earlier, O(1) check: after this many blocks, a query whose band of bounds
        #: being visited is still wholly admitted and holds ``early_fallback_fraction`` of
        #: all blocks falls back at once. Where bounds prune nothing (1M SPLADE-like
        #: unordered or "mix") it saves 10-15% a query; on BP-ordered indexes timings are
        #: unchanged (docs/benchmarks.md).
        self.early_probe_blocks = 16
        self.early_fallback_fraction = 0.6
        #: Collections with fewer blocks are scored exhaustively in "bmp" mode: on SciFact
        #: (162 blocks of 32) the bounds admitted 40% of the blocks on 299 of 300 queries,
        #: so the bound pass was pure overhead (docs/benchmarks.md).
        self.bmp_min_blocks = 1024
        self._local = threading.local()
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

    @classmethod
    def load(cls, index_dir: Path, config, doc_ids: np.ndarray) -> ImpactSearcher:
        index_dir = Path(index_dir)
        index = ImpactIndex.load(index_dir)
        encoder = index.meta.get("encoder")
        vocab = None
        model_name = None
        if encoder == "bm25":
            vocab = json.loads((index_dir / "vocab.json").read_text())
        elif encoder == "splade":
            model_name = config.model
        else:
            raise ValueError(f"{index_dir}: unknown impact index encoder {encoder!r}")
        return cls(
            index,
            doc_ids,
            mode=getattr(config, "mode", "bmp"),
            alpha=getattr(config, "alpha", 1.0),
            vocab=vocab,
            model_name=model_name,
            max_seq_length=getattr(config, "max_seq_length", None),
        )

    # -- query encoding ------------------------------------------------------------------

    def encode_queries(self, queries: list[str]) -> QueryBatch:
        if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
            raise ValueError("queries must be a list of strings")
        if self.kind == "bm25":
            return self._encode_bm25(queries)
        if self.kind == "splade":
            return self._encode_splade(queries)
        raise ValueError(f"cannot encode queries for impact index encoder {self.kind!r}")

    def _encode_bm25(self, queries: list[str]) -> QueryBatch:
        """Known analyzed terms with their query term frequency (unique and positive by
        construction, so the generic validation of ``from_lists`` is not needed)."""
        offsets, terms, weights = [0], [], []
        term_of = self._term_of
        for text in queries:
            counts = Counter(self._analyzer(text))
            for t, c in counts.items():
                tid = term_of.get(t)
                if tid is not None:
                    terms.append(tid)
                    weights.append(c)
            offsets.append(len(terms))
        return QueryBatch(np.array(offsets), np.array(terms, dtype=np.int64), np.array(weights))

    def _encode_splade(self, queries: list[str]) -> QueryBatch:
        from specrag.indexing.splade import encode_sparse

        terms, weights, _ = encode_sparse(
            self._model_name, queries, side="query", max_seq_length=self._max_seq_length
        )
        return QueryBatch.from_lists(terms, weights, self.index.n_terms)

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
        if self.mode not in ("bmp", "exhaustive"):
            raise ValueError(f"mode must be 'bmp' or 'exhaustive', got {self.mode!r}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        ix = self.index
        k = int(min(k, ix.n_docs))
        mask = check_mask(allowed, ix.n_docs)
        use_mask = mask is not None
        if mask is None:
            mask = np.ones(1, dtype=bool)
        elif self._use_key:
            mask = mask[ix.perm]  # internal row order
        if self.mode == "exhaustive" or ix.n_blocks < self.bmp_min_blocks:
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
            if self.mode == "bmp":
                self.last_blocks_scored = np.full(len(batch), ix.n_blocks, dtype=np.int64)
        else:
            block_allowed = (
                block_allowed_counts(mask, ix.block_size, ix.n_blocks)
                if use_mask
                else np.zeros(1, dtype=np.int64)
            )
            scored = np.zeros(len(batch), dtype=np.int64)
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
                float(self.alpha),
                mask,
                block_allowed,
                use_mask,
                scored,
                int(
                    min(256, max(1, ix.n_blocks // 64))
                    if self.probe_blocks is None
                    else self.probe_blocks
                ),
                max(1, int(np.ceil(self.fallback_fraction * ix.n_blocks))),
                int(self.early_probe_blocks),
                max(1, int(np.ceil(self.early_fallback_fraction * ix.n_blocks))),
                float(self.term_block_cost),
                self._scratch(),
                ranges,
                stamp,
                self._row_key,
                self._block_key,
                self._use_key,
            )
            self.last_blocks_scored = scored
        return rows, scores * ix.scale, counts

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
