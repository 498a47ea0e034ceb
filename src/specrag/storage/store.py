"""DocumentStore: collections, documents, index versions and build jobs in one database.

Policies (see docs/storage.md):
- ``upsert`` is one transaction per call (all documents or none), written in batches of
  ``batch_size`` so memory stays bounded; a document with an existing id is updated in
  place and keeps its row id, so the corpus order is stable across updates.
- Every upsert and every delete that removes something bumps the collection's
  ``generation``, so caches keyed by it (tombstone masks) can tell.
- ``corpus(name)`` is a snapshot: one read transaction (SQLite WAL / PostgreSQL
  REPEATABLE READ) held open while the build iterates, paged by row id. Every pass sees
  the same documents even while upserts and deletes go on; close it when done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from specrag.errors import UserError
from specrag.storage.db import write_connection
from specrag.storage.filters import compile_filter
from specrag.storage.models import BuildJobRow, CollectionRow, DocumentRow, IndexVersionRow, utcnow
from specrag.types import Document

#: Collection names become directory names: one safe alphabet, checked here and in the API.
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
JOB_STATUSES = ("queued", "running", "succeeded", "failed")
#: Ids per ``IN (...)`` clause, well under every backend's bound-parameter limit.
ID_CHUNK = 500
#: Documents per page when a corpus snapshot is iterated.
CORPUS_PAGE = 1000

#: Identifies this process in job rows: host, pid and a token that survives no restart
#: (a container restarted as pid 1 again is still told apart from its previous life).
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class NotFound(UserError, LookupError):
    """A collection, document, version or job that does not exist (HTTP 404)."""


class AlreadyExists(UserError, ValueError):
    """A collection name that is taken (HTTP 409)."""


class InvalidDocument(UserError, ValueError):
    """A document the store refuses: bad id, types, NaN, metadata too deep or too large
    (HTTP 400)."""


#: Nesting no stored JSON value may pass, whatever the settings say (stack safety).
HARD_DEPTH_LIMIT = 256


@dataclass(frozen=True)
class MetadataLimits:
    """How deep (objects/arrays, the metadata object itself is level 1) and how large (bytes
    of JSON) one document's metadata may be: settings max_metadata_depth/_bytes."""

    max_depth: int = 32
    max_bytes: int = 64 * 1024


@dataclass(frozen=True)
class LiveSettings:
    """How a collection stays live (issue #14): seconds between background refreshes
    (None: on demand only), and the merge policy (a background full build from the
    encoding store when the delta holds more than ``merge_max_share`` of the base
    version's documents or more than ``merge_max_docs``)."""

    refresh_interval: float | None = 1.0
    merge_max_share: float = 0.1
    merge_max_docs: int = 10000


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    kinds: dict[str, dict]
    n_documents: int
    created_at: datetime
    current_version: str | None
    generation: int
    #: Folder of its index files under ``collections/`` (unique per collection created).
    folder: str
    #: The live-collection settings (``LiveSettings``).
    live: LiveSettings = field(default_factory=LiveSettings)


@dataclass(frozen=True)
class VersionInfo:
    id: str
    collection: str
    kinds: Any
    n_docs: int
    status: str
    created_at: datetime
    generation: int | None


@dataclass(frozen=True)
class JobInfo:
    id: str
    collection: str
    kinds: Any
    status: str
    stage: str
    progress: float
    done: int
    total: int
    message: str | None
    error: str | None
    version_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class InvalidName(UserError, ValueError):
    """A collection name outside the safe alphabet (HTTP 400)."""


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_NAME.fullmatch(name):
        raise InvalidName(
            f"invalid collection name {name!r}: use 1 to 64 letters, digits, '_' or '-'"
        )
    return name


def _live_values(live: LiveSettings) -> dict[str, Any]:
    interval = live.refresh_interval
    return {
        "refresh_interval": None if not interval else float(interval),
        "merge_max_share": float(live.merge_max_share),
        "merge_max_docs": int(live.merge_max_docs),
    }


