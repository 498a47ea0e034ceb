"""What the dense and binary searchers share: encode queries with the index's model,
then search by embedding. Subclasses implement ``search_rows``."""

from __future__ import annotations

from typing import Any

import numpy as np

from specrag.indexing.embedding import encode_queries
from specrag.indexing.encoders import load_model
from specrag.retrieval.topk import check_k, check_mask, to_hits
from specrag.types import DocMask, Hit


class EmbeddingSearcher:
    kind: str
    config: Any  # has model, batch_size, normalize
    doc_ids: np.ndarray

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    def encode(self, queries: list[str]) -> np.ndarray:
        """Query embeddings, as the index's documents were encoded."""
        model = load_model(self.config.model)
        return encode_queries(
            model, queries, batch_size=self.config.batch_size, normalize=self.config.normalize
        )

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        check_k(k)
        mask = check_mask(allowed, self.n_docs)
        if mask is not None and not mask.any():
            return [[] for _ in queries]
        return self.search_embeddings(self.encode(queries), k, allowed)

    def search_embeddings(
        self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]:
        """Search with precomputed query embeddings (fusion, benchmarks)."""
        return [
            to_hits(r, s, self.doc_ids, self.kind)
            for r, s in self.search_rows(query_emb, k, allowed)
        ]

    def search_rows(
        self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError
