"""Search the ``splade`` kind: queries encoded by the index's SparseEncoder (float weights),
scored by the impact engine (``impact/search.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specrag.indexing.encoders.sparse import encode_sparse
from specrag.indexing.kinds.impact.index import ImpactIndex
from specrag.indexing.kinds.impact.search import ImpactSearcher, QueryBatch
from specrag.indexing.kinds.splade.config import SpladeConfig


class SpladeSearcher(ImpactSearcher):
    kind = "splade"
    config: SpladeConfig

    @classmethod
    def load(cls, index_dir: Path, config: SpladeConfig, doc_ids: np.ndarray) -> SpladeSearcher:
        index = ImpactIndex.load(Path(index_dir))
        if index.meta.get("encoder") != cls.kind:
            raise ValueError(
                f"{index_dir}: not a splade index (encoder {index.meta.get('encoder')!r})"
            )
        return cls(index, doc_ids, config)

    def prepare_queries(self, queries: list[str]) -> tuple[list, list]:
        """The SparseEncoder's query (term ids, weights): its output dimensions, the same
        term ids in every index of the model."""
        if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
            raise ValueError("queries must be a list of strings")
        terms, weights, _ = encode_sparse(
            self.config.model, queries, side="query", max_seq_length=self.config.max_seq_length
        )
        return terms, weights

    def encode_prepared(self, prepared: tuple[list, list]) -> QueryBatch:
        terms, weights = prepared
        return QueryBatch.from_lists(terms, weights, self.index.n_terms)
