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


class PrfSpec(BaseModel):
    """RM3 pseudo-relevance feedback for the ``bm25`` retriever (``retrieval/prf.py``): the
    query is expanded with the terms of its top documents and searched again."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    fb_docs: int = Field(10, ge=1, le=50, description="Top documents the terms come from.")
    fb_terms: int = Field(10, ge=1, le=100, description="Expansion terms kept.")
    orig_weight: float = Field(
        0.5, ge=0, le=1, description="Weight of the original query (1: plain bm25)."
    )
    feedback: Literal["bm25", "fused"] = Field(
        "bm25",
        description="Where the feedback documents come from: bm25's own first pass, or "
        "(in a fusion) the fused list, after which bm25 is searched again and fused again.",
    )


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
    fusion: Literal["rrf", "convex", "calibrated"] = Field(
        "rrf",
        description="rrf, convex (normalized scores), or calibrated: each retriever's "
        "calibrated probability of relevance (needs `specrag calibrate --retriever KIND` "
        "for each fused kind).",
    )
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
    prf: PrfSpec | None = Field(
        None, description="RM3 pseudo-relevance feedback for the bm25 retriever; off if null."
    )
    include: list[Literal["text", "title", "metadata", "scores"]] = ["title", "scores"]
