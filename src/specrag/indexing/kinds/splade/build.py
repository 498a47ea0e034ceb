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

from specrag.indexing.encoders.sparse import encode_sparse_flat
from specrag.indexing.kinds.impact.index import ImpactIndex, quantize, term_major
from specrag.indexing.kinds.impact.reorder import reorder_triples
from specrag.indexing.kinds.splade.config import SpladeConfig
from specrag.types import Corpus, Progress, no_progress

ENCODER = "splade"


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