def new_folder(name: str) -> str:
    """A storage folder never used before: the name (readable on disk) and a random part."""
    return f"{name}.{uuid.uuid4().hex[:12]}"


class DocumentStore:
    def __init__(self, engine: Engine, limits: MetadataLimits | None = None):
        self.engine = engine
        self.limits = limits or MetadataLimits()

    # -- collections -----------------------------------------------------------------
    def create_collection(
        self, name: str, kinds: dict[str, dict] | None = None, live: LiveSettings | None = None
    ) -> CollectionInfo:
        validate_collection_name(name)
        live = live or LiveSettings()
        kinds = dict(kinds or {})
        _check_json(kinds, f"collection {name!r} kinds")
        try:
            with write_connection(self.engine) as conn:
                conn.execute(
                    CollectionRow.__table__.insert().values(
                        name=name,
                        kinds=kinds,
                        created_at=utcnow(),
                        generation=0,
                        n_documents=0,
                        folder=new_folder(name),
                        **_live_values(live),
                    )
                )
        except IntegrityError:
            raise AlreadyExists(f"collection {name!r} already exists") from None
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        with self.engine.connect() as conn:
            infos = self._collection_infos(conn, name)
        if not infos:
            raise NotFound(f"collection {name!r} not found")
        return infos[0]

    def list_collections(self) -> list[CollectionInfo]:
        with self.engine.connect() as conn:
            return self._collection_infos(conn, None)

    def _collection_infos(self, conn: Connection, name: str | None) -> list[CollectionInfo]:
        c = CollectionRow.__table__.c
        current = (
            select(IndexVersionRow.collection_id, func.max(IndexVersionRow.id).label("vid"))
            .where(IndexVersionRow.status == "current")
            .group_by(IndexVersionRow.collection_id)
            .subquery()
        )
        query = (
            select(
                c.name,
                c.kinds,
                c.created_at,
                c.generation,
                c.n_documents,
                c.folder,
                c.refresh_interval,
                c.merge_max_share,
                c.merge_max_docs,
                current.c.vid,
            )
            .outerjoin(current, current.c.collection_id == c.id)
            .order_by(c.name)
        )
        if name is not None:
            query = query.where(c.name == name)
        return [
            CollectionInfo(
                name=row.name,
                kinds=dict(row.kinds or {}),
                n_documents=int(row.n_documents),
                created_at=_aware(row.created_at),
                current_version=row.vid,
                generation=int(row.generation),
                folder=row.folder or row.name,
                live=LiveSettings(
                    row.refresh_interval, float(row.merge_max_share), int(row.merge_max_docs)
                ),
            )
            for row in conn.execute(query)
        ]

    def delete_collection(self, name: str) -> None:
        """Delete the collection with its documents, version rows and jobs (cascade)."""
        with write_connection(self.engine) as conn:
            result = conn.execute(delete(CollectionRow).where(CollectionRow.name == name))
        if result.rowcount == 0:
            raise NotFound(f"collection {name!r} not found")

    def set_kinds(self, name: str, kinds: dict[str, dict]) -> None:
        kinds = dict(kinds or {})
        _check_json(kinds, f"collection {name!r} kinds")
        with write_connection(self.engine) as conn:
            result = conn.execute(
                update(CollectionRow).where(CollectionRow.name == name).values(kinds=kinds)
            )
        if result.rowcount == 0:
            raise NotFound(f"collection {name!r} not found")

    def set_live_settings(self, name: str, live: LiveSettings) -> None:
        with write_connection(self.engine) as conn:
            result = conn.execute(
                update(CollectionRow).where(CollectionRow.name == name).values(**_live_values(live))
            )
        if result.rowcount == 0:
            raise NotFound(f"collection {name!r} not found")

    def count_updated_since(self, name: str, since: datetime) -> int:
        """Documents written (inserted or updated) after ``since``."""
        with self.engine.connect() as conn:
            cid = self._collection_id(conn, name)
            return int(
                conn.scalar(
                    select(func.count()).where(
                        DocumentRow.collection_id == cid, DocumentRow.updated_at > since
                    )
                )
                or 0
            )

    def _collection_id(self, conn: Connection, name: str) -> int:
        cid = conn.scalar(select(CollectionRow.id).where(CollectionRow.name == name))
        if cid is None:
            raise NotFound(f"collection {name!r} not found")
        return cid

    def _lock_for_write(self, conn: Connection, name: str) -> int:
        """Bump the generation first: on PostgreSQL the row lock this takes serializes
        writers of one collection, which keeps ``n_documents`` exact (SQLite's write lock
        already does). Returns the collection id."""
        cid = conn.scalar(
            update(CollectionRow)
            .where(CollectionRow.name == name)
            .values(generation=CollectionRow.generation + 1)
            .returning(CollectionRow.id)
        )
        if cid is None:
            raise NotFound(f"collection {name!r} not found")
        return cid

    @staticmethod
    def _add_documents(conn: Connection, cid: int, delta: int) -> None:
        conn.execute(
            update(CollectionRow)
            .where(CollectionRow.id == cid)
            .values(n_documents=CollectionRow.n_documents + delta)
        )

    # -- documents -------------------------------------------------------------------
    def upsert(self, name: str, docs: Iterable[Document], batch_size: int = 1000) -> int:
        """Insert or update ``docs`` by id; one transaction for the whole call (all or
        nothing), written ``batch_size`` at a time. Returns the number of distinct
        documents written per batch, summed (a repeated id within a batch counts once;
        the last occurrence wins)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        written = added = 0
        with write_connection(self.engine) as conn:
            cid = self._lock_for_write(conn, name)
            stmt = _upsert_statement(conn.dialect.name)
            it = iter(docs)
            while batch := list(islice(it, batch_size)):
                rows: dict[str, dict[str, Any]] = {}
                now = utcnow()
                for doc in batch:
                    check_document(doc, self.limits)
                    rows[doc.id] = {
                        "collection_id": cid,
                        "ext_id": doc.id,
                        "title": doc.title,
                        "text": doc.text,
                        "metadata": dict(doc.metadata or {}),
                        "updated_at": now,
                    }
                existing = conn.scalar(
                    select(func.count()).where(
                        DocumentRow.collection_id == cid, DocumentRow.ext_id.in_(list(rows))
                    )
                )
                conn.execute(stmt, list(rows.values()))
                written += len(rows)
                added += len(rows) - int(existing or 0)
            if not written:
                conn.rollback()  # nothing to write: leave the generation alone
                return 0
            self._add_documents(conn, cid, added)
        return written

    def delete_documents(self, name: str, ids: list[str]) -> int:
        """Delete documents by id (unknown ids are ignored); returns how many went."""
        removed = 0
        unique_ids = list(dict.fromkeys(ids))
        with write_connection(self.engine) as conn:
            cid = self._lock_for_write(conn, name)
            for start in range(0, len(unique_ids), ID_CHUNK):
                chunk = unique_ids[start : start + ID_CHUNK]
                result = conn.execute(
                    delete(DocumentRow).where(
                        DocumentRow.collection_id == cid, DocumentRow.ext_id.in_(chunk)
                    )
                )
                removed += result.rowcount
            if not removed:
                conn.rollback()  # nothing removed: leave the generation alone
                return 0
            self._add_documents(conn, cid, -removed)
        return removed

    def get_document(self, name: str, doc_id: str) -> Document | None:
        with self.engine.connect() as conn:
            cid = self._collection_id(conn, name)
            row = conn.execute(
                select(*_DOC_COLUMNS).where(
                    DocumentRow.collection_id == cid, DocumentRow.ext_id == doc_id
                )
            ).first()
        return None if row is None else _document(row)

    def get_documents(self, name: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        """The documents among ``doc_ids`` that exist, by id: one query per chunk of ids
        (a search response's hits), not one per hit."""
        found: dict[str, Document] = {}
        with self.engine.connect() as conn:
            cid = self._collection_id(conn, name)
            unique = list(dict.fromkeys(doc_ids))
            for start in range(0, len(unique), ID_CHUNK):
                rows = conn.execute(
                    select(*_DOC_COLUMNS).where(
                        DocumentRow.collection_id == cid,
                        DocumentRow.ext_id.in_(unique[start : start + ID_CHUNK]),
                    )
                )
                found.update((row.ext_id, _document(row)) for row in rows)
        return found

    def count(self, name: str) -> int:
        return self.get_collection(name).n_documents

    def corpus(self, name: str, page_size: int = CORPUS_PAGE) -> CorpusSnapshot:
        """A consistent snapshot of the collection's documents in row-id order; use it as
        a context manager (or call ``close``) to end its read transaction."""
        return CorpusSnapshot(self.engine, name, page_size)

    def matching_ids(
        self, name: str, filter: Mapping[str, Any] | None = None, *, ordered: bool = True
    ) -> list[str]:
        """Ids of the documents whose metadata match ``filter`` (every document when None;
        raises FilterError), in row-id order unless ``ordered=False``: a mask needs no
        order, and sorting every id of a large collection costs a fifth of the query."""
        with self.engine.connect() as conn:
            cid = self._collection_id(conn, name)
            query = select(DocumentRow.ext_id).where(DocumentRow.collection_id == cid)
            if filter is not None:
                query = query.where(compile_filter(filter))
            if ordered:
                query = query.order_by(DocumentRow.id)
            return list(conn.scalars(query))

    # -- index versions --------------------------------------------------------------
    def record_version(
        self,
        name: str,
        version_id: str,
        kinds: Any,
        n_docs: int,
        generation: int | None = None,
        current: bool = False,
        job_id: str | None = None,
    ) -> None:
        """Record a built version (for listing); ``current=True`` also marks it current.
        ``job_id``: the build's job, which must still be there (NotFound otherwise): a
        collection deleted, and maybe created again, during the build loses its jobs, so
        the build can never record into the new collection."""
        with write_connection(self.engine) as conn:
            cid = self._collection_id(conn, name)
            if job_id is not None and (
                conn.scalar(
                    select(BuildJobRow.id).where(
                        BuildJobRow.id == job_id, BuildJobRow.collection_id == cid
                    )
                )
                is None
            ):
                raise NotFound(f"job {job_id!r} of collection {name!r} not found")
            conn.execute(
                IndexVersionRow.__table__.insert().values(
                    id=version_id,
                    collection_id=cid,
                    created_at=utcnow(),
                    kinds=kinds,
                    n_docs=int(n_docs),
                    status="ready",
                    generation=generation,
                )
            )
            if current:
                self._mark_current(conn, cid, version_id)

    def set_current_version(self, name: str, version_id: str) -> None:
        with write_connection(self.engine) as conn:
            cid = self._collection_id(conn, name)
            exists = conn.scalar(
                select(IndexVersionRow.id).where(
                    IndexVersionRow.collection_id == cid, IndexVersionRow.id == version_id
                )
            )
            if exists is None:
                raise NotFound(f"version {version_id!r} of collection {name!r} not found")
            self._mark_current(conn, cid, version_id)

    @staticmethod
    def _mark_current(conn: Connection, cid: int, version_id: str) -> None:
        conn.execute(
            update(IndexVersionRow)
            .where(IndexVersionRow.collection_id == cid, IndexVersionRow.status == "current")
            .values(status="ready")
        )
        conn.execute(
            update(IndexVersionRow)
            .where(IndexVersionRow.collection_id == cid, IndexVersionRow.id == version_id)
            .values(status="current")
        )

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Versions recorded for the collection, newest first."""
        t = IndexVersionRow
        with self.engine.connect() as conn:
            cid = self._collection_id(conn, name)
            rows = conn.execute(
                select(t.id, t.kinds, t.n_docs, t.status, t.created_at, t.generation)
                .where(t.collection_id == cid)
                .order_by(t.id.desc())
            )
            return [
                VersionInfo(
                    id=r.id,
                    collection=name,
                    kinds=r.kinds,
                    n_docs=r.n_docs,
                    status=r.status,
                    created_at=_aware(r.created_at),
                    generation=r.generation,
                )
                for r in rows
            ]

    # -- build jobs ------------------------------------------------------------------
    def create_job(self, name: str, kinds: Any) -> JobInfo:
        """A queued job owned by this process."""
        kinds = list(kinds) if not isinstance(kinds, Mapping) else dict(kinds)
        _check_json(kinds, "job kinds")
        job_id = str(uuid.uuid4())
        with write_connection(self.engine) as conn:
            cid = self._collection_id(conn, name)
            conn.execute(
                BuildJobRow.__table__.insert().values(
                    id=job_id,
                    collection_id=cid,
                    kinds=kinds,
                    status="queued",
                    stage="queued",
                    progress=0.0,
                    done=0,
                    total=0,
                    created_at=utcnow(),
                    worker=WORKER_ID,
                )
            )
        return self.get_job(job_id)

    _JOB_FIELDS = frozenset(
        {
            "status",
            "stage",
            "progress",
            "done",
            "total",
            "message",
            "error",
            "version_id",
            "started_at",
            "finished_at",
        }
    )

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Update a job's fields. Moving to ``running`` stamps ``started_at`` (and makes
        this process the job's owner); moving to ``succeeded``/``failed`` stamps
        ``finished_at``, unless given."""
        unknown = set(fields) - self._JOB_FIELDS
        if unknown:
            raise ValueError(f"unknown job field(s): {', '.join(sorted(unknown))}")
        status = fields.get("status")
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"invalid job status {status!r}; one of {', '.join(JOB_STATUSES)}")
        if "progress" in fields:
            progress = float(fields["progress"])
            if not 0.0 <= progress <= 1.0:
                raise ValueError(f"job progress must be within [0, 1], got {progress}")
            fields["progress"] = progress
        if status == "running":
            fields.setdefault("started_at", utcnow())
            fields["heartbeat_at"] = utcnow()
            fields["worker"] = WORKER_ID
        if status in ("succeeded", "failed"):
            fields.setdefault("finished_at", utcnow())
        if not fields:
            return
        with write_connection(self.engine) as conn:
            result = conn.execute(
                update(BuildJobRow).where(BuildJobRow.id == job_id).values(**fields)
            )
        if result.rowcount == 0:
            raise NotFound(f"job {job_id!r} not found")

    def get_job(self, job_id: str) -> JobInfo:
        with self.engine.connect() as conn:
            row = conn.execute(_job_query().where(BuildJobRow.id == job_id)).first()
        if row is None:
            raise NotFound(f"job {job_id!r} not found")
        return _job(row)

    def list_jobs(self, name: str) -> list[JobInfo]:
        """The collection's jobs, newest first."""
        with self.engine.connect() as conn:
            cid = self._collection_id(conn, name)
            rows = conn.execute(
                _job_query()
                .where(BuildJobRow.collection_id == cid)
                .order_by(BuildJobRow.created_at.desc(), BuildJobRow.id)
            )
            return [_job(row) for row in rows]

    def heartbeat(self, job_id: str) -> bool:
        """Stamp a running job's heartbeat; False when the job is gone or not running."""
        with write_connection(self.engine) as conn:
            result = conn.execute(
                update(BuildJobRow)
                .where(BuildJobRow.id == job_id, BuildJobRow.status == "running")
                .values(heartbeat_at=utcnow())
            )
        return result.rowcount > 0

    def fail_stale_jobs(self, stale_after_s: float | None = None) -> int:
        """Mark failed the queued/running jobs whose owning process is gone (at startup,
        and from time to time while serving, so a CLI build killed with -9 does not stay
        "running").

        A job is stale when it has no owner, or its owner ran on this host and that
        process no longer exists (or its pid now belongs to this process, i.e. a restart
        that reused it), or (``stale_after_s`` given) it is running in another process
        and its heartbeat (``run_build`` stamps it every few seconds) is older than that:
        a dead owner on another host, or a pid reused. Returns the number of jobs failed."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    BuildJobRow.id,
                    BuildJobRow.worker,
                    BuildJobRow.status,
                    BuildJobRow.heartbeat_at,
                    BuildJobRow.started_at,
                ).where(BuildJobRow.status.in_(("queued", "running")))
            ).all()
        now = utcnow()
        failed = 0
        for row in rows:
            if _owner_is_gone(row.worker):
                why = "stopped before it finished"
            elif (
                stale_after_s is not None
                and row.status == "running"
                and row.worker != WORKER_ID
                and _older_than(row.heartbeat_at or row.started_at, now, stale_after_s)
            ):
                why = f"sent no heartbeat for over {stale_after_s:g} s"
            else:
                continue
            with write_connection(self.engine) as conn:
                result = conn.execute(
                    update(BuildJobRow)
                    .where(BuildJobRow.id == row.id, BuildJobRow.status == row.status)
                    .values(
                        status="failed",
                        finished_at=now,
                        error="interrupted",
                        message=(
                            f"the process that owned this {row.status} build "
                            f"({row.worker or 'unknown'}) {why}; start the build again"
                        ),
                    )
                )
            failed += result.rowcount
        return failed


class CorpusSnapshot:
    """The documents of one collection as of the moment it was opened (a Corpus).

    It holds one read transaction open: a SQLite WAL reader (writers go on; the WAL file
    grows until the snapshot closes) or a PostgreSQL REPEATABLE READ transaction. Pages
    of ``page_size`` documents are read by keyset (row id > last seen), so memory stays
    bounded and every pass yields identical content in row-id order.
    ``generation`` is the collection generation the snapshot saw.
    """

    def __init__(self, engine: Engine, name: str, page_size: int = CORPUS_PAGE):
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.name = name
        self.page_size = page_size
        self._lock = threading.Lock()
        conn = engine.connect()
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        self._conn: Connection | None = conn
        self._finalizer = weakref.finalize(self, _close_quietly, conn)
        try:
            conn.begin()
            row = conn.execute(
                select(CollectionRow.id, CollectionRow.generation).where(CollectionRow.name == name)
            ).first()
            if row is None:
                raise NotFound(f"collection {name!r} not found")
            self.collection_id: int = row.id
            self.generation: int = int(row.generation)
            self._n = int(
                conn.scalar(
                    select(func.count()).where(DocumentRow.collection_id == self.collection_id)
                )
                or 0
            )
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Document]:
        last = None
        while True:
            query = (
                select(DocumentRow.id, *_DOC_COLUMNS)
                .where(DocumentRow.collection_id == self.collection_id)
                .order_by(DocumentRow.id)
                .limit(self.page_size)
            )
            if last is not None:
                query = query.where(DocumentRow.id > last)
            with self._lock:
                if self._conn is None:
                    raise RuntimeError(f"the corpus snapshot of {self.name!r} is closed")
                rows = self._conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield _document(row)
            last = rows[-1].id

    def ids(self) -> list[str]:
        return [doc.id for doc in self]

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._finalizer.detach()
            _close_quietly(conn)

    def __enter__(self) -> CorpusSnapshot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- helpers -------------------------------------------------------------------------
_DOC_COLUMNS = (DocumentRow.ext_id, DocumentRow.title, DocumentRow.text, DocumentRow.metadata_)


def _document(row) -> Document:
    return Document(
        id=row.ext_id, text=row.text, title=row.title, metadata=dict(row.metadata or {})
    )


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection must not raise
        conn.close()


def _upsert_statement(dialect: str):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}")
    table = DocumentRow.__table__
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.collection_id, table.c.ext_id],
        set_={
            "title": stmt.excluded.title,
            "text": stmt.excluded.text,
            "metadata": stmt.excluded.metadata,
            "updated_at": stmt.excluded.updated_at,
        },
    )


def check_document(doc: Document, limits: MetadataLimits | None = None) -> None:
    """Refuse a document the store cannot hold faithfully (InvalidDocument). Its text may
    be empty: a document with an id and metadata only is still fetchable and filterable."""
    limits = limits or MetadataLimits()
    if not isinstance(doc, Document):
        raise InvalidDocument(f"expected a Document, got {type(doc).__name__}")
    if not isinstance(doc.id, str) or not doc.id:
        raise InvalidDocument(f"document id must be a non-empty string, got {doc.id!r}")
    if not isinstance(doc.text, str):
        raise InvalidDocument(f"document {doc.id!r}: text must be a string")
    if doc.title is not None and not isinstance(doc.title, str):
        raise InvalidDocument(f"document {doc.id!r}: title must be a string or None")
    if not isinstance(doc.metadata, Mapping):
        raise InvalidDocument(f"document {doc.id!r}: metadata must be an object")
    where = f"document {doc.id!r} metadata"
    _check_json(doc.metadata, where, max_depth=limits.max_depth)
    size = len(json.dumps(doc.metadata, ensure_ascii=False).encode())
    if size > limits.max_bytes:
        raise InvalidDocument(
            f"{where} is {size} bytes as JSON; the limit is {limits.max_bytes} "
            "(setting max_metadata_bytes)"
        )


def _check_json(
    value: Any, where: str, path: str = "", max_depth: int = HARD_DEPTH_LIMIT, depth: int = 0
) -> None:
    """Reject what JSON cannot store faithfully: non-string keys, NaN/inf, other types,
    and nesting deeper than ``max_depth`` objects/arrays (checked before recursing, so a
    hostile value never exhausts the stack)."""
    if value is None or isinstance(value, bool | str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidDocument(f"{where}: {path or 'value'} is {value}; JSON has no NaN/inf")
        return
    if isinstance(value, Mapping | list | tuple) and depth + 1 > max_depth:
        raise InvalidDocument(
            f"{where}: nested deeper than {max_depth} levels at {path or 'top level'} "
            "(setting max_metadata_depth)"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidDocument(
                    f"{where}: key {key!r} at {path or 'top level'} is not a string"
                )
            _check_json(item, where, f"{path}.{key}" if path else key, max_depth, depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, where, f"{path}[{i}]", max_depth, depth + 1)
        return
    raise InvalidDocument(
        f"{where}: {path or 'value'} has type {type(value).__name__}, which JSON cannot store"
    )


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _job_query():
    j = BuildJobRow
    return select(
        j.id,
        CollectionRow.name.label("collection"),
        j.kinds,
        j.status,
        j.stage,
        j.progress,
        j.done,
        j.total,
        j.message,
        j.error,
        j.version_id,
        j.created_at,
        j.started_at,
        j.finished_at,
    ).join(CollectionRow, CollectionRow.id == j.collection_id)


def _job(row) -> JobInfo:
    return JobInfo(
        id=row.id,
        collection=row.collection,
        kinds=row.kinds,
        status=row.status,
        stage=row.stage,
        progress=float(row.progress),
        done=int(row.done),
        total=int(row.total),
        message=row.message,
        error=row.error,
        version_id=row.version_id,
        created_at=_aware(row.created_at),
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
    )


def _older_than(stamp: datetime | None, now: datetime, seconds: float) -> bool:
    if stamp is None:
        return True
    return (now - _aware(stamp)).total_seconds() > seconds


def _owner_is_gone(worker: str | None) -> bool:
    if not worker:
        return True
    if worker == WORKER_ID:
        return False
    host, _, rest = worker.partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != socket.gethostname():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if pid == os.getpid():
        return True  # our pid, another token: a previous life of this process slot
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by another user
    return False
