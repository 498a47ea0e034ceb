"""Config models of the index kinds (pydantic, validated at the API and CLI edge).

Kept in one light module so that the registry and the API can validate a build request
without importing the heavy builders.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class KindConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BM25Config(KindConfig):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    block_size: int = Field(64, ge=1, le=65536, description="Docs per block for block-max pruning.")


class DenseConfig(KindConfig):
    model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or path.")
    index: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)
    ivf_nlist: int | None = Field(None, ge=1, description="Default: about 4*sqrt(n).")
    ivf_nprobe: int = Field(16, ge=1)
    batch_size: int = Field(64, ge=1)
    max_seq_length: int | None = Field(None, ge=8)


class SpladeConfig(KindConfig):
    model: str = Field(description="SparseEncoder model name or path, e.g. naver/splade-v3.")
    block_size: int = Field(64, ge=1, le=65536)
    batch_size: int = Field(32, ge=1)
    max_seq_length: int | None = Field(None, ge=8)


class LuceneConfig(KindConfig):
    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    threads: int = Field(1, ge=1)


class BinaryConfig(KindConfig):
    model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or path.")
    index: Literal["flat", "hnsw", "ivf"] = "flat"
    rescore_factor: int = Field(4, ge=1, description="Hamming candidates = rescore_factor * k.")
    min_candidates: int = Field(400, ge=1)
    batch_size: int = Field(64, ge=1)


class ColbertConfig(KindConfig):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="MultiVectorEncoder (ColBERT) name or path; a plain bi-encoder's normalized "
        "token embeddings are used when it is not a ColBERT checkpoint.",
    )
    compression: Literal["int8", "binary", "residual"] = "int8"
    n_centroids: int | None = Field(None, ge=1, description="Default: about 2*sqrt(n_tokens).")
    nprobe: int = Field(8, ge=1)
    candidates: int = Field(256, ge=1)
    batch_size: int = Field(32, ge=1)


class DatastoreConfig(KindConfig):
    tokenizer: str = Field(description="The generator's tokenizer (name or path).")
