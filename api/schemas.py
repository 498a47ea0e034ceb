"""Pydantic v2 models of the REST API, shared with the CLI (its --json output).

The search request itself is :class:`specrag.retrieval.request.SearchRequest`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from specrag.indexing.registry import get_kind
from specrag.retrieval.request import SearchRequest
from specrag.types import Document

__all__ = [
    "BuildRequest",
    "CollectionCreate",
    "CollectionOut",
    "DeleteDocuments",
    "DocumentIn",
    "DocumentOut",
    "Health",
    "JobOut",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "UpsertDocuments",
    "validate_kinds",
]

#: Collection names become directory names: keep them to a safe alphabet.
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def validate_kinds(kinds: dict[str, Any] | list[str] | None) -> dict[str, dict[str, Any]] | None:
    """Check kind names against the registry and their configs against each kind's config
    model; returns ``{kind: validated config}``. Raises ValueError naming the problem."""
    if kinds is None:
        return None
    if isinstance(kinds, list):
        kinds = dict.fromkeys(kinds)
    if not kinds:
        raise ValueError("kinds must name at least one index kind")
    out: dict[str, dict[str, Any]] = {}
    for name, raw in kinds.items():
        kind = get_kind(name)  # ValueError: unknown index kind ...
        if raw is not None and not isinstance(raw, dict):
            raise ValueError(f"config of kind {name!r} must be an object, got {type(raw).__name__}")
        try:
            out[name] = kind.parse_config(raw).model_dump()
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"invalid config for kind {name!r}: {exc}") from None
    return out


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="1 to 64 letters, digits, _ or -.")
    kinds: dict[str, dict[str, Any] | None] | list[str] = Field(
        default_factory=lambda: ["bm25"],
        description='Index kinds and their configs, e.g. {"bm25": {}, "dense": {"index": "hnsw"}}, '
        'or a list of kind names with default configs.',
    )

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value):
        return validate_kinds(value)


class CollectionOut(BaseModel):
    name: str
    kinds: dict[str, Any]
    n_documents: int
    created_at: datetime | None = None
    current_version: str | None = None
    generation: int = 0


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=512)
    text: str
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_document(self) -> Document:
        return Document(id=self.id, text=self.text, title=self.title, metadata=self.metadata)


class DocumentOut(DocumentIn):
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def of(cls, doc: Document) -> DocumentOut:
        return cls(id=doc.id, text=doc.text, title=doc.title, metadata=dict(doc.metadata))


class UpsertDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1)


class DeleteDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1)


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: list[str] | None = Field(
        None, description="Kinds to build; default: the collection's kinds."
    )


class JobOut(BaseModel):
    id: str
    collection: str
    kinds: Any = None
    status: str
    stage: str | None = None
    progress: float | None = None
    done: int | None = None
    total: int | None = None
    message: str | None = None
    error: str | None = None
    version_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class SearchHit(BaseModel):
    doc_id: str
    score: float
    scores: dict[str, float] | None = None
    title: str | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    collection: str
    version: str
    hits: list[SearchHit]
    timings_ms: dict[str, float]


class Health(BaseModel):
    status: str = "ok"
    version: str
    collections: int
