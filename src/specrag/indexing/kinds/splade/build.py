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

from specrag.indexing.encodings.session import Encoded, EncodingNeed, encodings_for
from specrag.indexing.encodings.spaces import EncodingSpace, model_fingerprint
from specrag.indexing.kinds.impact.index import ImpactIndex, quantize, term_major
from specrag.indexing.kinds.impact.reorder import reorder_triples
from specrag.indexing.kinds.splade.config import SpladeConfig
from specrag.types import Corpus, Progress, no_progress

ENCODER = "splade"


def build_splade(
    corpus: Corpus, out_dir: Path, config: SpladeConfig, progress: Progress = no_progress
) -> dict[str, Any]:
    (need,) = splade_encodings(config)
    with encodings_for(corpus, need, Path(out_dir), progress) as encoded:
        n_terms = max([d for d in encoded.store.chunk_extra("dim") if d] or [0])
        term_ids, doc_ids, weights = read_weights(encoded, len(corpus), progress)
    if len(corpus) == 0:
        raise ValueError("cannot build a splade index over an empty corpus")
    return write_splade_index(
        out_dir, term_ids, doc_ids, weights, len(corpus), n_terms, config, progress
    )


def read_weights(
    encoded: Encoded, total: int, progress: Progress = no_progress
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored document weights as doc-major (term ids int32, rows int32, weights
    float32) arrays, concatenated per 4,096 documents (1M documents were 3M arrays)."""
    term_parts, doc_parts, value_parts = [], [], []
    pending: tuple[list, list, list] = ([], [], [])
    pairs = zip(encoded.rows("terms"), encoded.rows("weights"), strict=True)
    for row, (terms, weights) in enumerate(pairs):
        pending[0].append(np.asarray(terms, np.int32))
        pending[1].append(np.full(len(terms), row, np.int32))
        pending[2].append(np.asarray(weights, np.float32))
        done = row + 1
        if done % 4096 == 0 or done == total:
            for parts, batch in zip((term_parts, doc_parts, value_parts), pending, strict=True):
                parts.append(np.concatenate(batch))
                batch.clear()
            progress(done, total, "splade: reading stored weights")
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
    return cat(term_parts, np.int32), cat(doc_parts, np.int32), cat(value_parts, np.float32)


def write_splade_index(
    out_dir: Path, term_ids: np.ndarray, doc_ids: np.ndarray, weights: np.ndarray,
    n_docs: int, n_terms: int, config: SpladeConfig, progress: Progress = no_progress,
    scale: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Quantize doc-major weights (with ``scale``, default: the largest weight's), reorder
    when configured, and write the splade index of ``n_docs`` rows over ``n_terms`` term
    ids: the files ``SpladeSearcher.load`` opens. Shared by the build and delta segments."""
    impacts, scale = quantize(weights, config.impact_bits, scale=scale)
    del weights
    term_ids, doc_ids, impacts, perm = reorder_triples(
        config.reorder, term_ids, doc_ids, impacts, n_docs, n_terms,
        leaf_size=config.block_size, iterations=config.bp_iterations, progress=progress,
    )  # fmt: skip
    offsets, docs, impacts = term_major(term_ids, doc_ids, impacts, n_terms)
    del term_ids, doc_ids
    index = ImpactIndex.from_postings(
        n_docs,
        offsets,
        docs,
        impacts,
        block_size=config.block_size,
        scale=scale,
        perm=perm,
        meta={"encoder": ENCODER, "model": config.model},
    )
    stats = index.save(out_dir)
    progress(n_docs, n_docs, "splade: written")
    return {**stats, "model": config.model}


def splade_encodings(config: SpladeConfig) -> list[EncodingNeed]:
    """The SparseEncoder's document term weights."""
    space = EncodingSpace(
        "sparse", config.model, model_fingerprint(config.model), config.max_seq_length
    )
    return [EncodingNeed(space, ("terms", "weights"), config.batch_size)]
