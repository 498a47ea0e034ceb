"""Each collection gets its own storage folder id, so a collection created again under a
deleted one's name never reads the old index files (its CURRENT, its versions).

Existing collections keep their files: their folder is their name.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable): SQLite's batch mode would copy and drop the table,
    # which cascades to the documents.
    op.add_column("collections", sa.Column("folder", sa.String(100), nullable=True))
    op.execute("UPDATE collections SET folder = name")
    op.create_index("ix_collections_folder", "collections", ["folder"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_collections_folder", table_name="collections")
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("folder")
