"""Late-interaction (MaxSim) reranking of a first stage's top-N hits.

Document token vectors come from the version's ``colbert`` token store when it has one
(no encoding at query time), otherwise the candidates' texts are encoded on the fly.
The MaxSim score can be fused with first-stage scores: each is z-normalized over the
reranked list and added, ``z(maxsim) + sum_name w_name * z(score_name)`` where ``first``
names the hit's (fused) ``score`` and any other name a retriever's raw score in
``hit.scores`` (a hit that retriever did not return gets the list's lowest such score).
The default weights are tuned on SciFact's *train* queries (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

from specrag.indexing.maxsim import maxsim_dense, maxsim_store
from specrag.indexing.token_encoder import TokenEncoder
from specrag.indexing.token_store import TokenStore
from specrag.types import Hit

#: Tuned on SciFact train queries (hybrid bm25+dense RRF first stage, MiniLM tokens, int8).
DEFAULT_FUSION_WEIGHTS: dict[str, float] = {"dense": 0.4, "bm25": 0.8}


class MaxSimReranker:
    name = "maxsim"

    def __init__(
        self,
        encoder: TokenEncoder,
        store: TokenStore | None = None,
        fusion_weights: dict[str, float] | None = None,
    ):
        weights = dict(DEFAULT_FUSION_WEIGHTS if fusion_weights is None else fusion_weights)
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
        _check_lengths(hits, texts, rows)
        maxsim = self.maxsim_scores(query, texts, rows).astype(np.float64)
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


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-list standardization; -inf (cannot match) stays the lowest."""
    finite = np.isfinite(x)
    if finite.sum() < 2:
        return np.where(finite, 0.0, -np.inf)
    mu, sd = x[finite].mean(), x[finite].std()
    return np.where(finite, (x - mu) / (sd if sd > 0 else 1.0), -np.inf)


def reorder(
    hits: list[Hit], final: np.ndarray, extra: dict[str, np.ndarray], k: int | None
) -> list[Hit]:
    """New hits sorted by ``final`` (ties keep the first stage's order), top ``k``."""
    order = np.lexsort((np.arange(len(hits)), -np.asarray(final, dtype=np.float64)))
    if k is not None:
        order = order[:k]
    out = []
    for i in order.tolist():
        scores = dict(hits[i].scores)
        scores.update({name: float(v[i]) for name, v in extra.items()})
        out.append(Hit(hits[i].doc_id, float(final[i]), scores))
    return out


def _check_lengths(hits, texts, rows) -> None:
    for name, seq in (("texts", texts), ("rows", rows)):
        if seq is not None and len(seq) != len(hits):
            raise ValueError(f"{name} has {len(seq)} entries for {len(hits)} hits")
