"""Load ANCE checkpoints in Pyserini's layout as a SentenceTransformer.

ANCE (Xiong et al.) encodes with RoBERTa and takes ``LayerNorm(Linear(h_CLS))``. Pyserini's
``castorini/ance-msmarco-passage`` stores it as one state dict: ``roberta.*`` (the encoder),
``embeddingHead.{weight,bias}`` (the linear map) and ``norm.{weight,bias}`` (the layer norm).
sentence-transformers cannot read that layout by itself, so we assemble the same network
from its modules -- Transformer, Pooling(cls), Dense(identity activation), LayerNorm -- and
copy the two head weights in. (``sentence-transformers/msmarco-roberta-base-ance-firstp``
is already a SentenceTransformer and loads the ordinary way.)

ANCE was trained with unnormalized inner products: index it with ``normalize: false``.
"""

from __future__ import annotations

import json
from pathlib import Path

HEAD_KEYS = ("embeddingHead.weight", "embeddingHead.bias", "norm.weight", "norm.bias")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def local_model_dir(name_or_path: str) -> Path | None:
    """A local folder holding the model: the path itself, or the hub cache's snapshot
    (no download is attempted); None when neither exists."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if name_or_path.count("/") != 1 or path.is_absolute():
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception:  # not cached (or not a repo id): not a local ANCE checkpoint
        return None


def is_pyserini_ance(name_or_path: str) -> bool:
    """True for a checkpoint whose weights hold the ANCE head next to ``roberta.*`` and no
    sentence-transformers module list."""
    folder = local_model_dir(name_or_path)
    if folder is None or (folder / "modules.json").exists():
        return False
    try:
        keys = _weight_names(folder)
    except FileNotFoundError:
        return False
    return all(key in keys for key in HEAD_KEYS)


def load_pyserini_ance(name_or_path: str, device: str | None = None):
    """A SentenceTransformer computing LayerNorm(Linear(CLS hidden state))."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        LayerNorm,
        Pooling,
        Transformer,
    )

    folder = local_model_dir(name_or_path)
    if folder is None:
        raise ValueError(f"ANCE checkpoint {name_or_path!r} is not a local folder or cached repo")
    head = _load_tensors(folder, HEAD_KEYS)
    missing = [key for key in HEAD_KEYS if key not in head]
    if missing:
        raise ValueError(f"{folder} is not an ANCE checkpoint: missing {', '.join(missing)}")
    out_dim, hidden = head["embeddingHead.weight"].shape
    config = json.loads((folder / "config.json").read_text())
    if config.get("hidden_size") != hidden:
        raise ValueError(
            f"{folder}: embeddingHead expects width {hidden}, config says {config.get('hidden_size')}"
        )
    if head["norm.weight"].shape != (out_dim,):
        raise ValueError(
            f"{folder}: norm width {tuple(head['norm.weight'].shape)} != head output {out_dim}"
        )

    transformer = Transformer(str(folder))
    pooling = Pooling(hidden, pooling_mode="cls")
    dense = Dense(hidden, out_dim, bias=True, activation_function=torch.nn.Identity())
    layer_norm = LayerNorm(out_dim)
    with torch.no_grad():
        dense.linear.weight.copy_(head["embeddingHead.weight"])
        dense.linear.bias.copy_(head["embeddingHead.bias"])
        layer_norm.norm.weight.copy_(head["norm.weight"])
        layer_norm.norm.bias.copy_(head["norm.bias"])
    return SentenceTransformer(modules=[transformer, pooling, dense, layer_norm], device=device)


def _weight_file(folder: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"no {' or '.join(_WEIGHT_FILES)} in {folder}")


def _weight_names(folder: Path) -> set[str]:
    path = _weight_file(folder)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    return set(_torch_state_dict(path))


def _load_tensors(folder: Path, keys) -> dict:
    path = _weight_file(folder)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            present = set(f.keys())
            return {key: f.get_tensor(key) for key in keys if key in present}
    state = _torch_state_dict(path)
    return {key: state[key] for key in keys if key in state}


def _torch_state_dict(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
