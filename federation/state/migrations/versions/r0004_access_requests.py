"""Access requests (issue 15): requests, their parts per biobank, the append-only log of
their state changes and messages, the outbox of notifications, saved searches and their
alerts.

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = "the access request log is append-only"
EVENTS = "access_request_events"


def upgrade() -> None:
    op.create_table(
        "access_requests",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("researcher", sa.Text, nullable=False),
        sa.Column("researcher_email", sa.Text),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("negotiator_link", sa.Text),
    )
    op.create_index(
        "access_requests_by_researcher", "access_requests", ["researcher", "created_at"]
    )
    op.create_table(
        "access_request_parts",
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("consent", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("request_id", "biobank_id"),
    )
    op.create_index("access_request_parts_queue", "access_request_parts", ["biobank_id", "state"])
    op.create_table(
        EVENTS,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_role", sa.Text, nullable=False),
        sa.Column("from_state", sa.Text),
        sa.Column("to_state", sa.Text),
        sa.Column("message", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("access_request_events_by_request", EVENTS, ["request_id", "id"])
    _append_only(EVENTS, op.get_bind().dialect.name)
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("claimed_until", sa.Float),
        sa.Column("delivered_at", sa.Text),
        sa.Column("failed_at", sa.Text),
        sa.Column("last_error", sa.Text),
        sqlite_autoincrement=True,
    )
    where = "delivered_at IS NULL AND failed_at IS NULL"
    op.create_index(
        "notification_outbox_due",
        "notification_outbox",
        ["due_at"],
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )

    op.create_table(
        "saved_searches",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("owner_email", sa.Text),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("generations", sa.Text, nullable=False),
        sa.Column("baseline", sa.Text, nullable=False),
    )
    op.create_index("saved_searches_by_owner", "saved_searches", ["owner", "created_at"])
    op.create_table(
        "saved_search_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("search_id", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("generation", sa.Text, nullable=False),
        sa.Column("released", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("saved_search_alerts_by_owner", "saved_search_alerts", ["owner", "id"])


def _append_only(table: str, dialect: str) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE) of the log in the database itself."""
    if dialect == "sqlite":
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{verb} BEFORE {verb.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
        return
    # biofed_append_only() is revision 0001's: it names the operation and the table.
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION biofed_append_only()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION biofed_append_only()"
    )


def downgrade() -> None:
    for table in (
        "saved_search_alerts",
        "saved_searches",
        "notification_outbox",
        EVENTS,
        "access_request_parts",
        "access_requests",
    ):
        op.drop_table(table)
