"""``LuceneSearcher``: Lucene BM25 through Anserini's SimpleSearcher (extra ``lucene``).

The ``allowed`` mask is applied by over-fetching and filtering: ask Lucene for
``k / (allowed fraction)`` hits (at least ``2k``), keep the allowed ones, and double the
depth until ``k`` allowed hits are found or Lucene returns fewer hits than asked (every
matching document has been seen). Exact, but a very selective mask costs deep fetches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specrag.indexing.kinds.lucene.config import LuceneConfig
from specrag.indexing.kinds.lucene.jvm import autoclass
from specrag.indexing.kinds.topk import check_k, check_mask, to_hits
from specrag.types import DocMask, Hit


class LuceneSearcher:
    kind = "lucene"

    def __init__(self, index_dir: Path, config: LuceneConfig, doc_ids: np.ndarray):
        self.config = config
        self.doc_ids = doc_ids
        self._searcher = autoclass("io.anserini.search.SimpleSearcher")(
            str(Path(index_dir) / "index")
        )
        self._searcher.set_bm25(float(config.k1), float(config.b))

    @classmethod
    def load(cls, index_dir: Path, config: LuceneConfig, doc_ids: np.ndarray) -> LuceneSearcher:
        return cls(index_dir, config, doc_ids)

    def _rows_scores(self, query: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Lucene's top ``depth``, reordered by (score desc, row asc)."""
        if not query.strip():
            return np.zeros(0, np.int64), np.zeros(0)
        hits = self._searcher.search(query, int(depth))
        rows = np.fromiter((int(h.docid) for h in hits), dtype=np.int64, count=len(hits))
        scores = np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits))
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        check_k(k)
        n = len(self.doc_ids)
        mask = check_mask(allowed, n)
        out = []
        for query in queries:
            if mask is None:
                rows, scores = self._rows_scores(query, min(k, n))
            else:
                rows, scores = self._filtered(query, k, mask)
            out.append(to_hits(rows[:k], scores[:k], self.doc_ids, self.kind))
        return out

    def search_batch(self, queries: list[str], k: int) -> list[list[Hit]]:
        """Anserini's own batch search (``config.threads`` threads); no mask."""
        results = self.batch_search_java(queries, k)
        out = []
        for i in range(len(queries)):
            hits = results.get(str(i))
            rows = np.array([int(h.docid) for h in hits], dtype=np.int64)
            scores = np.array([h.score for h in hits], dtype=np.float64)
            order = np.lexsort((rows, -scores))
            out.append(to_hits(rows[order], scores[order], self.doc_ids, self.kind))
        return out

    def batch_search_java(self, queries: list[str], k: int):
        """The Java map that Anserini's ``batch_search`` returns (query index -> hits): one
        call into the JVM, so benchmarks time Lucene inside its own runtime."""
        check_k(k)
        jlist = autoclass("java.util.ArrayList")
        qs, ids = jlist(), jlist()
        for i, q in enumerate(queries):
            qs.add(q)
            ids.add(str(i))
        return self._searcher.batch_search(qs, ids, int(k), int(self.config.threads))

    def _filtered(self, query: str, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(mask)
        n_allowed = int(mask.sum())
        if n_allowed == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        depth = min(n, max(2 * k, int(np.ceil(k * n / n_allowed * 2))))
        while True:
            rows, scores = self._rows_scores(query, depth)
            keep = mask[rows]
            if keep.sum() >= k or len(rows) < depth or depth >= n:
                return rows[keep], scores[keep]
            depth = min(n, depth * 2)

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        """Every matching document's Lucene score (a search as deep as the corpus);
        -inf where a document does not match."""
        n = len(self.doc_ids)
        out = np.full((len(queries), n), -np.inf)
        for qi, query in enumerate(queries):
            rows, scores = self._rows_scores(query, n)
            out[qi, rows] = scores
        return out
