"""The ``colbert`` kind's settings: token encoder, compression, centroids and probes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specrag.indexing.encoders.precision import EncodeDType, dtype_field
from specrag.indexing.kinds.selfcheck import SelfCheckConfig


class ColbertConfig(SelfCheckConfig):
    """PLAID-style late interaction: query tokens probe ``nprobe`` centroids each; the docs
    in those centroids are pruned to ``candidates`` by centroid-interaction scores, then
    scored by exact MaxSim over the stored (compressed) tokens. Corpora of at most
    ``exhaustive_max_docs`` documents are scored exhaustively (exact)."""

    model: str = Field(
        "all-MiniLM-L6-v2",
        description="MultiVectorEncoder (ColBERT) name or path; a plain bi-encoder's normalized "
        "token embeddings are used when it is not a ColBERT checkpoint.",
    )
    encoder: Literal["auto", "multi_vector", "token_embeddings"] = Field(
        "auto",
        description="auto: token_embeddings for a local sentence-embedding model (it has a "
        "Pooling module), multi_vector (MultiVectorEncoder) otherwise.",
    )
    compression: Literal["fp16", "int8", "binary"] = Field(
        "int8", description="Token codes: fp16, int8 per-dim scalar, or 1-bit (BTR-style)."
    )
    n_centroids: int | None = Field(
        None, ge=1, description="Default: a power of two near 2*sqrt(n_tokens)."
    )
    nprobe: int = Field(2, ge=1, description="Centroids probed per query token.")
    candidates: int = Field(
        256, ge=1, description="Docs kept after centroid-interaction pruning for exact MaxSim."
    )
    exhaustive_max_docs: int = Field(
        2048, ge=0, description="Score every document exactly when the corpus is this small."
    )
    sample_tokens: int = Field(
        131072, ge=256, description="Tokens sampled to fit the codec and the centroids."
    )
    kmeans_iters: int = Field(8, ge=1)
    kmeans_backend: Literal["auto", "faiss", "torch"] = Field(
        "auto",
        description="Centroid k-means: faiss on the CPU, or torch (on cuda when present, "
        "else the CPU); auto: torch when cuda is present, faiss otherwise.",
    )
    self_check_queries: int = Field(
        32,
        ge=0,
        description="Documents sampled as queries (their first 16 tokens) for the build's "
        "recall@10 self-check of the centroid stage against exhaustive MaxSim; fewer than "
        "the dense kind's, exhaustive MaxSim being costly (0: no check; no check either "
        "when the corpus is at most exhaustive_max_docs, searched exactly).",
    )
    reuse_codebook_below: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Rebuild over a collection whose current version has a colbert index "
        "of the same config: when the share of changed documents (max of new and removed, "
        "over the new count) is below this, keep that version's centroids and codec and "
        "copy the codes of unchanged documents (identical token vectors, identical codes); "
        "only changed documents are compressed. 0: always retrain (as a full build does).",
    )
    seed: int = 0
    batch_size: int = Field(32, ge=1)
    dtype: EncodeDType = dtype_field()
