"""The ``dense`` build's self-check of an HNSW/IVF index (``kinds/selfcheck.py``): the
stored embeddings of sampled documents are the queries; the approximate top-10 comes from
the searcher itself (its search knobs, its engine), the exact top-10 from faiss's
brute-force ``knn`` over the same embeddings."""

from __future__ import annotations

from typing import Any

import numpy as np

from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.indexing.kinds.selfcheck import K, recall_at_k, record, sample_rows

#: Queries per exact brute-force batch (bounds the (queries x docs) score block).
_BATCH = 32


def dense_self_check(emb: np.ndarray, index, config: DenseConfig) -> dict[str, Any] | None:
    """The manifest's ``self_check`` entry, or None for an exact (flat) index or when
    ``self_check_queries`` is 0."""
    import faiss

    from specrag.indexing.kinds.dense.search import DenseSearcher

    if config.index == "flat" or config.self_check_queries == 0:
        return None
    n = len(emb)
    rows = sample_rows(n, config.self_check_queries)
    queries = np.ascontiguousarray(emb[rows], dtype=np.float32)
    searcher = DenseSearcher(emb, index, config, np.arange(n))
    approx = [r for r, _ in searcher.search_rows(queries, K)]
    corpus = np.ascontiguousarray(emb, dtype=np.float32)
    exact = []
    for lo in range(0, len(queries), _BATCH):
        _, ids = faiss.knn(queries[lo : lo + _BATCH], corpus, min(K, n), faiss.METRIC_INNER_PRODUCT)
        exact += list(ids)
    return record(recall_at_k(approx, exact), len(rows), config.self_check_floor, config.index)
