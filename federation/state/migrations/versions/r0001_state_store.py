"""The state store: sync runs, quarantine, checkpoints, staging, the sync queue, the audit
log (append-only), rate-limit buckets and the privacy ledger.

A state.db written before the store existed (sync runs, quarantine, checkpoints, staging
and the queue, created by hand-written DDL with the same columns) is adopted as it is: a
table that exists already is kept.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = "the audit log is append-only"


def _table(name: str, *items: Any, **options: Any) -> bool:
    """Create a table unless an older state.db has it; True when created."""
    if sa.inspect(op.get_bind()).has_table(name):
        return False
    op.create_table(name, *items, **options)
    return True


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if _table(
        "sync_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("triggered_by", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("read", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("indexed", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("rejected", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("deleted", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("withdrawn", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("duration_s", sa.Float),
        sa.Column("generation", sa.Text),
        sa.Column("error", sa.Text),
        sqlite_autoincrement=True,
    ):
        op.create_index("sync_runs_biobank", "sync_runs", ["biobank_id", "id"])
    _table(
        "quarantine",
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("source_id", sa.Text),
        sa.Column("position", sa.Text),
        sa.Column("field", sa.Text),
        sa.Column("value", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("first_seen", sa.Text, nullable=False),
        sa.Column("last_seen", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("biobank_id", "stream", "record_key"),
    )
    _table(
        "checkpoints",
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("biobank_id", "stream"),
    )
    if _table(
        "sync_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requested_at", sa.Text, nullable=False),
        sa.Column("claimed_at", sa.Text),
        sqlite_autoincrement=True,
    ):
        op.create_index(
            "sync_requests_open",
            "sync_requests",
            ["biobank_id"],
            sqlite_where=sa.text("claimed_at IS NULL"),
            postgresql_where=sa.text("claimed_at IS NULL"),
        )
    if _table(
        "staged",
        sa.Column("biobank_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("source_id", sa.Text),
        sa.Column("donor_id", sa.Text),
        sa.Column("collection_id", sa.Text),
        sa.Column("ordinal", sa.Integer),
        sa.Column("data", sa.Text),
        sa.Column("pass", sa.Integer, nullable=False),
        sa.Column("pending", sa.Integer, nullable=False),
        sa.Column("indexed", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("biobank_id", "kind", "id"),
    ):
        for name, columns, where in (
            ("staged_pending", ["biobank_id", "kind"], "pending = 1"),
            ("staged_donor", ["biobank_id", "donor_id"], "kind = 'sample'"),
            ("staged_collection", ["biobank_id", "collection_id"], "kind = 'sample'"),
        ):
            op.create_index(
                name,
                "staged",
                columns,
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )
        op.create_index("staged_source", "staged", ["biobank_id", "stream", "source_id"])
    _table(
        "sync_passes",
        sa.Column("biobank_id", sa.Text, primary_key=True),
        sa.Column("pass", sa.Integer, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("finished", sa.Integer, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default=sa.text("1")),
    )
    op.create_table(
        "audit_searches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("via", sa.Text, nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("admin_of", sa.Text, nullable=False),
        sa.Column("approved_for", sa.Text, nullable=False),
        sa.Column("client_ip", sa.Text),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text),
        sa.Column("released", sa.Text, nullable=False),
        sa.Column("records_returned", sa.Integer, nullable=False),
        sa.Column("record_count", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("audit_searches_by_subject", "audit_searches", ["subject", "id"])
    _append_only("audit_searches", dialect)
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_table(
        "privacy_budgets",
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("spent", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("subject", "scope", "period"),
    )
    op.create_table(
        "privacy_releases",
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("epsilon", sa.Float, nullable=False),
        sa.Column("released_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("subject", "scope", "period", "fingerprint"),
    )


def _append_only(table: str, dialect: str) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE) in the database itself, not only in the app.

    Removing rows (retention) is a deliberate operator action: on PostgreSQL a role that
    owns the table drops the trigger first, which shows up in the database's own log.
    """
    if dialect == "sqlite":
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{verb} BEFORE {verb.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
        return
    op.execute(
        "CREATE OR REPLACE FUNCTION biofed_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = "
        f"'{APPEND_ONLY}: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION biofed_append_only()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION biofed_append_only()"
    )


def downgrade() -> None:
    for table in ("privacy_releases", "privacy_budgets", "rate_buckets", "audit_searches"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS biofed_append_only()")
    # The sync tables stay: they may hold a pre-store state.db's history.
