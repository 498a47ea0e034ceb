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
