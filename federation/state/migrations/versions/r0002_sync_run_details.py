"""The sync state's columns gained before the callers moved onto the store: a run's
partly accepted count, notes, host and pid; the quarantine's `kept`; the pending
quarantine a run writes before it publishes.

A state.db written by the sync's own SQLite code has some or all of them already (that
code added them to older files itself): what exists is kept.

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

# (table, column) in the order the sync's own code added them to older files.
ADDED = (
    ("sync_runs", sa.Column("partial", sa.Integer, nullable=False, server_default=sa.text("0"))),
    ("sync_runs", sa.Column("notes", sa.Text)),
    ("quarantine", sa.Column("kept", sa.Integer, nullable=False, server_default=sa.text("0"))),
    ("sync_runs", sa.Column("host", sa.Text)),
    ("sync_runs", sa.Column("pid", sa.Integer)),
)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, column in ADDED:
        if column.name not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, column)
    if not inspector.has_table("pending_quarantine"):
        op.create_table(
            "pending_quarantine",
            sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("biobank_id", sa.Text, nullable=False),
            sa.Column("records", sa.Text, nullable=False),
        )


def downgrade() -> None:
    # The columns and the table may hold a pre-store state.db's data: they stay.
    pass
