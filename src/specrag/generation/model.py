"""Loading the target (and draft) causal LM: any ``transformers`` model by name or local
path, CPU or GPU (bf16 on GPU), once per (name, device), thread-safe."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

_lock = threading.Lock()


@dataclass
class LoadedModel:
    name: str
    model: object
    tokenizer: object
    device: str

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        ids = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif eos:
            ids.update(int(e) for e in eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return tuple(sorted(ids))


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=2)  # with the generator cache: at most two LMs loaded
def _load(name: str, device: str) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype).to(device).eval()
    return LoadedModel(name, model, tokenizer, device)


def load_causal_lm(name: str, device: str | None = None) -> LoadedModel:
    """The model and tokenizer for ``name`` (hub name or local path); raises OSError /
    ValueError when it cannot be loaded."""
    if not name:
        raise ValueError("no model name given")
    with _lock:
        return _load(name, device or default_device())
