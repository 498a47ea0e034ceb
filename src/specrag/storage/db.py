"""Database engine and schema setup: SQLite by default, PostgreSQL by URL.

SQLite is configured for a service with a background build thread and a second process
(the CLI) on the same file: WAL journal (readers never block the writer), foreign keys on
(collection deletes cascade), a busy timeout, and SQLAlchemy emitting ``BEGIN`` itself so
that a transaction really is one SQLite transaction. The stdlib driver's legacy mode
would not open a transaction before a SELECT, so a multi-query read (the corpus snapshot
of a build) would not see one consistent state. Write transactions start with
``BEGIN IMMEDIATE`` (see :func:`write_connection`), so two writers queue on the busy
timeout instead of failing when a read transaction tries to upgrade to a write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

#: Seconds a SQLite connection waits for a lock before it gives up.
SQLITE_BUSY_TIMEOUT_S = 30.0

#: Execution option read by the BEGIN hook: "IMMEDIATE" takes the write lock at BEGIN.
SQLITE_BEGIN = "sqlite_begin"


def create_engine_for(url: str) -> Engine:
    """An engine for ``url``: ``sqlite:///path.db`` or ``postgresql://...`` (psycopg 3,
    extra ``postgres``). ``postgres://`` and ``postgresql://`` select psycopg 3."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///... or postgresql://...")


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    if not in_memory:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
    }
    if in_memory:
        # One shared connection: only for single-threaded tests; no snapshot isolation
        # between a running build and writes (they share the one transaction).
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (below)
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction, committed on success. On SQLite it takes the
    write lock at BEGIN, so concurrent writers wait (busy timeout) rather than fail."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            yield conn


def migrations_config():
    """The Alembic config of the migrations shipped in this package (the engine's
    connection is handed over in ``cfg.attributes``, never its URL)."""
    from alembic.config import Config

    package = resources.files("specrag.storage")
    cfg = Config(str(package / "alembic.ini"))
    cfg.set_main_option("script_location", str(package / "migrations"))
    return cfg


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic ``upgrade head``). Safe to call
    from several processes at once: SQLite serializes it on the write lock, PostgreSQL on
    an advisory lock taken in ``env.py``."""
    from alembic import command

    cfg = migrations_config()
    with write_connection(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
