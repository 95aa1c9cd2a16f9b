"""The state store: every piece of state the processes of a deployment share.

One object per process, opened from the settings (`state_url`, else `state.db` in the data
folder), with one part per area. Everything goes through SQLAlchemy Core, so the same code
runs on the embedded SQLite file and on a PostgreSQL database that several gateway hosts
and sync workers share.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from federation.state import schema_version
from federation.state.access_requests import AccessRequestRecords, NotificationOutbox
from federation.state.audit_trail import AuditTrail
from federation.state.database import (
    SQLITE,
    create_state_engine,
    reading,
    shown,
    state_url,
    writing,
)
from federation.state.ledger import PrivacyLedger
from federation.state.lock_takeovers import LockTakeovers
from federation.state.publications import Publications
from federation.state.rate_buckets import RateBuckets
from federation.state.saved_searches import SavedSearches
from federation.state.sync_records import Checkpoints, Quarantine, SyncRequests, SyncRuns

log = logging.getLogger(__name__)


class StateStore:
    """Sync runs, quarantine, checkpoints, the sync queue, the audit log, rate-limit
    buckets, the privacy ledger, engine lock takeovers, access requests, saved searches, the
    notification outbox and the publication counters with their warm answers, in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs = SyncRuns(engine)
        self.quarantine = Quarantine(engine)
        self.checkpoints = Checkpoints(engine)
        self.sync_requests = SyncRequests(engine)
        self.audit = AuditTrail(engine)
        self.rate_buckets = RateBuckets(engine)
        self.ledger = PrivacyLedger(engine)
        self.outbox = NotificationOutbox(engine)
        self.access_requests = AccessRequestRecords(engine, self.outbox)
        self.saved_searches = SavedSearches(engine, self.outbox)
        self.lock_takeovers = LockTakeovers(engine)
        self.publications = Publications(engine)

    @classmethod
    def open(cls, url: URL, *, migrate: bool | None = None) -> StateStore:
        """Open a store and check its schema.

        `migrate` None: upgrade an embedded SQLite file in place, but refuse a PostgreSQL
        store that is behind (SchemaOutOfDate says to run `biofed migrate`).
        """
        engine = create_state_engine(url)
        if migrate is None:
            migrate = engine.dialect.name == SQLITE
        try:
            # Checking first keeps a start from taking the write lock when nothing is due.
            if migrate and schema_version.current(engine) != schema_version.head():
                before, after = schema_version.upgrade(engine)
                if before != after:
                    log.info("state store %s migrated from %s to %s", shown(url), before, after)
            else:
                schema_version.check(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def location(self) -> str:
        """Where the store is, for messages (never the password)."""
        return shown(self.engine.url)

    @property
    def file(self) -> Path | None:
        """The SQLite file of an embedded store (None on a database server)."""
        if self.engine.dialect.name != SQLITE or self.engine.url.database is None:
            return None
        return Path(self.engine.url.database)

    @property
    def shared(self) -> bool:
        """Whether several hosts can use this store (a database server, not a file)."""
        return self.engine.dialect.name != SQLITE

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction for parts that keep their own tables (sync staging)."""
        with writing(self.engine) as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction that takes no write lock."""
        with reading(self.engine) as connection:
            yield connection

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def open_state_store(
    url_setting: str | None,
    data_dir: Path,
    *,
    migrate: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> StateStore:
    """The store the settings name: `state_url`, else `state.db` in the data folder."""
    return StateStore.open(state_url(url_setting, data_dir, environ), migrate=migrate)
