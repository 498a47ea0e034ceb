"""The ``bm25`` kind: BM25 over the Snowball analyzer, stored as a block-max impact index.

BM25 as Lucene >= 8 scores it (no ``k1 + 1`` factor, which is a constant per query)::

    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))
    w(t, d)     = idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))

with ``dl`` the number of analyzed terms of the document (stopwords removed). Each
``w(t, d)`` is quantized to an 8-bit impact (scale recorded in the manifest); a query's
score is ``scale * sum_t qtf(t) * impact(t, d)``.
"""

from __future__ import annotations

from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from specrag.atomic import write_json_atomic
from specrag.indexing.kinds.bm25.analyzer import Analyzer
from specrag.indexing.kinds.bm25.config import BM25Config
from specrag.indexing.kinds.impact.index import ImpactIndex, quantize, term_major
from specrag.indexing.kinds.impact.reorder import reorder_triples
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
    """Term frequencies of every document, doc-major: (vocab list, term_ids int32,
    doc_ids int32, tfs int32, doc_lengths int64). The postings grow in flat int32 buffers,
    not per-document arrays, whose final concatenation held every posting twice."""
    vocab: dict[str, int] = {}
    term_ids = array("i")
    tfs = array("i")
    n_terms_of = array("i")
    lengths = array("q")
    total = len(corpus)
    for row, doc in enumerate(corpus):
        terms = analyzer(doc.full_text())
        counts = Counter(terms)
        term_ids.extend(vocab.setdefault(t, len(vocab)) for t in counts)
        tfs.extend(counts.values())
        n_terms_of.append(len(counts))
        lengths.append(len(terms))
        if row % 1000 == 0:
            progress(row, total, "bm25: analyze")
    progress(total, total, "bm25: analyze")
    n_terms_of = np.frombuffer(n_terms_of, dtype=np.int32)
    return (
        list(vocab),
        np.frombuffer(term_ids, dtype=np.int32),
        np.repeat(np.arange(len(n_terms_of), dtype=np.int32), n_terms_of),
        np.frombuffer(tfs, dtype=np.int32),
        np.frombuffer(lengths, dtype=np.int64),
    )


#: Postings whose BM25 weights are computed at a time (float64 temporaries stay ~100 MB).
WEIGHT_CHUNK = 1 << 22


def chunked_bm25_weights(
    term_ids: np.ndarray, doc_ids: np.ndarray, tfs: np.ndarray, lengths: np.ndarray,
    df: np.ndarray, n_docs: int, avgdl: float, config: BM25Config,
) -> np.ndarray:  # fmt: skip
    """BM25 weights of doc-major postings under (``df``, ``n_docs``, ``avgdl``), computed
    ``WEIGHT_CHUNK`` postings at a time (the same values as all at once, without several
    float64 temporaries per posting). Shards pass collection-wide statistics."""
    weights = np.empty(len(tfs), dtype=np.float64)
    for lo in range(0, len(tfs), WEIGHT_CHUNK):
        part = slice(lo, lo + WEIGHT_CHUNK)
        weights[part] = bm25_weights(
            tfs[part],
            lengths[doc_ids[part]],
            df[term_ids[part]],
            n_docs,
            avgdl,
            config.k1,
            config.b,
        )
    return weights


def bm25_impacts(
    term_ids: np.ndarray, doc_ids: np.ndarray, tfs: np.ndarray, lengths: np.ndarray,
    n_terms: int, config: BM25Config,
) -> tuple[np.ndarray, float, float]:  # fmt: skip
    """Quantized BM25 impacts of the postings, their scale and avgdl."""
    n_docs = len(lengths)
    avgdl = max(float(lengths.mean()), 1e-9)
    df = np.bincount(term_ids, minlength=n_terms)
    weights = chunked_bm25_weights(term_ids, doc_ids, tfs, lengths, df, n_docs, avgdl, config)
    impacts, scale = quantize(weights, config.impact_bits)
    return impacts, scale, avgdl


def write_bm25_index(
    out_dir: Path, vocab: list[str], postings: list[np.ndarray], scale: float, n_docs: int,
    avgdl: float, config: BM25Config, progress: Progress = no_progress,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Reorder (when configured), lay out and write a bm25 index of ``n_docs`` rows from
    doc-major quantized ``postings`` ([term_ids, doc_ids, impacts]; the list is emptied, so
    the caller's arrays are freed as the layout replaces them): the files
    ``BM25Searcher.load`` opens. Shared by the kind's build and the sharded build."""
    analyzer_name = Analyzer.name
    term_ids, doc_ids, impacts = postings
    postings.clear()
    term_ids, doc_ids, impacts, perm = reorder_triples(
        config.reorder, term_ids, doc_ids, impacts, n_docs, len(vocab),
        leaf_size=config.block_size, iterations=config.bp_iterations, progress=progress,
    )  # fmt: skip
    offsets, docs, impacts = term_major(term_ids, doc_ids, impacts, len(vocab))
    del term_ids, doc_ids
    meta = {"encoder": ENCODER, "analyzer": analyzer_name, "k1": config.k1, "b": config.b}
    meta.update({"avgdl": avgdl, **(extra_meta or {})})
    index = ImpactIndex.from_postings(
        n_docs, offsets, docs, impacts,
        block_size=config.block_size, scale=scale, perm=perm, meta=meta,
    )  # fmt: skip
    write_json_atomic(Path(out_dir) / VOCAB_FILE, vocab)
    stats = index.save(out_dir)
    progress(n_docs, n_docs, "bm25: written")
    return {**stats, "avgdl": avgdl, "analyzer": analyzer_name}


def build_bm25(
    corpus: Corpus, out_dir: Path, config: BM25Config, progress: Progress = no_progress
) -> dict[str, Any]:
    vocab, term_ids, doc_ids, tfs, lengths = analyze_corpus(corpus, Analyzer(), progress)
    n_docs = len(lengths)
    if n_docs == 0:
        raise ValueError("cannot build a bm25 index over an empty corpus")
    impacts, scale, avgdl = bm25_impacts(term_ids, doc_ids, tfs, lengths, len(vocab), config)
    postings = [term_ids, doc_ids, impacts]
    del tfs, term_ids, doc_ids, impacts
    return write_bm25_index(out_dir, vocab, postings, scale, n_docs, avgdl, config, progress)
