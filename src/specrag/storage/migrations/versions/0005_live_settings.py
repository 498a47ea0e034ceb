"""Live collections (issue #14): a refresh interval and a merge policy per collection.

Existing collections get the defaults: refreshed every second, merged when the delta holds
more than 10% of the base version's documents or more than 10,000.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(
            sa.Column("refresh_interval", sa.Float(), nullable=True, server_default="1")
        )
        batch.add_column(
            sa.Column("merge_max_share", sa.Float(), nullable=False, server_default="0.1")
        )
        batch.add_column(
            sa.Column("merge_max_docs", sa.Integer(), nullable=False, server_default="10000")
        )


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("merge_max_docs")
        batch.drop_column("merge_max_share")
        batch.drop_column("refresh_interval")
