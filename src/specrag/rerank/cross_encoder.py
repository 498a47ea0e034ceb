"""Cross-encoder reranking (sentence-transformers ``CrossEncoder`` by name or path)."""

from __future__ import annotations

import numpy as np

from specrag.indexing.encoders.models import load_model
from specrag.rerank.base import check_lengths, reorder
from specrag.types import Hit


class CrossEncoderReranker:
    name = "cross-encoder"
    needs_texts = True

    def __init__(self, model: str, batch_size: int = 32, device: str | None = None):
        if not model:
            raise ValueError("cross-encoder rerank needs a model name or path")
        self.model = load_model(model, "cross", device)
        self.batch_size = batch_size

    def scores(self, query: str, texts: list[str]) -> np.ndarray:
        pairs = [(query, t) for t in texts]
        out = self.model.predict(pairs, batch_size=self.batch_size, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float64).reshape(len(texts))

    def rerank(
        self,
        query: str,
        hits: list[Hit],
        texts: list[str] | None = None,
        rows: np.ndarray | None = None,
        k: int | None = None,
    ) -> list[Hit]:
        if not hits:
            return []
        if texts is None:
            raise ValueError("cross-encoder rerank needs the candidates' texts")
        check_lengths(hits, texts, rows)
        s = self.scores(query, list(texts))
        return reorder(hits, s, {"cross-encoder": s}, k)
