"""The ``lucene`` kind's settings (Lucene BM25 through Pyserini)."""

from __future__ import annotations

from pydantic import Field

from specrag.indexing.kinds.base import KindConfig


class LuceneConfig(KindConfig):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    threads: int = Field(1, ge=1)
