"""The ``bm25`` kind: BM25 over the Snowball analyzer, stored as a block-max impact index.

BM25 as Lucene >= 8 scores it (no ``k1 + 1`` factor, which is a constant per query)::

    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))
    w(t, d)     = idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))

with ``dl`` the number of analyzed terms of the document (stopwords removed). Each
``w(t, d)`` is quantized to an 8-bit impact (scale recorded in the manifest); a query's
score is ``scale * sum_t qtf(t) * impact(t, d)``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from specrag.atomic import write_json_atomic
from specrag.indexing.analyzer import Analyzer
from specrag.indexing.configs import BM25Config
from specrag.indexing.impact_index import INT32_MAX, ImpactIndex, quantize, term_major
from specrag.indexing.reorder import reorder_triples
from specrag.types import Corpus, Progress, no_progress

VOCAB_FILE = "vocab.json"
ENCODER = "bm25"


def bm25_weights(
    tf: np.ndarray, dl: np.ndarray, df: np.ndarray, n_docs: int, avgdl: float, k1: float, b: float
) -> np.ndarray:
    """Unquantized BM25 term weights, elementwise over (tf, dl, df) arrays."""
    tf = np.asarray(tf, dtype=np.float64)
    dl = np.asarray(dl, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1.0 - b + b * dl / avgdl))


def analyze_corpus(corpus: Corpus, analyzer: Analyzer, progress: Progress = no_progress):
    """Term frequencies of every document, doc-major: (vocab list, term_ids, doc_ids, tfs,
    doc_lengths)."""
    vocab: dict[str, int] = {}
    term_ids: list[np.ndarray] = []
    doc_ids: list[np.ndarray] = []
    tfs: list[np.ndarray] = []
    lengths: list[int] = []
    total = len(corpus)
    for row, doc in enumerate(corpus):
        terms = analyzer(doc.full_text())
        counts = Counter(terms)
        ids = np.fromiter(
            (vocab.setdefault(t, len(vocab)) for t in counts), dtype=np.int64, count=len(counts)
        )
        term_ids.append(ids)
        doc_ids.append(np.full(len(ids), row, dtype=np.int32))
        tfs.append(np.fromiter(counts.values(), dtype=np.int32, count=len(counts)))
        lengths.append(len(terms))
        if row % 1000 == 0:
            progress(row, total, "bm25: analyze")
    if len(vocab) > INT32_MAX:
        raise ValueError(f"vocabulary of {len(vocab)} terms exceeds the int32 term id limit")
    progress(total, total, "bm25: analyze")
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
    return (
        list(vocab),
        cat(term_ids, np.int64),
        cat(doc_ids, np.int32),
        cat(tfs, np.int32),
        np.asarray(lengths, dtype=np.int64),
    )


def build_bm25(
    corpus: Corpus, out_dir: Path, config: BM25Config, progress: Progress = no_progress
) -> dict[str, Any]:
    analyzer = Analyzer()
    vocab, term_ids, doc_ids, tfs, lengths = analyze_corpus(corpus, analyzer, progress)
    n_docs = len(lengths)
    if n_docs == 0:
        raise ValueError("cannot build a bm25 index over an empty corpus")
    avgdl = max(float(lengths.mean()), 1e-9)
    df = np.bincount(term_ids, minlength=len(vocab))
    weights = bm25_weights(tfs, lengths[doc_ids], df[term_ids], n_docs, avgdl, config.k1, config.b)
    impacts, scale = quantize(weights, config.impact_bits)
    term_ids, doc_ids, impacts, perm = reorder_triples(
        config.reorder, term_ids, doc_ids, impacts, n_docs, len(vocab),
        leaf_size=config.block_size, iterations=config.bp_iterations, progress=progress,
    )  # fmt: skip
    offsets, docs, impacts = term_major(term_ids, doc_ids, impacts, len(vocab))
    index = ImpactIndex.from_postings(
        n_docs,
        offsets,
        docs,
        impacts,
        block_size=config.block_size,
        scale=scale,
        perm=perm,
        meta={
            "encoder": ENCODER,
            "analyzer": analyzer.name,
            "k1": config.k1,
            "b": config.b,
            "avgdl": avgdl,
        },
    )
    write_json_atomic(Path(out_dir) / VOCAB_FILE, vocab)
    stats = index.save(out_dir)
    progress(n_docs, n_docs, "bm25: written")
    return {**stats, "avgdl": avgdl, "analyzer": analyzer.name}
