"""The ``binary`` kind's settings: the bi-encoder, the Hamming index and rescoring depth."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specrag.indexing.encoders.precision import EncodeDType, dtype_field
from specrag.indexing.kinds.torchsearch.config import SearchDeviceConfig


class BinaryConfig(SearchDeviceConfig):
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
    dtype: EncodeDType = dtype_field()
    ivf_overfetch: float = Field(
        2.0,
        ge=1,
        description="faiss's binary IVF takes no IDSelector: under a filter it fetches this "
        "many times the selectivity-scaled candidates, then drops disallowed ones.",
    )
