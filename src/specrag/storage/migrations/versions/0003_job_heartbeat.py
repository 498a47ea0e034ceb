"""Build jobs carry a heartbeat, so a running build whose process died without a trace
(kill -9, a lost container) is marked failed by a live server, not left running forever.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "build_jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("build_jobs") as batch:
        batch.drop_column("heartbeat_at")
