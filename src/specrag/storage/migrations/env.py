"""Alembic environment: uses the connection handed over by ``init_db`` when there is one,
else an engine for ``SPECRAG_DATABASE_URL`` (command-line use)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from specrag.storage.models import Base

#: Any fixed number: the PostgreSQL advisory lock that serializes concurrent migrations.
PG_MIGRATION_LOCK = 7_315_120_001


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    from specrag.settings import Settings
    from specrag.storage.db import create_engine_for, write_connection

    engine = create_engine_for(Settings().db_url)
    try:
        with write_connection(engine) as conn:
            run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
main()
