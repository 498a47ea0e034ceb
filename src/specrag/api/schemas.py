"""Pydantic v2 models of the REST API, shared with the CLI (its --json output).

The search request itself is :class:`specrag.retrieval.request.SearchRequest`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from specrag.generation.service import AskOptions
from specrag.indexing.registry import parse_kinds
from specrag.retrieval.request import SearchRequest
from specrag.storage.store import COLLECTION_NAME_PATTERN
from specrag.types import Document

__all__ = [
    "AskRequest",
    "AskResponse",
    "BuildRequest",
    "CitationOut",
    "CollectionCreate",
    "CollectionOut",
    "CollectionPatch",
    "DeleteDocuments",
    "DocumentIn",
    "DocumentOut",
    "Health",
    "JobOut",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "UpsertDocuments",
]


class LiveSettingsIn(BaseModel):
    """Live-collection settings (issue #14); every field optional in a PATCH."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    refresh_interval: float | None = Field(
        1.0,
        ge=0,
        le=86400,
        description="Seconds between background refreshes of pending writes (a delta "
        "segment); 0 or null: only on demand (POST .../refresh, ?refresh=wait_for).",
    )
    merge_max_share: float = Field(
        0.1,
        gt=0,
        le=10,
        description="Merge (a full build from the encoding store) in the background when "
        "the delta holds more than this share of the base version's documents.",
    )
    merge_max_docs: int = Field(
        10000, ge=1, le=10**9, description="... or more than this many documents."
    )


class CollectionCreate(LiveSettingsIn):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(
        pattern=COLLECTION_NAME_PATTERN, description="1 to 64 letters, digits, _ or -."
    )
    kinds: dict[str, dict[str, Any] | None] | list[str] = Field(
        default_factory=lambda: ["bm25"],
        description='Index kinds and their configs, e.g. {"bm25": {}, "dense": {"index": "hnsw"}}, '
        "or a list of kind names with default configs.",
    )
    shards: int = Field(
        1,
        ge=1,
        le=256,
        description="Split the index into this many shards (by a hash of the document id), "
        "built in parallel and searched together (docs/scaling.md); bm25 and dense only.",
    )

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value):
        return {name: config.model_dump() for name, config in parse_kinds(value).items()}


class CollectionPatch(BaseModel):
    """``PATCH /collections/{name}``: the fields given change, the others stay."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    refresh_interval: float | None = Field(None, ge=0, le=86400)
    merge_max_share: float | None = Field(None, gt=0, le=10)
    merge_max_docs: int | None = Field(None, ge=1, le=10**9)


class LiveOut(BaseModel):
    """Where a live collection stands: its settings, its pending writes and its delta."""

    refresh_interval: float | None
    merge_max_share: float
    merge_max_docs: int
    #: Writes (upserts, deletes) not yet covered by the served version and delta.
    pending: bool = False
    #: Documents written since the last refresh (0 when nothing is pending).
    pending_documents: int = 0
    #: Rows of the live delta segment, and base rows it supersedes (changed documents).
    delta_documents: int = 0
    delta_superseded: int = 0
    #: When the live delta was written, and when the base version was (a merge is a
    #: full build: the last merge or build).
    last_refresh_at: datetime | None = None
    last_merge_at: datetime | None = None


class CollectionOut(BaseModel):
    name: str
    kinds: dict[str, Any]
    n_documents: int
    created_at: datetime | None = None
    current_version: str | None = None
    generation: int = 0
    shards: int = 1
    live: LiveOut | None = None


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=512)
    text: str = Field(
        "", description="May be empty: the document is still fetchable and filterable."
    )
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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    documents: list[DocumentIn] = Field(min_length=1)


class DeleteDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ids: list[str] = Field(min_length=1)


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kinds: dict[str, dict[str, Any] | None] | list[str] | None = Field(
        None,
        description="Kinds to add to the collection, or whose config to change, before the "
        "build. A build always writes every kind of the collection.",
    )
    full: bool = Field(
        False,
        description="Retrain every kind's trained parts (e.g. the colbert codebook) instead "
        "of keeping the current version's when few documents changed; encodings are still "
        "reused. A merge always builds this way.",
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


class RefreshOut(BaseModel):
    """A delta segment made live by ``POST /collections/{name}/refresh``."""

    id: str
    base: str
    generation: int
    n_docs: int
    n_superseded: int
    kinds: list[str]
    encoded: int
    reused: int


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
    auth: str | None = Field(
        None, description="keys (required), open (no key exists yet: loopback only) or off."
    )
    warnings: list[str] = Field(default_factory=list)


#: SearchRequest fields an /ask request passes through to retrieval (query = question).
SEARCH_FIELDS = set(SearchRequest.model_fields) - {"query", "include"}


class AskRequest(SearchRequest):
    """The /search options (``k`` = passages put into the prompt) plus generation options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    question: str = Field(min_length=1)
    query: str | None = Field(None, description="Ignored: the question is the query.")
    k: int = Field(5, ge=1, le=50, description="Passages retrieved and put into the prompt.")
    model: str | None = Field(None, description="Generator name/path; default Settings.generator.")
    max_new_tokens: int = Field(256, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=5)
    seed: int | None = None
    speculative: bool = True
    drafters: list[Literal["context", "datastore", "draft-model"]] = ["context", "datastore"]
    draft_model: str | None = Field(None, description="Default Settings.draft_model.")
    max_prompt_tokens: int = Field(2048, ge=64)
    stop: list[str] = Field(default_factory=list, max_length=8)
    stream: bool = False

    def search_request(self) -> SearchRequest:
        data = self.model_dump(include=SEARCH_FIELDS)
        return SearchRequest(**data, query=self.question, include=["title", "text"])

    def options(self, default_draft: str | None) -> AskOptions:
        return AskOptions(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
            speculative=self.speculative,
            drafters=tuple(self.drafters),
            draft_model=self.draft_model or default_draft,
            max_prompt_tokens=self.max_prompt_tokens,
            stop_strings=tuple(self.stop),
        )


class CitationOut(BaseModel):
    number: int
    doc_id: str
    title: str | None
    text: str
    cited: bool


class AskResponse(BaseModel):
    collection: str
    version: str
    answer: str
    citations: list[CitationOut]
    stats: dict[str, Any]
