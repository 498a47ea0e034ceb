"""Config models of the index kinds (pydantic, validated at the API and CLI edge).

Kept in one light module so that the registry and the API can validate a build request
without importing the heavy builders.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class KindConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImpactSearchConfig(KindConfig):
    """Build and search settings shared by the impact-index kinds (``bm25``, ``splade``)."""

    block_size: int = Field(
        32,
        ge=1,
        le=65536,
        description="Docs per block for block-max pruning (32: fastest of 32/64 at 1M docs for "
        "BM25 and SPLADE-like impacts, docs/benchmarks.md).",
    )
    impact_bits: Literal[8, 16] = Field(
        8, description="Width of the quantized impacts (the scale is recorded in the manifest)."
    )
    reorder: Literal["auto", "none", "bp"] = Field(
        "auto",
        description="Document reordering at build time for tighter block-max bounds: bp = "
        "recursive graph bisection (stored as a row permutation; results are unchanged); "
        "auto = bp from 50,000 documents on (indexing/reorder.py).",
    )
    bp_iterations: int = Field(20, ge=0, le=100, description="Swap rounds per BP bisection.")
    mode: Literal["bmp", "exhaustive"] = Field(
        "bmp", description="bmp: block-max pruning; exhaustive: score every posting."
    )
    alpha: float = Field(
        1.0,
        gt=0,
        le=1,
        description="BMP stops when alpha * (next block's bound) cannot beat the k-th score: "
        "1.0 is safe (exact); below 1 is faster and approximate.",
    )


class BM25Config(ImpactSearchConfig):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)


class DenseConfig(KindConfig):
    model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or path.")
    index: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)
    ivf_nlist: int | None = Field(None, ge=1, description="Default: about 4*sqrt(n).")
    ivf_nprobe: int = Field(16, ge=1)
    normalize: bool = Field(
        True,
        description="L2-normalize embeddings (cosine). Set False for dot-product models such as "
        "ANCE, whose scores are unnormalized inner products.",
    )
    batch_size: int = Field(64, ge=1)
    max_seq_length: int | None = Field(None, ge=8)


class SpladeConfig(ImpactSearchConfig):
    model: str = Field(description="SparseEncoder model name or path, e.g. naver/splade-v3.")
    batch_size: int = Field(32, ge=1)
    max_seq_length: int | None = Field(None, ge=8)


class LuceneConfig(KindConfig):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    threads: int = Field(1, ge=1)


class BinaryConfig(KindConfig):
    model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or path.")
    index: Literal["flat", "hnsw", "ivf"] = "flat"
    rescore_factor: int = Field(
        4, ge=1, description="Hamming candidates = max(rescore_factor * k, min_candidates)."
    )
    min_candidates: int = Field(
        400,
        ge=1,
        description="With at most this many (allowed) documents, every one is rescored: exact.",
    )
    normalize: bool = Field(True, description="L2-normalize embeddings before quantizing.")
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_search: int = Field(128, ge=8)
    ivf_nlist: int | None = Field(None, ge=1, description="Default: about 4*sqrt(n).")
    ivf_nprobe: int = Field(16, ge=1)
    batch_size: int = Field(64, ge=1)


class ColbertConfig(KindConfig):
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
    seed: int = 0
    batch_size: int = Field(32, ge=1)


class DatastoreConfig(KindConfig):
    tokenizer: str = Field(description="The generator's tokenizer (name or path).")
    max_match: int = Field(
        16, ge=1, le=256, description="Longest context tail (tokens) matched against the corpus."
    )
