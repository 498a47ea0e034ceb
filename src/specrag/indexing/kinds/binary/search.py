"""Search the ``binary`` kind: Hamming candidates, rescored with the float query against
the int8 store.

Per query: ``n_cand = max(rescore_factor * k, min_candidates)`` Hamming neighbours of the
query's sign bits, each rescored as ``q . dequantize(int8 row)``, best k kept.

- Exactness: ``reference_scores`` is that rescoring function applied to every document.
  Whenever ``n_cand`` >= the number of allowed documents the Hamming stage is skipped and
  every allowed document is rescored, so ``search`` equals the reference top-k exactly;
  the default (``min_candidates=400``) is therefore exact on corpora up to 400 documents.
  Beyond that, the Hamming stage is the approximation (measured in docs/benchmarks.md).
- Filtering: ``flat`` and ``hnsw`` pass an ``IDSelectorBitmap`` to faiss (IndexBinaryFlat
  takes it in plain SearchParameters, IndexBinaryHNSW in SearchParametersHNSW);
  faiss's IndexBinaryIVF rejects selectors, so ``ivf`` over-fetches candidates in
  proportion to the mask's selectivity and drops the disallowed ones. Any query left with
  fewer than min(k, allowed) candidates is answered by rescoring every allowed document.
- Engine: the config's ``backend`` / ``device``. The ``torch`` engine
  (``torchsearch/binary.py``; on cuda by default when there is one) runs the same two
  stages on the device with the mask inside the scan; faiss has no GPU path here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from specrag.indexing.kinds.binary.build import (
    CALIBRATION_FILE,
    CODES_FILE,
    INDEX_FILE,
    INT8_FILE,
    META_FILE,
    binarize,
    dequantize,
    make_binary_index,
)
from specrag.indexing.kinds.binary.config import BinaryConfig
from specrag.indexing.kinds.dense.search import EmbeddingSearcher
from specrag.indexing.kinds.topk import bitmap_selector, check_k, check_mask, top_k
from specrag.indexing.kinds.torchsearch.device import resolve_backend
from specrag.types import DocMask


class BinarySearcher(EmbeddingSearcher):
    kind = "binary"

    def __init__(self, codes, int8, calibration, index, config: BinaryConfig, doc_ids):
        if not (len(codes) == len(int8) == len(doc_ids)):
            raise ValueError(
                f"binary index holds {len(codes)} codes and {len(int8)} int8 rows "
                f"but the version has {len(doc_ids)} ids"
            )
        self.codes = codes
        self.int8 = int8
        self.calibration = calibration
        self.config = config
        self.doc_ids = doc_ids
        self._lo, self._step = calibration
        self.backend = resolve_backend(config.backend, config.device, config.index, faiss_gpu=False)
        self._torch = None
        if self.backend.engine == "torch":
            from specrag.indexing.kinds.torchsearch.binary import TorchBinary

            self._torch = TorchBinary(
                codes, int8, calibration, self.backend.device, config.torch_memory_mib
            )
        elif index is None:
            index = make_binary_index(codes, config)
        self.index = index

    @classmethod
    def load(cls, index_dir: Path, config: BinaryConfig, doc_ids: np.ndarray) -> BinarySearcher:
        import faiss

        index_dir = Path(index_dir)
        meta = json.loads((index_dir / META_FILE).read_text())
        if meta["index"] != config.index:
            raise ValueError(
                f"{index_dir}: built as {meta['index']!r}, config says {config.index!r}"
            )
        codes = np.load(index_dir / CODES_FILE, mmap_mode="r")
        int8 = np.load(index_dir / INT8_FILE, mmap_mode="r")
        calibration = np.load(index_dir / CALIBRATION_FILE)
        if int8.shape != (meta["n_docs"], meta["dim"]) or calibration.shape != (2, meta["dim"]):
            raise ValueError(f"{index_dir}: stored arrays disagree with meta.json")
        # A flat Hamming index is made from the codes by the constructor (or not at all,
        # when the torch engine searches them).
        index = (
            None if config.index == "flat" else faiss.read_index_binary(str(index_dir / INDEX_FILE))
        )
        return cls(codes, int8, calibration, index, config, doc_ids)

    def search_rows(
        self, query_emb: np.ndarray, k: int, allowed: DocMask | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, scores) per query, best first."""
        check_k(k)
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.int8.shape[1]:
            raise ValueError(
                f"query embeddings must have shape (n, {self.int8.shape[1]}), got {q.shape}"
            )
        mask = check_mask(allowed, self.n_docs)
        n_allowed = self.n_docs if mask is None else int(mask.sum())
        if n_allowed == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in q]
        kk = min(k, n_allowed)
        n_cand = max(self.config.rescore_factor * k, self.config.min_candidates)
        if self._torch is not None:
            return self._torch.search(q, binarize(q), kk, n_cand, mask)
        allowed_rows = np.arange(self.n_docs) if mask is None else np.flatnonzero(mask)
        if n_cand >= n_allowed:  # rescore everything allowed: exact
            return self._rescore_rows(q, allowed_rows, kk)
        candidates = self._hamming_candidates(q, n_cand, mask, n_allowed)
        results = []
        for qi, rows in enumerate(candidates):
            if len(rows) < kk:  # the Hamming stage came back short: rescore all allowed
                rows = allowed_rows
            results.append(top_k(self.rescore(q[qi], rows), kk, rows))
        return results

    def rescore(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``query . dequantize(int8[rows])`` without materializing the float vectors:
        ``c . (q * step) + (q . lo + 128 * sum(q * step))``."""
        weighted = query * self._step
        offset = float(query @ self._lo) + 128.0 * float(weighted.sum())
        return np.asarray(self.int8[rows], dtype=np.float32) @ weighted + offset

    def _rescore_rows(self, q: np.ndarray, rows: np.ndarray, k: int):
        return [top_k(self.rescore(q[qi], rows), k, rows) for qi in range(len(q))]

    def _hamming_candidates(
        self, q: np.ndarray, n_cand: int, mask: np.ndarray | None, n_allowed: int
    ) -> list[np.ndarray]:
        import faiss

        qcodes = binarize(q)
        if self.config.index == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.config.ivf_nprobe, self.index.nlist))
            fetch = n_cand
            if mask is not None:  # no selector support: over-fetch, then filter
                fetch = min(
                    self.n_docs,
                    math.ceil(n_cand * self.config.ivf_overfetch * self.n_docs / n_allowed),
                )
            _, ids = self.index.search(qcodes, fetch, params=params)
            out = []
            for row in ids:
                row = row[row >= 0]
                if mask is not None:
                    row = row[mask[row]][:n_cand]
                out.append(row)
            return out
        if self.config.index == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.hnsw_ef_search, n_cand))
        else:
            params = faiss.SearchParameters()
        selector, _bitmap = bitmap_selector(mask) if mask is not None else (None, None)
        if selector is not None:
            params.sel = selector
        if self.config.index == "flat":
            # One call per query: faiss's batched binary flat search was slower per query
            # than single calls here (SciFact, 300 queries, k=400: 276 vs 57 us).
            ids = [
                self.index.search(qcodes[i : i + 1], n_cand, params=params)[1][0]
                for i in range(len(q))
            ]
        else:
            ids = self.index.search(qcodes, n_cand, params=params)[1]
        return [row[row >= 0] for row in ids]

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        """The rescoring function over every document: float query . dequantized int8."""
        return self.encode(queries) @ dequantize(np.asarray(self.int8), self.calibration).T
