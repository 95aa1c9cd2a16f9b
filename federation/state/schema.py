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

# --- access requests (issue 15; federation/requests/) ---------------------------------------

# One request of a researcher: the exact question (a SampleQuery as JSON), its sentence in
# the researcher's language, the declared purpose (DUO terms), title and description.
access_requests = Table(
    "access_requests",
    metadata,
    Column("id", Text, primary_key=True),
    Column("researcher", Text, nullable=False),
    Column("researcher_email", Text),
    Column("language", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("negotiator_link", Text),
    Index("access_requests_by_researcher", "researcher", "created_at"),
)

# One biobank's part of a request: its own state, and the consent check as released to the
# researcher's role at submission (JSON).
access_request_parts = Table(
    "access_request_parts",
    metadata,
    Column("request_id", Text, nullable=False),
    Column("biobank_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("consent", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    PrimaryKeyConstraint("request_id", "biobank_id"),
    Index("access_request_parts_queue", "biobank_id", "state"),
)

# Every state change and message of every part: the request's audit log and its message
# thread in one append-only table (the migrations refuse UPDATE and DELETE).
access_request_events = Table(
    "access_request_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Text, nullable=False),
    Column("biobank_id", Text, nullable=False),
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("actor_role", Text, nullable=False),
    Column("from_state", Text),
    Column("to_state", Text),
    Column("message", Text),
    Index("access_request_events_by_request", "request_id", "id"),
    sqlite_autoincrement=True,
)

# Notifications waiting to go out (e-mail, webhooks): written in the transaction of the
# change they tell about, delivered by a background deliverer with retries and back-off.
notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Epoch seconds: the deliverer does arithmetic on them.
    Column("due_at", Float, nullable=False),
    Column("claimed_until", Float),
    Column("delivered_at", Text),
    Column("failed_at", Text),
    Column("last_error", Text),
    Index(
        "notification_outbox_due",
        "due_at",
        sqlite_where=text("delivered_at IS NULL AND failed_at IS NULL"),
        postgresql_where=text("delivered_at IS NULL AND failed_at IS NULL"),
    ),
    sqlite_autoincrement=True,
)

# --- saved searches and their alerts (issue 15 point 6) --------------------------------------

# A researcher's saved question, with who they were when they saved it (the identity its
# alerts are computed as), the generation of each biobank it was last checked against and
# the figures then released (JSON).
saved_searches = Table(
    "saved_searches",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("owner_email", Text),
    Column("identity", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("purpose", Text),
    Column("language", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("generations", Text, nullable=False),
    Column("baseline", Text, nullable=False),
    Index("saved_searches_by_owner", "owner", "created_at"),
)

# One alert: new matching samples at a biobank after a publish, with the figures a fresh
# search released to the owner then (JSON).
saved_search_alerts = Table(
    "saved_search_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("search_id", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("at", Text, nullable=False),
    Column("biobank_id", Text, nullable=False),
    Column("generation", Text, nullable=False),
    Column("released", Text, nullable=False),
    Index("saved_search_alerts_by_owner", "owner", "id"),
    sqlite_autoincrement=True,
)

APPEND_ONLY_TABLES = ("audit_searches", "access_request_events")

# --- metrics -------------------------------------------------------------------------------

# Each time a sync took over the engine lock of a biobank from a holder that had died or
# let it expire; counted by `/metrics` (docs/metrics.md), whichever host the sync ran on.
lock_takeovers = Table(
    "lock_takeovers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biobank_id", Text, nullable=False),
    Column("taken_at", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("previous_host", Text),
    Column("previous_pid", Integer),
    Index("lock_takeovers_biobank", "biobank_id"),
    sqlite_autoincrement=True,
)

# --- publications --------------------------------------------------------------------------

# One counter per search backend's data (its scope: the engine's index prefix, the embedded
# index folder), bumped by every publish, so every server process and host sees a publish at
# once with one indexed row read per search (revision 0005, federation/search/warm.py).
publications = Table(
    "publications",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("serial", BigInteger, nullable=False),
    Column("published_at", Text, nullable=False),
)

# The answers every visitor asks for (the landing page), computed once after a publish and
# kept as raw backend figures (JSON) under the publication they were computed at; released
# under each asker's rules at every use like any other answer (revision 0005).
warm_answers = Table(
    "warm_answers",
    metadata,
    Column("scope", Text, nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("computed_at", Text, nullable=False),
    PrimaryKeyConstraint("scope", "serial", "question"),
)
