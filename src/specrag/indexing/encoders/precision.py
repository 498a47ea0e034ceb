"""Encoding precision (issue #17, point 1): ``float32``, or ``float16`` / ``bfloat16``
through torch autocast, so an encoder runs on the GPU's tensor cores at half the memory
traffic. Outputs stay float32 (the stores and the searches are unchanged).

float16 is refused on the CPU: CPU float16 matmuls are slow or missing, and autocast on
the CPU takes only bfloat16. bfloat16 on the CPU runs (fast where the CPU has AMX/AVX512
BF16, slow elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import Field

EncodeDType = Literal["float32", "float16", "bfloat16"]


def dtype_field():
    """The ``dtype`` knob of the kinds that encode text."""
    return Field(
        "float32",
        description="Encoder precision: float32, or float16/bfloat16 under torch autocast "
        "(float16 needs cuda). Queries are encoded the same way.",
    )


def model_device(model) -> str:
    """``cuda`` or ``cpu``: where a sentence-transformers model's weights live."""
    device = getattr(model, "device", "cpu")
    return getattr(device, "type", str(device).split(":")[0])


@contextmanager
def encode_precision(device: str, dtype: EncodeDType) -> Iterator[None]:
    """Autocast the encoders run inside this block to ``dtype`` on ``device``."""
    if dtype == "float32":
        yield
        return
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"unknown encoder dtype {dtype!r}")
    if device != "cuda" and dtype == "float16":
        raise ValueError(
            "dtype='float16' needs a cuda device: the model is on the CPU, where torch "
            "autocast takes bfloat16 only. Use dtype='bfloat16' or 'float32' here."
        )
    import torch

    with torch.autocast(device_type=device, dtype=getattr(torch, dtype)):
        yield
