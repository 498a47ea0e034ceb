"""Late-interaction (MaxSim) reranking of a first stage's top-N hits.

Document token vectors come from the version's ``colbert`` token store when it has one
(no encoding at query time), otherwise the candidates' texts are encoded on the fly.
The MaxSim score can be fused with first-stage scores: each is z-normalized over the
reranked list and added, ``z(maxsim) + sum_name w_name * z(score_name)`` where ``first``
names the hit's (fused) ``score`` and any other name a retriever's raw score in
``hit.scores`` (a hit that retriever did not return gets the list's lowest such score).
The default weights are the recipe's (``retrieval/recipe.py``).
"""

from __future__ import annotations

import numpy as np

from specrag.indexing.encoders.tokens import TokenEncoder
from specrag.indexing.kinds.colbert.maxsim import maxsim_dense, maxsim_store
from specrag.indexing.kinds.colbert.token_store import TokenStore
from specrag.rerank.base import check_lengths, reorder
from specrag.retrieval.fusion import zscore
from specrag.types import Hit


class MaxSimReranker:
    name = "maxsim"

    def __init__(
        self,
        encoder: TokenEncoder,
        store: TokenStore | None = None,
        fusion_weights: dict[str, float] | None = None,
    ):
        weights = dict(fusion_weights or {})
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"fusion weights must be >= 0, got {weights}")
        self.encoder = encoder
        self.store = store
        self.fusion_weights = {name: w for name, w in weights.items() if w > 0}

    @property
    def needs_texts(self) -> bool:
        """True when ``rerank`` needs the hits' texts (no token store to read rows from)."""
        return self.store is None

    def maxsim_scores(
        self, query: str, texts: list[str] | None = None, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw MaxSim of ``query`` against the candidates (by store rows or by texts)."""
        q = self.encoder.encode_queries([query])[0]
        if rows is not None and self.store is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if len(rows) and (rows.min() < 0 or rows.max() >= self.store.n_docs):
                raise ValueError("rerank rows fall outside the token store")
            return maxsim_store(q, self.store, rows)
        if texts is None:
            raise ValueError("MaxSim rerank needs the candidates' texts (no token store rows)")
        docs = self.encoder.encode_documents(list(texts))
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
        tokens = np.concatenate(docs) if docs else np.zeros((0, 1), np.float32)
        return maxsim_dense(q, tokens, offsets)

    def rerank(
        self,
        query: str,
        hits: list[Hit],
        texts: list[str] | None = None,
        rows: np.ndarray | None = None,
        k: int | None = None,
    ) -> list[Hit]:
        if not hits:
            return []
        check_lengths(hits, texts, rows)
        maxsim = self.maxsim_scores(query, texts, rows).astype(np.float64)
        finite = np.isfinite(maxsim)
        if not finite.any():
            # A query with no tokens (blank, control characters) or candidates without
            # any: MaxSim tells nothing, so the first stage's order stands.
            return list(hits[:k] if k is not None else hits)
        # A candidate without tokens gets the list's lowest MaxSim, not -inf (which would
        # turn every fused score into -inf or NaN).
        maxsim = np.where(finite, maxsim, maxsim[finite].min())
        final = maxsim
        if self.fusion_weights:
            final = zscore(maxsim)
            for name, weight in self.fusion_weights.items():
                final = final + weight * zscore(_first_stage_scores(hits, name))
        return reorder(hits, final, {"maxsim": maxsim}, k)


def _first_stage_scores(hits: list[Hit], name: str) -> np.ndarray:
    """``first``: the hits' ranking score; else a retriever's raw score, the list's lowest
    where that retriever did not return the hit (0 when it returned none)."""
    if name == "first":
        return np.array([h.score for h in hits], dtype=np.float64)
    values = np.array([h.scores.get(name, np.nan) for h in hits], dtype=np.float64)
    present = ~np.isnan(values)
    floor = values[present].min() if present.any() else 0.0
    return np.where(present, values, floor)
