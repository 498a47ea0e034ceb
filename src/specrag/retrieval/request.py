"""The search request, shared by REST and the CLI (one pydantic model)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RetrieverSpec(BaseModel):
    """One first-stage retriever: an index kind of the collection."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str = Field(description="Index kind, e.g. bm25, dense, splade, binary, colbert.")
    weight: float = Field(1.0, ge=0, description="Weight in the fusion.")
    k: int | None = Field(
        None, ge=1, description="Candidates taken from it; default max(k, the recipe depth: 1000)."
    )


class RerankSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal["maxsim", "cross-encoder"] = "maxsim"
    model: str | None = Field(None, description="Model name or path; default per method.")
    top_n: int = Field(100, ge=1, description="How many fused hits go into the reranker.")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    query: str = Field(min_length=1)
    k: int = Field(10, ge=1)
    retriever: str = Field(
        "hybrid",
        description="A kind name, or `hybrid` (the collection's recommended fusion). "
        "Ignored when `retrievers` is given.",
    )
    retrievers: list[RetrieverSpec] | None = None
    fusion: Literal["rrf", "convex"] = "rrf"
    rrf_k: float = Field(60.0, gt=0)
    normalization: Literal["minmax", "zscore"] = "minmax"
    filter: dict[str, Any] | None = Field(None, description="Mongo-like metadata filter.")
    min_score: float | None = None
    min_relevance: float | None = Field(None, ge=0, le=1)
    rerank: RerankSpec | None = Field(
        None,
        description="Omitted: the collection's default (for `hybrid`, MaxSim over the "
        "version's colbert token store when it has one). null: no rerank.",
    )
    include: list[Literal["text", "title", "metadata", "scores"]] = ["title", "scores"]
