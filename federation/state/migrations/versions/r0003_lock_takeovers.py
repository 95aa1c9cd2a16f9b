"""Lock takeovers: each time a sync took over a dead or expired engine lock, for /metrics.

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
    op.create_table(
        "lock_takeovers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("taken_at", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("previous_host", sa.Text),
        sa.Column("previous_pid", sa.Integer),
        sqlite_autoincrement=True,
    )
    op.create_index("lock_takeovers_biobank", "lock_takeovers", ["biobank_id"])


def downgrade() -> None:
    op.drop_index("lock_takeovers_biobank", table_name="lock_takeovers")
    op.drop_table("lock_takeovers")
