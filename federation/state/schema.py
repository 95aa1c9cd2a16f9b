"""The tables of the state store, as SQLAlchemy Core metadata.

One schema for both engines. Timestamps of sync runs, quarantine and the audit log are ISO
8601 text in UTC (they sort as text and read the same from either engine); rate-limit
buckets keep epoch seconds because the limiter does arithmetic on them. The migrations in
`federation/state/migrations/` create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

metadata = MetaData()

# --- sync ----------------------------------------------------------------------------------

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biobank_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("triggered_by", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("finished_at", Text),
    Column("outcome", Text, nullable=False),
    Column("read", Integer, nullable=False, server_default=text("0")),
    Column("indexed", Integer, nullable=False, server_default=text("0")),
    Column("rejected", Integer, nullable=False, server_default=text("0")),
    Column("deleted", Integer, nullable=False, server_default=text("0")),
    Column("withdrawn", Integer, nullable=False, server_default=text("0")),
    Column("duration_s", Float),
    Column("generation", Text),
    Column("error", Text),
    # Added by revision 0002 (a pre-store state.db may have them already):
    # records kept with some values dropped, each with a quarantine row.
    Column("partial", Integer, nullable=False, server_default=text("0")),
    Column("notes", Text),  # how the source was read (a detected paging style, ...)
    # Where the run's process ran, so a run whose process died shows as such at once.
    Column("host", Text),
    Column("pid", Integer),
    Index("sync_runs_biobank", "biobank_id", "id"),
    sqlite_autoincrement=True,  # ids never reused, as before the store
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("biobank_id", Text, nullable=False),
    Column("stream", Text, nullable=False),
    Column("record_key", Text, nullable=False),
    Column("source_id", Text),
    Column("position", Text),
    Column("field", Text),
    Column("value", Text),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("first_seen", Text, nullable=False),
    Column("last_seen", Text, nullable=False),
    # 1: the record is indexed without the value named here (revision 0002).
    Column("kept", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("biobank_id", "stream", "record_key"),
)

# A run's quarantine written before it publishes (JSON), so a run killed between publish
# and record is settled with it (federation/sync/recovery.py). Revision 0002.
pending_quarantine = Table(
    "pending_quarantine",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("biobank_id", Text, nullable=False),
    Column("records", Text, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("biobank_id", Text, nullable=False),
    Column("stream", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    PrimaryKeyConstraint("biobank_id", "stream"),
)

sync_requests = Table(
    "sync_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biobank_id", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", Text, nullable=False),
    Column("claimed_at", Text),
    Index(
        "sync_requests_open",
        "biobank_id",
        sqlite_where=text("claimed_at IS NULL"),
        postgresql_where=text("claimed_at IS NULL"),
    ),
    sqlite_autoincrement=True,
)

# Staged records of resumable connectors (federation/sync/staging.py): the sync's own copy
# of what each source holds, written batch by batch with the checkpoint after each batch.
staged = Table(
    "staged",
    metadata,
    Column("biobank_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("stream", Text, nullable=False),
    Column("source_id", Text),
    Column("donor_id", Text),
    Column("collection_id", Text),
    Column("ordinal", Integer),
    Column("data", Text),
    Column("pass", Integer, nullable=False),
    Column("pending", Integer, nullable=False),
    Column("indexed", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("biobank_id", "kind", "id"),
    Index(
        "staged_pending",
        "biobank_id",
        "kind",
        sqlite_where=text("pending = 1"),
        postgresql_where=text("pending = 1"),
    ),
    Index(
        "staged_donor",
        "biobank_id",
        "donor_id",
        sqlite_where=text("kind = 'sample'"),
        postgresql_where=text("kind = 'sample'"),
    ),
    Index(
        "staged_collection",
        "biobank_id",
        "collection_id",
        sqlite_where=text("kind = 'sample'"),
        postgresql_where=text("kind = 'sample'"),
    ),
    Index("staged_source", "biobank_id", "stream", "source_id"),
)

sync_passes = Table(
    "sync_passes",
    metadata,
    Column("biobank_id", Text, primary_key=True),
    Column("pass", Integer, nullable=False),
    Column("mode", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("finished", Integer, nullable=False),
    # Milliseconds since the epoch: past 32 bits.
    Column("version", BigInteger, nullable=False, server_default=text("1")),
)

# --- the gateway ---------------------------------------------------------------------------

# Append-only: the migrations add triggers that refuse UPDATE and DELETE on both engines.
audit_searches = Table(
    "audit_searches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("via", Text, nullable=False),
    Column("roles", Text, nullable=False),
    Column("admin_of", Text, nullable=False),
    Column("approved_for", Text, nullable=False),
    Column("client_ip", Text),
    Column("filters", Text, nullable=False),
    Column("purpose", Text),
    Column("released", Text, nullable=False),
    Column("records_returned", Integer, nullable=False),
    Column("record_count", Integer, nullable=False),
    Index("audit_searches_by_subject", "subject", "id"),
    sqlite_autoincrement=True,
)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", Text, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),
)

# --- the privacy ledger (issue 12) ----------------------------------------------------------

# What a subject has spent of one budget (a scope: a biobank or the whole network) in one
# period (e.g. a day, "2026-12-07"). One row per budget, locked while it is spent from.
privacy_budgets = Table(
    "privacy_budgets",
    metadata,
    Column("subject", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("spent", Float, nullable=False),
    Column("updated_at", Text, nullable=False),
    PrimaryKeyConstraint("subject", "scope", "period"),
)

# Every release charged to a budget, by the fingerprint of the row set it counted: a
# repeat of a fingerprint already released in the period is free.
privacy_releases = Table(
    "privacy_releases",
    metadata,
    Column("subject", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("released_at", Text, nullable=False),
    PrimaryKeyConstraint("subject", "scope", "period", "fingerprint"),
)

APPEND_ONLY_TABLES = ("audit_searches",)
