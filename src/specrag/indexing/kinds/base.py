"""What every index kind is made of, and the check that it is complete.

An index kind is one folder under ``specrag/indexing/kinds/`` (Lucene's codec habit):

- ``config.py``: a :class:`KindConfig` (pydantic) holding every build setting *and* every
  search knob of the kind, validated at the API and CLI edge and stored in the version
  manifest;
- ``build.py``: the :class:`Builder`, a function writing the kind's files into a fresh
  directory inside a version being built;
- ``search.py``: the :class:`Searcher` class, opening those files read-only;
- ``__init__.py``: ``KIND = IndexKind(...)``, which ``specrag/indexing/registry.py`` lists.

Modules of a kind import heavy libraries (torch, sentence-transformers, faiss, the JVM)
inside functions, so that listing the kinds imports none of them: a bm25-only server never
imports torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from specrag.types import Corpus, DocMask, Hit, Progress


class KindConfig(BaseModel):
    """Base of every kind's config: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def with_changes(self, **changes: Any) -> Self:
        """A validated copy with some fields changed (benchmarks and tests tune knobs this
        way; ``model_copy(update=...)`` would skip validation)."""
        return type(self).model_validate({**self.model_dump(), **changes})


class Builder(Protocol):
    """Writes a kind's files for ``corpus`` (row i = i-th document) into ``out_dir`` and
    returns statistics recorded in the version manifest. ``progress(done, total, stage,
    unit)`` reports each stage's work (documents, or "token" for token stages)."""

    def __call__(
        self, corpus: Corpus, out_dir: Path, config: Any, progress: Progress
    ) -> dict[str, Any]: ...


@runtime_checkable
class Searcher(Protocol):
    """One opened index of one kind. Batched: one list of hits per query, best first
    (higher score, then lower row); ``allowed`` is applied inside the search, so
    ``min(k, matching allowed documents)`` hits come back."""

    kind: str
    config: Any

    @classmethod
    def load(cls, index_dir: Path, config: Any, doc_ids: np.ndarray) -> Self:
        """Open the files a Builder wrote; ``doc_ids[i]`` is the external id of row i."""
        ...

    def search(
        self, queries: list[str], k: int, allowed: DocMask | None = None
    ) -> list[list[Hit]]: ...

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        """Exhaustive scores of every document (n_queries, n_docs), by the simplest code
        over the same stored representation (no index structure, no pruning); -inf where
        a document cannot match. The contract test's truth."""
        ...


@dataclass(frozen=True)
class IndexKind:
    name: str
    config: type[KindConfig]
    build: Builder
    searcher: type[Searcher]
    description: str = ""
    #: False for kinds that are not document retrievers (the generator's datastore):
    #: the pipeline does not search them; the contract test checks their own truth.
    searchable: bool = True
    #: What the kind reads from the encoding store, given its config
    #: (``list[encodings.session.EncodingNeed]``); None for kinds with no neural encoder.
    #: The build encodes every need once per space before any builder runs.
    encodings: Callable[[Any], list[Any]] | None = None

    def parse_config(self, raw: KindConfig | dict[str, Any] | None) -> KindConfig:
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        return self.config.model_validate(raw or {})


_BUILD_PARAMETERS = ["corpus", "out_dir", "config", "progress"]
_SEARCHER_METHODS = {
    "load": ["index_dir", "config", "doc_ids"],
    "search": ["self", "queries", "k", "allowed"],
    "reference_scores": ["self", "queries"],
}


def check_kind(kind: IndexKind) -> IndexKind:
    """Raise TypeError unless ``kind`` has a config model, a builder and a searcher with
    the protocol's signatures (checked once, at registration, not at first build)."""
    where = f"index kind {kind.name!r}"
    if not (isinstance(kind.config, type) and issubclass(kind.config, KindConfig)):
        raise TypeError(f"{where}: config must be a KindConfig subclass")
    params = list(inspect.signature(kind.build).parameters)
    if params != _BUILD_PARAMETERS:
        raise TypeError(f"{where}: build{tuple(params)} must take {tuple(_BUILD_PARAMETERS)}")
    for method, wanted in _SEARCHER_METHODS.items():
        attr = inspect.getattr_static(kind.searcher, method, None)
        if attr is None:
            raise TypeError(f"{where}: {kind.searcher.__name__} has no {method}()")
        if method == "load" and not isinstance(attr, classmethod):
            raise TypeError(f"{where}: {kind.searcher.__name__}.load must be a classmethod")
        # A bound classmethod drops ``cls``; plain methods are read unbound, with ``self``.
        target = getattr(kind.searcher, method) if method == "load" else attr
        params = list(inspect.signature(target).parameters)
        if params != wanted:
            raise TypeError(
                f"{where}: {kind.searcher.__name__}.{method}{tuple(params)} must take "
                f"{tuple(wanted)}"
            )
    if getattr(kind.searcher, "kind", None) != kind.name:
        raise TypeError(f"{where}: {kind.searcher.__name__}.kind must be {kind.name!r}")
    return kind
