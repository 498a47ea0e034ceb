"""The ``colbert`` build's self-check of its centroid stage (``kinds/selfcheck.py``): the
first ``QUERY_TOKENS`` stored tokens of sampled documents are the queries; the approximate
top-10 is the searcher's (centroid probe, centroid-interaction pruning, MaxSim over the
candidates), the exact top-10 MaxSim over every document. Skipped when the corpus is small
enough to be searched exhaustively (``exhaustive_max_docs``): then search is exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.kinds.colbert.config import ColbertConfig
from specrag.indexing.kinds.colbert.maxsim import maxsim_store_many
from specrag.indexing.kinds.selfcheck import K, recall_at_k, record, sample_rows

#: Tokens of a sampled document used as its query (queries are short).
QUERY_TOKENS = 16


def colbert_self_check(index_dir: Path, config: ColbertConfig) -> dict[str, Any] | None:
    from specrag.indexing.kinds.colbert.build import open_token_store
    from specrag.indexing.kinds.colbert.search import ColbertSearcher

    store = open_token_store(index_dir)
    n = store.n_docs
    if n <= config.exhaustive_max_docs or config.self_check_queries == 0:
        return None
    searcher = ColbertSearcher(index_dir, config, np.arange(n))  # ids unused below
    everyone = np.arange(n, dtype=np.int64)
    approx, queries = [], []
    for doc in sample_rows(n, config.self_check_queries, config.seed).tolist():
        q = store.doc_tokens(doc)[:QUERY_TOKENS].astype(np.float32)
        if len(q) == 0:
            continue
        rows, scores = searcher.score_candidates(q, K, None)
        approx.append(_top(rows, scores))
        queries.append(q)
    # The exact reference: all queries in one pass over the codes.
    exact = [_top(everyone, row) for row in maxsim_store_many(queries, store, everyone)]
    return record(
        recall_at_k(approx, exact), len(approx), config.self_check_floor, "centroid stage"
    )


def _top(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    rows, scores = rows[finite], scores[finite]
    return rows[np.lexsort((rows, -scores.astype(np.float64)))[:K]]
