"""The ``bm25`` part of a delta segment (``indexing/delta.py``): an ordinary bm25 index
over the delta's documents, weighted with the *base version's* collection statistics.

A BM25 weight depends on the collection through ``N``, ``avgdl`` and ``df_t``, and its
8-bit impact on the index's quantization scale. The delta freezes all four at the base
(as a Lucene or Elasticsearch shard scores with its own statistics until a merge):

- ``N`` and ``avgdl``: the base's (superseded and deleted base documents still count, as
  deleted documents count in Lucene until their segment merges);
- ``df_t`` of a term the base holds: the base's (read from its postings: one posting per
  document holding the term), not increased by the delta's documents;
- ``df_t`` of a term the base never saw: the number of delta documents holding it (at most
  ``N``), i.e. the value the next full build gives it when no other document brings it;
- the scale: the base's, so delta and base scores are in the same units and merge by
  value. A weight above the base's largest saturates at the top impact (counted in the
  manifest as ``saturated``).

The weights come from the kind's own ``chunked_bm25_weights`` and the files from its
``write_bm25_index``, as the sharded build does with collection-wide statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.kinds.bm25.analyzer import Analyzer
from specrag.indexing.kinds.bm25.build import (
    VOCAB_FILE,
    analyze_corpus,
    chunked_bm25_weights,
    write_bm25_index,
)
from specrag.indexing.kinds.bm25.config import BM25Config
from specrag.indexing.kinds.impact.index import META_FILE, quantize
from specrag.types import Corpus


@dataclass(frozen=True)
class FrozenStatistics:
    """A bm25 index's collection statistics and quantization scale."""

    n_docs: int
    avgdl: float
    df: dict[str, int]
    scale: float

    @classmethod
    def of_index(cls, index_dir: Path) -> FrozenStatistics:
        """Read from a built bm25 index: ``df`` is each term's postings count (the
        offsets alone are read, not the postings)."""
        index_dir = Path(index_dir)
        header = json.loads((index_dir / META_FILE).read_text())
        vocab = json.loads((index_dir / VOCAB_FILE).read_text())
        df = np.diff(np.load(index_dir / "offsets.npy", mmap_mode="r"))
        return cls(
            n_docs=int(header["n_docs"]),
            avgdl=float(header["meta"]["avgdl"]),
            df=dict(zip(vocab, df.tolist(), strict=True)),
            scale=float(header["scale"]),
        )

    def df_of(self, vocab: list[str], local_df: np.ndarray) -> np.ndarray:
        """Document frequencies of ``vocab`` (a delta's terms): the base's, else the
        delta's own count (``local_df``) capped at ``n_docs``."""
        local = np.minimum(np.asarray(local_df, np.int64), self.n_docs)
        return np.array(
            [self.df.get(t, 0) or n for t, n in zip(vocab, local.tolist(), strict=True)],
            dtype=np.int64,
        )


def write_bm25_delta(
    corpus: Corpus, out_dir: Path, base_dir: Path, config: BM25Config
) -> dict[str, Any]:
    """Write the bm25 index of ``corpus`` (the delta's documents, non-empty) into
    ``out_dir`` with the statistics of the base index in ``base_dir``."""
    stats = FrozenStatistics.of_index(base_dir)
    vocab, term_ids, doc_ids, tfs, lengths = analyze_corpus(corpus, Analyzer())
    df = stats.df_of(vocab, np.bincount(term_ids, minlength=len(vocab)))
    weights = chunked_bm25_weights(
        term_ids, doc_ids, tfs, lengths, df, stats.n_docs, stats.avgdl, config
    )
    top = (1 << config.impact_bits) - 1
    saturated = int(np.count_nonzero(np.rint(weights / stats.scale) > top))
    impacts, scale = quantize(weights, config.impact_bits, scale=stats.scale)
    del weights, tfs
    postings = [term_ids, doc_ids, impacts]
    del term_ids, doc_ids, impacts
    statistics = {"scope": "base", "n_docs": stats.n_docs}
    written = write_bm25_index(
        out_dir, vocab, postings, scale, len(lengths), stats.avgdl, config,
        extra_meta={"statistics": statistics},
    )  # fmt: skip
    unseen = sum(1 for t in vocab if t not in stats.df)
    return {**written, "statistics": statistics, "unseen_terms": unseen, "saturated": saturated}
