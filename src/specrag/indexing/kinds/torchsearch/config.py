"""The knobs choosing where a vector kind searches: faiss (CPU, or faiss-gpu) or torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from specrag.indexing.kinds.base import KindConfig


class SearchDeviceConfig(KindConfig):
    """Inherited by the ``dense`` and ``binary`` configs. ``auto``/``auto``: faiss-gpu when
    it is importable and sees a GPU; else torch on cuda when cuda is present; else
    faiss-cpu. The torch backend is exact and flat only (HNSW and IVF stay on faiss)."""

    backend: Literal["auto", "faiss", "torch"] = Field(
        "auto", description="Search engine: faiss (CPU or faiss-gpu) or torch (any device)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where searches run; auto: cuda when present, else cpu."
    )
    torch_memory_mib: int = Field(
        256,
        ge=1,
        description="Torch backend: the score block of one corpus chunk stays under this "
        "many MiB (queries x chunk rows), bounding GPU memory beside the stored vectors.",
    )

    @model_validator(mode="after")
    def _torch_is_flat(self):
        index = getattr(self, "index", "flat")
        if self.backend == "torch" and index != "flat":
            raise ValueError(
                f"backend='torch' searches exactly: it needs index='flat', not {index!r}"
            )
        return self
