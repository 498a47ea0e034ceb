"""Rerankers: top-N hits in, the same hits re-scored and re-ordered out (``base.py``).

``make_reranker(method, model, version, fusion_weights)`` builds one; ``RerankStage``
(``stage.py``) runs one as a pipeline stage. ``rows`` are the hits' internal rows in the
version (MaxSim reads the version's ``colbert`` token store through them); ``texts`` are
the hits' texts (the cross-encoder needs them, and MaxSim when the version has no token
store for its model).
"""

from __future__ import annotations

from typing import Any

from specrag.rerank.base import Reranker

DEFAULT_MAXSIM_MODEL = "all-MiniLM-L6-v2"


def make_reranker(
    method: str,
    model: str | None = None,
    version: Any | None = None,
    fusion_weights: dict[str, float] | None = None,
) -> Reranker:
    """A reranker for ``method`` (``maxsim`` | ``cross-encoder``). ``version`` (an
    OpenVersion) lets MaxSim reuse the ``colbert`` kind's token store when its model
    matches; ``fusion_weights`` fuse MaxSim with first-stage scores (the recipe's)."""
    if method == "cross-encoder":
        from specrag.rerank.cross_encoder import CrossEncoderReranker

        if not model:
            raise ValueError("cross-encoder rerank needs `model` (a CrossEncoder name or path)")
        return CrossEncoderReranker(model)
    if method == "maxsim":
        from specrag.indexing.encoders.tokens import TokenEncoder
        from specrag.rerank.maxsim import MaxSimReranker

        colbert = _colbert_config(version)
        if colbert is not None and (model is None or model == colbert["model"]):
            from specrag.indexing.kinds.colbert.build import open_token_store

            encoder = TokenEncoder(
                colbert["model"],
                colbert.get("encoder", "auto"),
                dtype=colbert.get("dtype", "float32"),  # queries encoded as the documents were
            )
            store = open_token_store(version.path / "colbert")
            return MaxSimReranker(encoder, store, fusion_weights)
        return MaxSimReranker(TokenEncoder(model or DEFAULT_MAXSIM_MODEL), None, fusion_weights)
    raise ValueError(f"unknown rerank method {method!r}; known: maxsim, cross-encoder")


def _colbert_config(version: Any | None) -> dict | None:
    if version is None:
        return None
    entry = version.manifest.get("kinds", {}).get("colbert")
    return None if entry is None else entry["config"]
