"""Core types, one definition each, shared by every stage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

#: A boolean mask over a version's internal document ids (row ``i`` is allowed when
#: ``mask[i]`` is True). Metadata filters and tombstones compile to one; every searcher
#: applies it *inside* the search so that ``k`` allowed hits come back when they exist.
DocMask = np.ndarray


@dataclass(frozen=True, slots=True)
class Document:
    """A document as stored and indexed. ``metadata`` holds every other field."""

    id: str
    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def full_text(self) -> str:
        """The text that encoders and analyzers see: title and body."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(slots=True)
class Hit:
    """One search result. ``scores`` keeps each retriever's raw score, so fused results
    stay explainable; ``score`` is the score the list is ranked by."""

    doc_id: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


class Corpus(Protocol):
    """A re-iterable, sized stream of documents in internal-id order (row i = id i)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Document]: ...


class Progress(Protocol):
    """Build progress sink: ``progress(done, total, stage, unit)``, counted in ``unit``
    (documents unless the stage says otherwise: "token", "point"). Job rows and the CLI's
    bars implement it."""

    def __call__(self, done: int, total: int, stage: str, unit: str = "doc") -> None: ...


def no_progress(done: int, total: int, stage: str, unit: str = "doc") -> None:
    """A Progress that ignores updates."""
