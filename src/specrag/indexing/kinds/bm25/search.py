"""Search the ``bm25`` kind: queries analyzed like the documents, each known term weighted
by its frequency in the query, scored by the impact engine (``impact/search.py``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from specrag.indexing.kinds.bm25.analyzer import Analyzer
from specrag.indexing.kinds.bm25.build import VOCAB_FILE
from specrag.indexing.kinds.bm25.config import BM25Config
from specrag.indexing.kinds.impact.index import ImpactIndex
from specrag.indexing.kinds.impact.search import ImpactSearcher, QueryBatch
from specrag.indexing.kinds.topk import check_k
from specrag.types import DocMask, Hit


class BM25Searcher(ImpactSearcher):
    kind = "bm25"

    def __init__(
        self, index: ImpactIndex, doc_ids: np.ndarray, config: BM25Config, vocab: list[str]
    ):
        super().__init__(index, doc_ids, config)
        self._term_of = {t: i for i, t in enumerate(vocab)}
        self._analyzer = Analyzer()

    @classmethod
    def load(cls, index_dir: Path, config: BM25Config, doc_ids: np.ndarray) -> BM25Searcher:
        index_dir = Path(index_dir)
        index = ImpactIndex.load(index_dir)
        if index.meta.get("encoder") != cls.kind:
            raise ValueError(
                f"{index_dir}: not a bm25 index (encoder {index.meta.get('encoder')!r})"
            )
        vocab = json.loads((index_dir / VOCAB_FILE).read_text())
        return cls(index, doc_ids, config, vocab)

    def analyze(self, text: str) -> list[str]:
        """``text`` as the index's terms (the analyzer documents were indexed with)."""
        return self._analyzer(text)

    def search_weighted(
        self, queries: list[dict[str, float]], k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]:
        """Search weighted queries (analyzed term -> weight >= 0), e.g. a PRF expansion;
        terms the index does not know are dropped. ``{term: qtf}`` is plain bm25."""
        check_k(k)
        return self.search_encoded(self.encode_weighted(queries), k, allowed)

    def encode_weighted(self, queries: list[dict[str, float]]) -> QueryBatch:
        """Weighted queries as this index's term ids (a live view maps one expansion to
        the base's and the delta's vocabularies)."""
        terms, weights = [], []
        for query in queries:
            known = [(self._term_of[t], w) for t, w in query.items() if t in self._term_of]
            terms.append(np.array([t for t, _ in known], dtype=np.int64))
            weights.append(np.array([w for _, w in known], dtype=np.float64))
        return QueryBatch.from_lists(terms, weights, self.index.n_terms)

    def prepare_queries(self, queries: list[str]) -> list[Counter]:
        """Each query's analyzed terms with their frequency in the query."""
        _check_queries(queries)
        return [Counter(self._analyzer(text)) for text in queries]

    def encode_prepared(self, prepared: list[Counter]) -> QueryBatch:
        """Terms this index knows, weighted by their query frequency (unique and positive
        by construction, so ``QueryBatch.from_lists``'s validation is not needed)."""
        offsets, terms, weights = [0], [], []
        for counts in prepared:
            for term, count in counts.items():
                tid = self._term_of.get(term)
                if tid is not None:
                    terms.append(tid)
                    weights.append(count)
            offsets.append(len(terms))
        return QueryBatch(np.array(offsets), np.array(terms, dtype=np.int64), np.array(weights))


def _check_queries(queries) -> None:
    if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
        raise ValueError("queries must be a list of strings")
