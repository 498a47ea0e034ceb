"""The ``splade`` kind: learned sparse vectors from a sentence-transformers
``SparseEncoder`` (by name or path), stored in the same block-max impact index as bm25.

Term ids are the encoder's output dimensions (its tokenizer vocabulary), so no vocabulary
file is needed. Document weights are quantized to 8-bit impacts with one scale per index
(recorded in the manifest); query weights stay floats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.configs import SpladeConfig
from specrag.indexing.encoders import load_model
from specrag.indexing.impact_index import ImpactIndex, quantize, term_major
from specrag.indexing.reorder import reorder_triples
from specrag.types import Corpus, Progress, no_progress

ENCODER = "splade"


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


def build_splade(
    corpus: Corpus, out_dir: Path, config: SpladeConfig, progress: Progress = no_progress
) -> dict[str, Any]:
    n_terms = 0
    total = len(corpus)
    term_parts, doc_parts, value_parts = [], [], []
    batch: list[str] = []
    row = 0

    def flush() -> None:
        nonlocal row, n_terms
        rows, terms, weights, dim = encode_sparse_flat(
            config.model, batch, "document", config.batch_size, config.max_seq_length
        )
        # Flat arrays per batch, not per document (1M documents were 3M small arrays).
        term_parts.append(terms.astype(np.int32))
        doc_parts.append((rows + row).astype(np.int32))
        value_parts.append(weights)
        row += len(batch)
        n_terms = max(n_terms, dim)
        batch.clear()
        progress(row, total, "splade: encode")

    for doc in corpus:
        batch.append(doc.full_text())
        if len(batch) >= config.batch_size * 8:
            flush()
    if batch:
        flush()
    if row == 0:
        raise ValueError("cannot build a splade index over an empty corpus")
    term_ids = np.concatenate(term_parts)
    term_parts.clear()
    doc_ids = np.concatenate(doc_parts)
    doc_parts.clear()
    impacts, scale = quantize(np.concatenate(value_parts), config.impact_bits)
    value_parts.clear()
    term_ids, doc_ids, impacts, perm = reorder_triples(
        config.reorder, term_ids, doc_ids, impacts, row, n_terms,
        leaf_size=config.block_size, iterations=config.bp_iterations, progress=progress,
    )  # fmt: skip
    offsets, docs, impacts = term_major(term_ids, doc_ids, impacts, n_terms)
    del term_ids, doc_ids
    index = ImpactIndex.from_postings(
        row,
        offsets,
        docs,
        impacts,
        block_size=config.block_size,
        scale=scale,
        perm=perm,
        meta={"encoder": ENCODER, "model": config.model},
    )
    stats = index.save(out_dir)
    progress(row, row, "splade: written")
    return {**stats, "model": config.model}
