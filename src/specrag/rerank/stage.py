"""A reranker as a pipeline stage (``retrieval/stages.py``'s contract)."""

from __future__ import annotations

import numpy as np

from specrag.rerank.base import Reranker
from specrag.retrieval.stages import TextSource
from specrag.retrieval.version import OpenVersion
from specrag.types import Hit


class RerankStage:
    """Reranks every hit it is given: at least ``top_n`` (its depth), and all ``k`` when
    the request asks for more, so that ``k`` hits come back, all scored alike."""

    name = "rerank"

    def __init__(self, reranker: Reranker, top_n: int, texts: TextSource | None = None):
        if reranker.needs_texts and texts is None:
            raise ValueError(f"the {reranker.name} reranker needs the documents' texts")
        self.reranker = reranker
        self.depth = top_n
        self.texts = texts

    def __call__(
        self, version: OpenVersion, queries: list[str], hits: list[list[Hit]]
    ) -> list[list[Hit]]:
        return [self._one(version, q, h) for q, h in zip(queries, hits, strict=True)]

    def _one(self, version: OpenVersion, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        rows = np.array([version.row_of(h.doc_id) for h in hits], dtype=np.int64)
        texts = None
        if self.reranker.needs_texts or ("delta" in version.manifest and self.texts):
            # Under a live delta segment (retrieval/live.py) stored token rows exist only
            # for the base version's documents: rerank from the texts instead.
            rows = None
            texts = self.texts(version, [h.doc_id for h in hits])
        return self.reranker.rerank(query, hits, texts=texts, rows=rows)
