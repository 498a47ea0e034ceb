"""Search the ``dense`` kind: faiss inner product over bi-encoder embeddings.

Filtering happens inside the search. A mask that allows few rows is answered by an
exact scan of just those rows (a gather and one matrix product: cheaper than a faiss
scan with a selector and, unlike HNSW/IVF under a selective filter, it always returns
k); otherwise faiss searches with an ``IDSelectorBitmap`` (``SearchParametersHNSW`` /
``SearchParametersIVF`` for the approximate indexes). When an approximate index still
returns fewer than min(k, allowed) hits, that query is completed by the exact scan, so
``flat`` always returns exactly min(k, allowed) hits and the others never return fewer.
The switch-over point was measured on SciFact (docs/benchmarks.md).

Where it runs is the config's ``backend`` / ``device`` (``torchsearch/device.py``): with
faiss-gpu and a GPU, unfiltered flat/IVF searches run on a GPU copy of the index and
filtered ones stay on the CPU index (faiss GPU indexes take no IDSelector); with the
``torch`` engine (cuda without faiss-gpu, or asked for) a flat index is searched exactly
on the device, every mask applied inside the scan (``torchsearch/flat.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.encoders.embedding import encode_queries
from specrag.indexing.encoders.models import load_model
from specrag.indexing.encoders.precision import encode_precision, model_device
from specrag.indexing.kinds.dense.build import EMBEDDINGS_FILE, INDEX_FILE, META_FILE
from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.indexing.kinds.topk import (
    bitmap_selector,
    check_k,
    check_mask,
    sort_hits,
    to_hits,
    top_k,
)
from specrag.indexing.kinds.torchsearch.device import resolve_backend
from specrag.types import DocMask, Hit

#: faiss GPU indexes answer at most this many neighbours per query.
GPU_MAX_K = 2048


class EmbeddingSearcher:
    kind: str
    config: Any  # has model, batch_size, normalize
    doc_ids: np.ndarray

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    def encode(self, queries: list[str]) -> np.ndarray:
        """Query embeddings, as the index's documents were encoded."""
        model = load_model(self.config.model)
        with encode_precision(model_device(model), self.config.dtype):
            return encode_queries(
                model, queries, batch_size=self.config.batch_size, normalize=self.config.normalize
            )

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        check_k(k)
        mask = check_mask(allowed, self.n_docs)
        if mask is not None and not mask.any():
            return [[] for _ in queries]
        return self.search_embeddings(self.encode(queries), k, allowed)

    def search_embeddings(
        self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]:
        """Search with precomputed query embeddings (fusion, benchmarks)."""
        return [
            to_hits(r, s, self.doc_ids, self.kind)
            for r, s in self.search_rows(query_emb, k, allowed)
        ]

    def search_rows(
        self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError


class DenseSearcher(EmbeddingSearcher):
    kind = "dense"

    def __init__(self, embeddings: np.ndarray, index, config: DenseConfig, doc_ids: np.ndarray):
        if len(embeddings) != len(doc_ids):
            raise ValueError(
                f"dense index holds {len(embeddings)} vectors but the version has {len(doc_ids)} ids"
            )
        self.embeddings = embeddings
        self.config = config
        self.doc_ids = doc_ids
        self.backend = resolve_backend(config.backend, config.device, config.index)
        self._torch = None
        self._gpu_index = self._gpu_resources = None
        if self.backend.engine == "torch":
            from specrag.indexing.kinds.torchsearch.flat import TorchFlat

            self._torch = TorchFlat(embeddings, self.backend.device, config.torch_memory_mib)
            index = None  # the torch engine holds the vectors; no faiss copy in memory
        elif index is None:
            index = _flat_index(embeddings)
        self.index = index
        if self.backend.engine == "faiss-gpu":
            self._gpu_index, self._gpu_resources = _to_gpu(index)

    @classmethod
    def load(cls, index_dir: Path, config: DenseConfig, doc_ids: np.ndarray) -> DenseSearcher:
        import faiss

        index_dir = Path(index_dir)
        meta = json.loads((index_dir / META_FILE).read_text())
        emb = np.load(index_dir / EMBEDDINGS_FILE, mmap_mode="r")
        if emb.shape != (meta["n_docs"], meta["dim"]):
            raise ValueError(f"{index_dir}: embeddings shape {emb.shape} disagrees with meta.json")
        if meta["index"] != config.index:
            raise ValueError(
                f"{index_dir}: built as {meta['index']!r}, config says {config.index!r}"
            )
        # A flat index is made from the embeddings by the constructor (or not at all, when
        # the torch engine searches them).
        index = None if config.index == "flat" else faiss.read_index(str(index_dir / INDEX_FILE))
        return cls(emb, index, config, doc_ids)

    def search_rows(
        self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, scores) per query, best first: the search without the id lookup."""
        check_k(k)
        q = _check_queries(query_emb, self.embeddings.shape[1])
        mask = check_mask(allowed, self.n_docs)
        n_allowed = self.n_docs if mask is None else int(mask.sum())
        if n_allowed == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in q]
        kk = min(k, n_allowed)
        if self._torch is not None:
            return self._torch.search(q, kk, mask)
        cfg = self.config
        if mask is not None and n_allowed <= max(
            cfg.exact_filter_min_rows, cfg.exact_filter_fraction * self.n_docs
        ):
            return exact_search(self.embeddings, q, kk, np.flatnonzero(mask))
        scores, rows = self._faiss_search(q, kk, mask)
        results = []
        for qi in range(len(q)):
            r, s = sort_hits(rows[qi], scores[qi])
            if len(r) < kk:  # an approximate index came back short: complete exactly
                allowed_rows = np.arange(self.n_docs) if mask is None else np.flatnonzero(mask)
                r, s = exact_search(self.embeddings, q[qi : qi + 1], kk, allowed_rows)[0]
            results.append((r, s))
        return results

    def _faiss_search(self, q: np.ndarray, k: int, mask: np.ndarray | None):
        import faiss

        if mask is None and self._gpu_index is not None and k <= GPU_MAX_K:
            return self._gpu_index.search(q, k)
        selector, _bitmap = bitmap_selector(mask) if mask is not None else (None, None)
        if self.config.index == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.hnsw_ef_search, k))
        elif self.config.index == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.config.ivf_nprobe, self.index.nlist))
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        return self.index.search(q, k, params=params)

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        """Inner product of each query with every stored float embedding."""
        return self.encode(queries) @ np.asarray(self.embeddings).T


def exact_search(
    emb: np.ndarray, q: np.ndarray, k: int, rows: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact top-k among ``rows``: one gather, one matrix product."""
    scores = q @ np.asarray(emb[rows]).T
    return [top_k(scores[qi], k, rows) for qi in range(len(q))]


def _check_queries(query_emb: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(query_emb, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"query embeddings must have shape (n, {dim}), got {q.shape}")
    return q


def _flat_index(emb: np.ndarray):
    """A faiss flat inner-product index over the (memory-mapped) embeddings."""
    import faiss

    index = faiss.IndexFlatIP(emb.shape[1])
    for start in range(0, len(emb), 65536):
        index.add(np.ascontiguousarray(emb[start : start + 65536], dtype=np.float32))
    return index


def _to_gpu(index):
    """A faiss-gpu copy of a flat/IVF index (the backend resolved to ``faiss-gpu``)."""
    import faiss

    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), resources
