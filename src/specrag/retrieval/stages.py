"""The contract of the stages after fusion (rerank, calibrated relevance): batched, like a
Searcher, and composable in a list that the pipeline runs in order (PyTerrier's habit).

``retrieval/`` defines the contract; stages that need a later package (rerankers, in
``rerank/``) implement it there, and the service composes them per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from specrag.retrieval.version import OpenVersion
from specrag.types import Hit

#: texts(version, doc_ids) -> the documents' texts, in order ("" for a missing one): lent by
#: the service (the store) to what needs texts (rerankers, bm25 PRF).
TextSource = Callable[[OpenVersion, list[str]], list[str]]


class Stage(Protocol):
    """Takes each query's fused hits (best first) and returns new hits, best first, each
    keeping the ``scores`` it came with plus the stage's own."""

    #: The stage's timing key and its score name in ``Hit.scores``.
    name: str
    #: How many fused hits the stage wants to see (the pipeline keeps at least this many
    #: before the stage, whatever the request's ``k``).
    depth: int

    def __call__(
        self, version: OpenVersion, queries: list[str], hits: list[list[Hit]]
    ) -> list[list[Hit]]: ...
