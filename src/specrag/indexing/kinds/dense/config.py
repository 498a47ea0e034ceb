"""The ``dense`` kind's settings: the bi-encoder, the faiss index type and its knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specrag.indexing.encoders.precision import EncodeDType, dtype_field
from specrag.indexing.kinds.selfcheck import SelfCheckConfig
from specrag.indexing.kinds.torchsearch.config import SearchDeviceConfig


class DenseConfig(SearchDeviceConfig, SelfCheckConfig):
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
    dtype: EncodeDType = dtype_field()
    max_seq_length: int | None = Field(None, ge=8)
    exact_filter_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A filter allowing at most this share of the rows (or at most "
        "exact_filter_min_rows rows) is answered by an exact scan of the allowed rows instead "
        "of faiss with an IDSelector. Measured (scripts/bench_dense.py --filter-sweep, 1 "
        "thread): the scan wins up to ~5-10% of the rows against flat on 5k and 100k docs, "
        "up to ~20% against HNSW on 5k docs.",
    )
    exact_filter_min_rows: int = Field(1024, ge=0)
