"""Token-level (late-interaction) encoding: one L2-normalized vector per token.

Two sources, one interface:

- a ColBERT checkpoint, loaded as sentence-transformers' ``MultiVectorEncoder``:
  ``encode_query`` adds the query marker and expansion tokens, ``encode_document`` the
  document marker and drops skiplist tokens (punctuation), each as the checkpoint says;
- a plain bi-encoder (``SentenceTransformer`` with a Pooling module, e.g. the offline
  MiniLM): its contextual token embeddings (``output_value=None`` keeps the input ids),
  special tokens dropped, no projection. Queries and documents are encoded alike.
  Measured on SciFact (docs/benchmarks.md): MaxSim over these works well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

from specrag.indexing.encoders.models import load_model, resolve_model_path
from specrag.indexing.encoders.precision import EncodeDType, encode_precision, model_device

EncoderType = Literal["auto", "multi_vector", "token_embeddings"]


def detect_encoder_type(model: str) -> Literal["multi_vector", "token_embeddings"]:
    """``token_embeddings`` for a local sentence-embedding model (it has a Pooling module);
    ``multi_vector`` for a MultiVectorEncoder / ColBERT save or a name that is not local
    (the MultiVectorEncoder loader resolves hub names and converts plain checkpoints)."""
    path = Path(resolve_model_path(model))
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return "multi_vector"
    cfg_file = path / "config_sentence_transformers.json"
    if cfg_file.is_file():
        model_type = json.loads(cfg_file.read_text()).get("model_type")
        if model_type == "MultiVectorEncoder":
            return "multi_vector"
    types = [m.get("type", "") for m in json.loads(modules_file.read_text())]
    return "token_embeddings" if any(t.endswith("Pooling") for t in types) else "multi_vector"


class TokenEncoder:
    """Encodes queries and documents into per-token, L2-normalized float32 matrices."""

    def __init__(
        self,
        model: str,
        encoder: EncoderType = "auto",
        batch_size: int = 32,
        device: str | None = None,
        dtype: EncodeDType = "float32",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = model
        self.encoder_type = detect_encoder_type(model) if encoder == "auto" else encoder
        if self.encoder_type not in ("multi_vector", "token_embeddings"):
            raise ValueError(f"unknown encoder type {encoder!r}")
        self.batch_size = batch_size
        self.dtype = dtype
        kind = "multi_vector" if self.encoder_type == "multi_vector" else "dense"
        self.model = load_model(model, kind, device)
        if self.encoder_type == "token_embeddings":
            self._special_ids = np.array(
                sorted(self.model.tokenizer.all_special_ids), dtype=np.int64
            )

    def _precision(self):
        return encode_precision(model_device(self.model), self.dtype)

    @property
    def dim(self) -> int:
        if self.encoder_type == "multi_vector":
            return int(self.encode_queries(["dimension probe"])[0].shape[1])
        return int(self.model.get_sentence_embedding_dimension())

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        if self.encoder_type == "multi_vector":
            with self._precision():
                out = self.model.encode_query(
                    list(texts), batch_size=self.batch_size, normalize_embeddings=True
                )
            return [_as_f32(t) for t in out]
        return self.encode_with_pooled(texts)[0]

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        if self.encoder_type == "multi_vector":
            with self._precision():
                out = self.model.encode_document(
                    list(texts), batch_size=self.batch_size, normalize_embeddings=True
                )
            return [_as_f32(t) for t in out]
        return self.encode_with_pooled(texts)[0]

    def encode_with_pooled(self, texts: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """Bi-encoder only: token matrices and, from the same forward pass, the model's own
        sentence embeddings (what the ``dense`` kind stores), so a benchmark encodes once."""
        if self.encoder_type != "token_embeddings":
            raise ValueError("encode_with_pooled needs a bi-encoder (encoder='token_embeddings')")
        if not texts:
            return [], np.zeros((0, self.dim), np.float32)
        with self._precision():
            rows = self.model.encode(list(texts), batch_size=self.batch_size, output_value=None)
        return split_forward(rows, self._special_ids)


def split_forward(rows, special_ids: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The per-text outputs of one ``encode(..., output_value=None)`` call as (token
    matrices: L2-normalized, padding and special tokens dropped; pooled sentence
    embeddings, float32 as the model's modules left them). One forward gives both, so the
    encoding store serves ``dense``, ``binary`` and ``colbert`` from one pass."""
    tokens, pooled = [], []
    for row in rows:
        keep = row["attention_mask"].bool().cpu().numpy()
        ids = row["input_ids"].cpu().numpy()
        keep &= ~np.isin(ids, special_ids)
        emb = row["token_embeddings"].float().cpu().numpy()[keep]
        tokens.append(_normalize(emb))
        pooled.append(row["sentence_embedding"].float().cpu().numpy())
    return tokens, np.stack(pooled).astype(np.float32)


def _as_f32(t) -> np.ndarray:
    arr = t.float().cpu().numpy() if hasattr(t, "cpu") else np.asarray(t)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
