"""The relational schema (SQLAlchemy 2 declarative). Migrations in ``migrations/``
create exactly these tables; a test checks that they agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: JSON everywhere; JSONB on PostgreSQL so filters can use its operators.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class CollectionRow(Base):
    __tablename__ = "collections"
    __table_args__ = (
        UniqueConstraint("name", name="uq_collections_name"),
        Index("ix_collections_folder", "folder", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    #: {kind name: config dict}
    kinds: Mapped[dict[str, Any]] = mapped_column(JsonDoc, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    #: Bumped by every upsert and delete, so caches (tombstone masks) can tell.
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: Kept exact by upsert and delete, so that reading a collection never counts rows.
    n_documents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: The folder of its index files under ``collections/``: unique per collection ever
    #: created, so a new collection with a deleted one's name never sees its files.
    folder: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: Seconds between background refreshes (a delta segment of pending writes,
    #: ``indexing/delta.py``); None: refresh only on demand.
    refresh_interval: Mapped[float | None] = mapped_column(
        Float, nullable=True, default=1.0, server_default="1"
    )
    #: Merge policy: a background merge (a full build from the encoding store) starts when
    #: the delta holds more than this share of the base version's documents, ...
    merge_max_share: Mapped[float] = mapped_column(
        Float, nullable=False, default=0.1, server_default="0.1"
    )
    #: ... or more than this many documents.
    merge_max_docs: Mapped[int] = mapped_column(
        Integer, nullable=False, default=10000, server_default="10000"
    )


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "ext_id", name="uq_documents_collection_ext"),
    )

    #: Internal order of a collection's corpus snapshot (stable: updates keep the row).
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE", name="fk_documents_collection"),
        nullable=False,
    )
    ext_id: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JsonDoc, nullable=False, default=dict
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )


class IndexVersionRow(Base):
    """A built version, for listing. The on-disk ``CURRENT`` file is what serving reads."""

    __tablename__ = "index_versions"
    __table_args__ = (Index("ix_index_versions_collection", "collection_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE", name="fk_index_versions_collection"),
        nullable=False,
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    kinds: Mapped[dict[str, Any]] = mapped_column(JsonDoc, nullable=False, default=dict)
    n_docs: Mapped[int] = mapped_column(Integer, nullable=False)
    #: "ready" or "current"
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="ready")
    #: The collection generation of the snapshot it was built from (None: unknown).
    generation: Mapped[int | None] = mapped_column(Integer, nullable=True)


class BuildJobRow(Base):
    __tablename__ = "build_jobs"
    __table_args__ = (
        Index("ix_build_jobs_collection", "collection_id"),
        Index("ix_build_jobs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE", name="fk_build_jobs_collection"),
        nullable=False,
    )
    kinds: Mapped[Any] = mapped_column(JsonDoc, nullable=False, default=list)
    #: queued | running | succeeded | failed
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    stage: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    version_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: "host:pid:token" of the process that owns the job, so a restart can tell its own
    #: dead jobs from another live process's.
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: Written every few seconds while the build runs: a running job whose heartbeat is
    #: old lost its process (even on another host, or a reused pid).
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKeyRow(Base):
    """An API key: only its SHA-256 is stored (``storage/keys.py``). A revoked key keeps
    its row (``revoked_at``), so its name stays in the listing; an active name is unique."""

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("key_hash", name="uq_api_keys_hash"),
        Index("ix_api_keys_prefix", "prefix"),
        Index("ix_api_keys_name", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    #: read | write | admin (each includes the ones before it)
    scope: Mapped[str] = mapped_column(String(16), nullable=False)
    #: The key's first characters after ``sk_``: finds the row without the whole key.
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
