"""What ``backend`` and ``device`` resolve to on this machine.

Resolved once, when a searcher opens its files, and recorded on the searcher
(``searcher.backend``) so tests and benchmarks can say which engine answered.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    #: ``faiss`` (CPU index), ``faiss-gpu`` (a GPU copy of the index) or ``torch``.
    engine: str
    #: ``cpu`` or ``cuda``.
    device: str


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def faiss_gpu_available() -> bool:
    """faiss built with GPU support, seeing at least one GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_backend(
    backend: str, device: str, index: str = "flat", *, faiss_gpu: bool = True
) -> Backend:
    """``auto`` -> faiss-gpu (if importable, with a GPU) -> torch on cuda (if cuda) ->
    faiss-cpu. HNSW has no GPU form and torch searches flat only, so an approximate index
    never resolves to torch; asking for what this machine lacks raises. ``faiss_gpu``:
    whether the kind has a faiss-gpu path at all (``binary`` has none)."""
    if backend == "torch" and index != "flat":
        raise ValueError(f"backend='torch' needs index='flat', not {index!r}")
    if device == "cuda" and not cuda_available():
        raise RuntimeError("device='cuda' was asked for, but torch sees no CUDA device")
    if backend == "torch":
        return Backend("torch", "cuda" if device != "cpu" and cuda_available() else "cpu")
    gpu_faiss_ok = faiss_gpu and index != "hnsw" and device != "cpu" and faiss_gpu_available()
    if backend == "faiss":
        if device == "cuda" and not gpu_faiss_ok:
            raise RuntimeError(
                f"backend='faiss' with device='cuda' needs faiss-gpu and index flat/ivf "
                f"(index={index!r}); use backend='torch' or device='cpu'"
            )
        return Backend("faiss-gpu", "cuda") if gpu_faiss_ok else Backend("faiss", "cpu")
    if gpu_faiss_ok:
        return Backend("faiss-gpu", "cuda")
    if device != "cpu" and index == "flat" and cuda_available():
        return Backend("torch", "cuda")
    if device == "cuda":
        raise RuntimeError(f"no GPU engine for index={index!r} without faiss-gpu")
    return Backend("faiss", "cpu")
