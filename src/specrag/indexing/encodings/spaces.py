"""What an encoding is keyed by: the encoder's *space* (model identity and every setting
that changes its output) and the hash of the exact text the encoder sees.

Two kinds whose encoders produce the same space share one forward pass and one set of
stored outputs: ``dense``, ``binary`` and ``colbert`` on MiniLM all read the space
``bi_encoder(all-MiniLM-L6-v2, max_seq_length=None, prompt=None)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

EncoderKind = Literal["bi_encoder", "multi_vector", "sparse"]

#: The outputs a space can hold, per encoder kind. ``pooled``: float32 (1, dim) per
#: document; ``tokens``: float16 (n_tokens, dim), L2-normalized, special tokens dropped;
#: ``terms``/``weights``: int32 / float32 (n_terms,), positive weights only.
FIELDS: dict[str, tuple[str, ...]] = {
    "bi_encoder": ("pooled", "tokens"),
    "multi_vector": ("tokens",),
    "sparse": ("terms", "weights"),
}

#: Files above this size are fingerprinted by their size and first and last MiB.
_WHOLE_FILE_BYTES = 4 << 20
_EDGE_BYTES = 1 << 20


@dataclass(frozen=True)
class EncodingSpace:
    """One encoder output space. ``model`` is the name as configured (for messages);
    ``fingerprint`` identifies the weights; ``prompt`` and ``task`` are what the encoder
    adds to every document (None for plain models)."""

    encoder: EncoderKind
    model: str
    fingerprint: str
    max_seq_length: int | None = None
    prompt: str | None = None
    task: str | None = None
    #: The encoder's precision (``encoders/precision.py``): bf16/fp16 outputs differ from
    #: float32 ones, so they are a space of their own.
    dtype: str = "float32"

    @property
    def key(self) -> str:
        """The folder name of the space in the store (stable across processes; a float32
        space keeps the key it had before spaces had a dtype)."""
        spec = {k: v for k, v in asdict(self).items() if k != "model"}
        if spec["dtype"] == "float32":
            del spec["dtype"]
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]

    def text_hash(self, text: str) -> bytes:
        """sha256 (hex, 64 ASCII bytes) of the exact text the encoder sees."""
        return hashlib.sha256(((self.prompt or "") + text).encode()).hexdigest().encode()

    def describe(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=32)
def model_fingerprint(name: str) -> str:
    """A hash of the model's files when it is a local folder (or a cached hub snapshot):
    every small file whole, large weight files by size and their first and last MiB (a
    changed checkpoint changes them; hashing gigabytes per build would not pay). A name
    with no local files is identified by the name alone."""
    from specrag.indexing.encoders.ance import local_model_dir
    from specrag.indexing.encoders.models import resolve_model_path

    folder = local_model_dir(resolve_model_path(name))
    digest = hashlib.sha256()
    if folder is None:
        digest.update(f"name:{name}".encode())
        return digest.hexdigest()[:24]
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith((".md", ".lock")):
            continue
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with open(path, "rb") as f:
            if size <= _WHOLE_FILE_BYTES:
                digest.update(f.read())
            else:
                digest.update(f.read(_EDGE_BYTES))
                f.seek(size - _EDGE_BYTES)
                digest.update(f.read(_EDGE_BYTES))
    return digest.hexdigest()[:24]


def bi_encoder_space(
    model: str,
    max_seq_length: int | None = None,
    view: Literal["document", "plain"] = "document",
    dtype: str = "float32",
) -> EncodingSpace:
    """The space of a sentence-transformers bi-encoder's document encodings. ``document``:
    what ``encode_document`` sees (the model's document prompt and task, if it has them;
    the ``dense`` and ``binary`` kinds); ``plain``: what ``encode`` sees (no prompt; the
    ``colbert`` kind's token embeddings). For models without prompts (MiniLM) both are
    the same space, so one forward serves all three kinds."""
    prompt = task = None
    if view == "document":
        prompt, task = document_prompt_and_task(model)
    return EncodingSpace(
        "bi_encoder", model, model_fingerprint(model), max_seq_length, prompt, task, dtype
    )


def document_prompt_and_task(model_name: str) -> tuple[str | None, str | None]:
    """The prompt ``encode_document`` prepends (the first of document/passage/corpus in
    the model's prompts) and its task, which only a Router module reads."""
    from specrag.indexing.encoders.models import load_model

    model = load_model(model_name)
    prompts = getattr(model, "prompts", None) or {}
    prompt = next((prompts[n] for n in ("document", "passage", "corpus") if n in prompts), None)
    has_router = any(type(m).__name__ == "Router" for m in model.modules())
    return (prompt or None), ("document" if has_router else None)
