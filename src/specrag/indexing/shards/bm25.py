"""BM25 over shards with collection-wide statistics, so that every shard scores exactly
as the unsharded collection would (Elasticsearch's ``dfs_query_then_fetch``, done once at
build time instead of per query).

A BM25 impact ``w(t, d) = idf(df_t, N) * tf / (tf + k1 * (1 - b + b * dl / avgdl))`` depends
on the collection through ``N``, ``avgdl`` and ``df_t``, and its 8-bit quantization on the
largest weight of the collection (``scale = max w / 255``). A shard build therefore runs in
three rounds, each one task per shard:

1. :func:`analyze_shard`: analyze the shard's documents (the ``bm25`` kind's analyzer),
   keep the postings in the shard's work folder, return its document count, total length
   and per-term document frequencies;
2. the driver sums them (:func:`merge_stats`: ``N``, ``avgdl``, ``df`` per term) and
   :func:`max_weight` returns each shard's largest weight under those statistics; the
   global scale is the largest of them;
3. :func:`write_bm25_shard` computes the shard's weights with the global statistics,
   quantizes them with the global scale and writes an ordinary ``bm25`` index (the kind's
   own searcher opens it).

Every ``(t, d)`` then gets the same float64 weight and the same 8-bit impact as in the
unsharded build (the same formula over the same integers; ``avgdl`` is the exact total
length over ``N`` in both), so scores are identical, not merely close.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.kinds.bm25.analyzer import Analyzer
from specrag.indexing.kinds.bm25.build import (
    analyze_corpus,
    chunked_bm25_weights,
    write_bm25_index,
)
from specrag.indexing.kinds.bm25.config import BM25Config
from specrag.indexing.kinds.impact.index import quantize
from specrag.types import Corpus, Progress, no_progress

POSTINGS_FILE = "bm25-postings.npz"
TERMS_FILE = "bm25-terms.json"


@dataclass
class ShardTerms:
    """What a shard tells the driver after round 1."""

    n_docs: int
    total_length: int
    vocab: list[str]
    df: np.ndarray  # int64, df[i] = documents of the shard holding vocab[i]


@dataclass(frozen=True)
class GlobalStats:
    """The collection-wide statistics every shard scores with."""

    n_docs: int
    avgdl: float
    df: dict[str, int]

    def df_of(self, vocab: list[str]) -> np.ndarray:
        """Collection-wide document frequencies of ``vocab`` (a shard's terms)."""
        return np.fromiter((self.df[t] for t in vocab), dtype=np.int64, count=len(vocab))


def analyze_shard(corpus: Corpus, work_dir: Path) -> ShardTerms:
    """Round 1: analyze, keep the postings in ``work_dir``, return the shard's statistics."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    vocab, term_ids, doc_ids, tfs, lengths = analyze_corpus(corpus, Analyzer())
    np.savez(work_dir / POSTINGS_FILE, term_ids=term_ids, doc_ids=doc_ids, tfs=tfs, lengths=lengths)
    (work_dir / TERMS_FILE).write_text(json.dumps(vocab))
    df = np.bincount(term_ids, minlength=len(vocab)).astype(np.int64)
    return ShardTerms(len(lengths), int(lengths.sum()), vocab, df)


def merge_stats(parts: list[ShardTerms]) -> GlobalStats:
    """Sum the shards' counts. ``avgdl`` is computed as the unsharded build computes it
    (the exact total length over ``N``, correctly rounded, floored at 1e-9)."""
    n_docs = sum(p.n_docs for p in parts)
    total = sum(p.total_length for p in parts)
    if n_docs == 0:
        raise ValueError("cannot build a bm25 index over an empty corpus")
    df: dict[str, int] = {}
    for part in parts:
        for term, count in zip(part.vocab, part.df.tolist(), strict=True):
            df[term] = df.get(term, 0) + count
    return GlobalStats(n_docs, max(total / n_docs, 1e-9), df)


def _load(work_dir: Path):
    with np.load(Path(work_dir) / POSTINGS_FILE) as f:
        arrays = f["term_ids"], f["doc_ids"], f["tfs"], f["lengths"]
    vocab = json.loads((Path(work_dir) / TERMS_FILE).read_text())
    return vocab, *arrays


def max_weight(
    work_dir: Path, df: np.ndarray, n_docs: int, avgdl: float, config: BM25Config
) -> float | None:
    """Round 2: the shard's largest weight under the global statistics (None: no postings)."""
    _vocab, term_ids, doc_ids, tfs, lengths = _load(work_dir)
    if len(tfs) == 0:
        return None
    return float(
        chunked_bm25_weights(term_ids, doc_ids, tfs, lengths, df, n_docs, avgdl, config).max()
    )


def global_scale(maxima: list[float | None], impact_bits: int) -> float:
    """The quantization scale the unsharded build would pick (``quantize``'s rule)."""
    present = [m for m in maxima if m is not None]
    vmax = max(present) if present else 1.0
    return vmax / ((1 << impact_bits) - 1)


def write_bm25_shard(
    work_dir: Path,
    out_dir: Path,
    config: BM25Config,
    df: np.ndarray,
    n_docs: int,
    avgdl: float,
    scale: float,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Round 3: the shard's ``bm25`` index with global weights and the global scale (the
    same files as ``build_bm25`` writes, so ``BM25Searcher.load`` opens it)."""
    vocab, term_ids, doc_ids, tfs, lengths = _load(work_dir)
    shard_docs = len(lengths)
    weights = chunked_bm25_weights(term_ids, doc_ids, tfs, lengths, df, n_docs, avgdl, config)
    impacts, scale = quantize(weights, config.impact_bits, scale=scale)
    postings = [term_ids, doc_ids, impacts]
    del weights, tfs, term_ids, doc_ids, impacts
    statistics = {"statistics": {"scope": "collection", "n_docs": n_docs}}
    stats = write_bm25_index(
        out_dir, vocab, postings, scale, shard_docs, avgdl, config, progress, statistics
    )
    return {**stats, "collection_docs": n_docs}
