"""Rerankers: top-N hits in, top-k hits out, one small interface.

``make_reranker(method, model, version)`` builds one; ``reranker.rerank(query, hits,
texts=..., rows=..., k=...)`` returns new hits sorted by the reranker's score, each keeping
its first-stage ``scores`` plus the reranker's own (``maxsim`` or ``cross-encoder``).
``rows`` are the hits' internal rows in ``version`` (the MaxSim reranker reads the
version's ``colbert`` token store through them); ``texts`` are the hits' texts (needed by
the cross-encoder, and by MaxSim when the version has no token store for its model).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from specrag.types import Hit

DEFAULT_MAXSIM_MODEL = "all-MiniLM-L6-v2"


class Reranker(Protocol):
    name: str
    #: Whether ``rerank`` needs ``texts`` (else ``rows`` suffice).
    needs_texts: bool

    def rerank(
        self,
        query: str,
        hits: list[Hit],
        texts: list[str] | None = None,
        rows: np.ndarray | None = None,
        k: int | None = None,
    ) -> list[Hit]: ...


def make_reranker(method: str, model: str | None = None, version: Any | None = None) -> Reranker:
    """A reranker for ``method`` (``maxsim`` | ``cross-encoder``). ``version`` (an
    OpenVersion) lets MaxSim reuse the ``colbert`` kind's token store when its model matches."""
    if method == "cross-encoder":
        from specrag.rerank.cross_encoder import CrossEncoderReranker

        if not model:
            raise ValueError("cross-encoder rerank needs `model` (a CrossEncoder name or path)")
        return CrossEncoderReranker(model)
    if method == "maxsim":
        from specrag.indexing.token_encoder import TokenEncoder
        from specrag.rerank.maxsim import MaxSimReranker

        colbert = _colbert_entry(version)
        if colbert is not None and (model is None or model == colbert["config"]["model"]):
            from specrag.indexing.colbert import open_token_store

            cfg = colbert["config"]
            encoder = TokenEncoder(cfg["model"], cfg.get("encoder", "auto"))
            return MaxSimReranker(encoder, open_token_store(version.path / "colbert"))
        return MaxSimReranker(TokenEncoder(model or DEFAULT_MAXSIM_MODEL))
    raise ValueError(f"unknown rerank method {method!r}; known: maxsim, cross-encoder")


def _colbert_entry(version: Any | None) -> dict | None:
    if version is None:
        return None
    return version.manifest.get("kinds", {}).get("colbert")
