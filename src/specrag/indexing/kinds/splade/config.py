"""The ``splade`` kind's settings: the SparseEncoder, plus the impact-index settings."""

from __future__ import annotations

from pydantic import Field

from specrag.indexing.kinds.impact.config import ImpactConfig


class SpladeConfig(ImpactConfig):
    model: str = Field(description="SparseEncoder model name or path, e.g. naver/splade-v3.")
    batch_size: int = Field(32, ge=1)
    max_seq_length: int | None = Field(None, ge=8)
