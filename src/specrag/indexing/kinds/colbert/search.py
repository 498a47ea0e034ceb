"""Search the ``colbert`` kind: centroid candidates, centroid-interaction pruning, exact
MaxSim over the stored tokens (PLAID's stages, in vectorized numpy).

Per query: each query token probes its ``nprobe`` nearest centroids; the docs listed
under them are the candidates; when there are more than ``candidates`` of them they are
pruned by an approximate MaxSim in which every doc token is replaced by its centroid
(one lookup in the query-centroid score matrix); the survivors get exact MaxSim over
their stored codes. The ``allowed`` mask drops candidates before any scoring; when fewer
than ``k`` allowed candidates remain, every allowed doc is scored (so ``k`` allowed hits
come back whenever ``k`` allowed docs can match).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specrag.indexing.encoders.tokens import TokenEncoder
from specrag.indexing.kinds.colbert.build import open_token_store
from specrag.indexing.kinds.colbert.config import ColbertConfig
from specrag.indexing.kinds.colbert.maxsim import CHUNK_TOKENS, maxsim_store
from specrag.indexing.kinds.colbert.token_store import TokenStore
from specrag.types import DocMask, Hit


class ColbertSearcher:
    kind = "colbert"

    def __init__(
        self,
        index_dir: Path,
        config: ColbertConfig,
        doc_ids: np.ndarray,
        encoder: TokenEncoder | None = None,
    ):
        index_dir = Path(index_dir)
        self.config = config
        self.doc_ids = doc_ids
        self.store = open_token_store(index_dir)
        if self.store.n_docs != len(doc_ids):
            raise ValueError(
                f"colbert index has {self.store.n_docs} docs, the version {len(doc_ids)}"
            )
        self.centroids = np.load(index_dir / "centroids.npy")
        self.token_centroids = np.load(index_dir / "token_centroids.npy", mmap_mode="r")
        self.ivf_offsets = np.load(index_dir / "ivf_offsets.npy")
        self.ivf_docs = np.load(index_dir / "ivf_docs.npy")
        self._encoder = encoder

    @classmethod
    def load(cls, index_dir: Path, config: ColbertConfig, doc_ids: np.ndarray) -> ColbertSearcher:
        return cls(index_dir, config, doc_ids)

    @property
    def encoder(self) -> TokenEncoder:
        if self._encoder is None:
            cfg = self.config
            self._encoder = TokenEncoder(cfg.model, cfg.encoder, cfg.batch_size, dtype=cfg.dtype)
        return self._encoder

    @property
    def n_docs(self) -> int:
        return self.store.n_docs

    # -- search ---------------------------------------------------------------------------

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        return self.search_encoded(self.encoder.encode_queries(list(queries)), k, allowed)

    def search_encoded(
        self, query_tokens: list[np.ndarray], k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]:
        """Search with already-encoded queries (one (m, dim) matrix each)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.n_docs,):
                raise ValueError(f"allowed mask has shape {allowed.shape}, want ({self.n_docs},)")
        out = []
        for q in query_tokens:
            rows, scores = self.score_candidates(np.asarray(q, np.float32), k, allowed)
            out.append(self._top_hits(rows, scores, k))
        return out

    def score_candidates(
        self, q: np.ndarray, k: int, allowed: DocMask | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The candidate rows of one query and their exact MaxSim scores."""
        cands = self.candidates(q, k, allowed)
        return cands, maxsim_store(q, self.store, cands)

    def candidates(self, q: np.ndarray, k: int, allowed: DocMask | None) -> np.ndarray:
        cfg = self.config
        if self.n_docs <= cfg.exhaustive_max_docs:
            return self._all_allowed(allowed)
        centroid_scores = q @ self.centroids.T  # (m, n_centroids)
        nprobe = min(cfg.nprobe, centroid_scores.shape[1])
        probed = np.argpartition(-centroid_scores, nprobe - 1, axis=1)[:, :nprobe]
        cands = self._docs_in(np.unique(probed))
        if allowed is not None:
            cands = cands[allowed[cands]]
        if len(cands) < k:
            return self._all_allowed(allowed)
        keep = max(cfg.candidates, k)
        if len(cands) > keep:
            approx = self._centroid_interaction(centroid_scores, cands)
            top = np.lexsort((cands, -approx))[:keep]
            cands = np.sort(cands[top])
        return cands

    def _all_allowed(self, allowed: DocMask | None) -> np.ndarray:
        if allowed is None:
            return np.arange(self.n_docs, dtype=np.int64)
        return np.flatnonzero(allowed).astype(np.int64)

    def _docs_in(self, cells: np.ndarray) -> np.ndarray:
        starts = self.ivf_offsets[cells]
        lengths = self.ivf_offsets[cells + 1] - starts
        local = np.concatenate([[0], np.cumsum(lengths)])
        idx = np.repeat(starts - local[:-1], lengths) + np.arange(local[-1])
        return np.unique(self.ivf_docs[idx]).astype(np.int64)

    def _centroid_interaction(self, centroid_scores: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Approximate MaxSim: each doc token stands in for its centroid."""
        out = np.empty(len(docs), np.float32)
        lengths = self.store.offsets[docs + 1] - self.store.offsets[docs]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        start = 0
        while start < len(docs):
            limit = bounds[start] + CHUNK_TOKENS
            stop = max(start + 1, int(np.searchsorted(bounds, limit, side="right")) - 1)
            rows, local = self.store.token_rows(docs[start:stop])
            sims = centroid_scores[:, self.token_centroids[rows]].T  # (tokens, m)
            nonempty = np.flatnonzero(np.diff(local) > 0)
            block = np.full(stop - start, -np.inf, np.float32)
            if len(nonempty):
                block[nonempty] = np.maximum.reduceat(sims, local[nonempty], axis=0).sum(axis=1)
            out[start:stop] = block
            start = stop
        return out

    def _top_hits(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
        finite = np.isfinite(scores)
        rows, scores = rows[finite], scores[finite]
        order = np.lexsort((rows, -scores.astype(np.float64)))[:k]
        return [
            Hit(str(self.doc_ids[r]), float(s), {self.kind: float(s)})
            for r, s in zip(rows[order].tolist(), scores[order].tolist(), strict=True)
        ]

    # -- reference -----------------------------------------------------------------------

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        return self.reference_scores_encoded(self.encoder.encode_queries(list(queries)))

    def reference_scores_encoded(self, query_tokens: list[np.ndarray]) -> np.ndarray:
        return reference_maxsim(self.store, query_tokens)


def reference_maxsim(store: TokenStore, query_tokens: list[np.ndarray]) -> np.ndarray:
    """Exhaustive MaxSim over a token store, one document at a time over its decoded
    tokens (-inf when the document has no token): the simplest code, the tests' truth."""
    out = np.full((len(query_tokens), store.n_docs), -np.inf, np.float32)
    for doc in range(store.n_docs):
        tokens = store.doc_tokens(doc)
        if len(tokens) == 0:
            continue
        for qi, q in enumerate(query_tokens):
            if len(q) == 0:  # an empty query matches nothing
                continue
            out[qi, doc] = (np.asarray(q, np.float32) @ tokens.T).max(axis=1).sum()
    return out
