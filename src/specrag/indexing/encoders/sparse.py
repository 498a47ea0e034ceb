"""Sparse (SPLADE-style) encoding with a sentence-transformers ``SparseEncoder``: term
ids are the encoder's output dimensions (its tokenizer vocabulary), weights its floats."""

from __future__ import annotations

import numpy as np

from specrag.indexing.encoders.models import load_model


def sparse_model(name: str, max_seq_length: int | None = None):
    model = load_model(name, kind="sparse")
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def encode_sparse_flat(
    name: str,
    texts: list[str],
    side: str = "query",
    batch_size: int = 32,
    max_seq_length: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The texts' positive weights from the SparseEncoder ``name`` as flat (text row int64,
    term id int64, weight float32) arrays, by row then term id, and the output dimension
    (vocabulary size; SpladePooling only knows it after a forward pass)."""
    if side not in ("query", "document"):
        raise ValueError(f"side must be 'query' or 'document', got {side!r}")
    if not texts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), 0
    model = sparse_model(name, max_seq_length)
    encode = model.encode_query if side == "query" else model.encode_document
    tensor = encode(
        list(texts), batch_size=batch_size, convert_to_sparse_tensor=True, show_progress_bar=False
    ).coalesce()
    rows, terms = tensor.indices().cpu().numpy()
    weights = tensor.values().float().cpu().numpy()
    order = np.lexsort((terms, rows))  # coalesce sorts already; keep the contract explicit
    keep = order[weights[order] > 0]
    return rows[keep], terms[keep], weights[keep], int(tensor.shape[1])


def encode_sparse(
    name: str,
    texts: list[str],
    side: str = "query",
    batch_size: int = 32,
    max_seq_length: int | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per-text (term ids int64, positive float64 weights) from ``encode_sparse_flat``, and
    the output dimension."""
    rows, terms, weights, dim = encode_sparse_flat(name, texts, side, batch_size, max_seq_length)
    bounds = np.searchsorted(rows, np.arange(len(texts) + 1))
    return (
        [terms[bounds[i] : bounds[i + 1]] for i in range(len(texts))],
        [weights[bounds[i] : bounds[i + 1]].astype(np.float64) for i in range(len(texts))],
        dim,
    )
