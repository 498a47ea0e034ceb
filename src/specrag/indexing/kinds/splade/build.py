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

from specrag.indexing.encodings.session import EncodingNeed, encodings_for
from specrag.indexing.encodings.spaces import EncodingSpace, model_fingerprint
from specrag.indexing.kinds.impact.index import ImpactIndex, quantize, term_major
from specrag.indexing.kinds.impact.reorder import reorder_triples
from specrag.indexing.kinds.splade.config import SpladeConfig
from specrag.types import Corpus, Progress, no_progress

ENCODER = "splade"


def build_splade(
    corpus: Corpus, out_dir: Path, config: SpladeConfig, progress: Progress = no_progress
) -> dict[str, Any]:
    total = len(corpus)
    term_parts, doc_parts, value_parts = [], [], []
    row = 0
    (need,) = splade_encodings(config)
    with encodings_for(corpus, need, Path(out_dir), progress) as encoded:
        n_terms = max([d for d in encoded.store.chunk_extra("dim") if d] or [0])
        pending: tuple[list, list, list] = ([], [], [])
        for terms, weights in zip(encoded.rows("terms"), encoded.rows("weights"), strict=True):
            pending[0].append(np.asarray(terms, np.int32))
            pending[1].append(np.full(len(terms), row, np.int32))
            pending[2].append(np.asarray(weights, np.float32))
            row += 1
            if row % 4096 == 0 or row == total:
                # Flat arrays per batch, not per document (1M documents were 3M arrays).
                for parts, batch in zip((term_parts, doc_parts, value_parts), pending, strict=True):
                    parts.append(np.concatenate(batch))
                    batch.clear()
                progress(row, total, "splade: reading stored weights")
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


def splade_encodings(config: SpladeConfig) -> list[EncodingNeed]:
    """The SparseEncoder's document term weights."""
    space = EncodingSpace(
        "sparse", config.model, model_fingerprint(config.model), config.max_seq_length
    )
    return [EncodingNeed(space, ("terms", "weights"), config.batch_size)]
