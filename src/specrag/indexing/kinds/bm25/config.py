"""The ``bm25`` kind's settings: BM25's k1 and b, plus the impact-index settings."""

from __future__ import annotations

from pydantic import Field

from specrag.indexing.kinds.impact.config import ImpactConfig


class BM25Config(ImpactConfig):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
