"""The audit log: who searched for what, under which purpose, and what precision they got.

Every answered search leaves one row: identity (subject, how they signed in, roles and
memberships), client IP, the normalised filters and purpose, the precision released per
biobank, and whether records were returned and how many. Never the records and never the
released numbers: the log must not become a second copy of what disclosure protects.

The search service writes the row (`SearchService.audited`), so every entry point (the
GraphQL API, the web UI through it, `biofed search`) is audited the same way. Writing is
fail-closed: the row is written before the answer leaves the service, and if it cannot be
written the search is not answered: a network that promises biobanks an audit trail of
every search cannot answer searches it is unable to account for.

The store is SQLite (`audit.db` in the data folder, WAL, synchronous=FULL so an
acknowledged row survives a power cut). The app only ever inserts; triggers refuse UPDATE
and DELETE, so removing rows (retention) is a deliberate operator action outside the app.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from federation.consent.purpose import ResearchPurpose
from federation.disclosure.permissions import require_operator
from federation.disclosure.roles import Identity
from federation.errors import BadInput, FederationError, check_range
from federation.search.backend import decode_cursor, encode_cursor
from federation.search.query import MAX_PAGE_SIZE, SampleQuery
from federation.search.result import SearchResult
from federation.sqlite_wal import use_wal

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.db"
DEFAULT_AUDIT_PAGE = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  subject TEXT NOT NULL,
  via TEXT NOT NULL,
  roles TEXT NOT NULL,
  admin_of TEXT NOT NULL,
  approved_for TEXT NOT NULL,
  client_ip TEXT,
  filters TEXT NOT NULL,
  purpose TEXT,
  released TEXT NOT NULL,
  records_returned INTEGER NOT NULL,
  record_count INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS searches_by_subject ON searches (subject, id);
CREATE TRIGGER IF NOT EXISTS searches_append_only_update BEFORE UPDATE ON searches
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS searches_append_only_delete BEFORE DELETE ON searches
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class AuditUnavailable(FederationError):
    """The search could not be written to the audit log, so it is not answered."""

    # To a client this is the same as a backend outage: nothing wrong with the request,
    # try again shortly. The cause is in the server log.
    code = "BACKEND_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "the search cannot be recorded in the audit log right now, so it is not "
            "answered; try again shortly"
        )


@dataclass(frozen=True)
class ReleasedPrecision:
    """What one biobank released for a search: the precision of its counts, not the counts."""

    biobank_id: str
    donors: str
    samples: str
    generation: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One audited search."""

    id: int
    at: str
    subject: str
    via: str
    roles: tuple[str, ...]
    admin_of: tuple[str, ...]
    approved_for: tuple[str, ...]
    client_ip: str | None
    filters: dict[str, Any]
    purpose: dict[str, Any] | None
    released: tuple[ReleasedPrecision, ...]
    records_returned: bool
    record_count: int


@dataclass(frozen=True)
class AuditPage:
    """A page of audit entries, newest first; `end_cursor` continues after the last one."""

    entries: tuple[AuditEntry, ...]
    end_cursor: str | None
    has_next_page: bool


class BadAuditCursor(FederationError, ValueError):
    """An `after` value that is not a cursor of the audit log."""

    code = "BAD_USER_INPUT"


@dataclass(frozen=True)
class AnsweredSearch:
    """One answered search as the search service hands it to an audit sink."""

    identity: Identity
    client_ip: str | None  # None when asked on the server itself (`biofed search`)
    query: SampleQuery
    purpose: ResearchPurpose | None
    result: SearchResult


class SearchAudit(Protocol):
    """Where the search service records every answered search; raises to refuse it."""

    def record(self, search: AnsweredSearch) -> None:
        """Record one search before its answer is returned; AuditUnavailable if it cannot."""


class AuditLog:
    """The append-only SQLite store of audited searches."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            # Private before SQLite opens it (its -wal and -shm files take the same mode):
            # the log says who searched for what.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            if not self._ready:
                with self._lock:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    use_wal(db)
                    db.executescript(_SCHEMA)
                    self._ready = True
            yield db
        finally:
            db.close()

    def record(self, search: AnsweredSearch) -> None:
        """Write the search's row before its answer is returned; AuditUnavailable if it cannot."""
        try:
            self.append(search)
        except (sqlite3.Error, OSError):
            log.exception("writing the audit log %s failed; the search is not answered", self.path)
            raise AuditUnavailable() from None

    def append(self, search: AnsweredSearch) -> int:
        """Write one row; return its id. Raises sqlite3.Error when it cannot."""
        identity, records = search.identity, search.result.records
        row = (
            dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            identity.subject,
            identity.via,
            _json([r.value for r in identity.roles]),
            _json(sorted(identity.admin_of)),
            _json(sorted(identity.approved_for)),
            search.client_ip,
            _json(search.query.normalised()),
            None if search.purpose is None else _json(search.purpose.normalised()),
            _json([vars(r) for r in released_precision(search.result)]),
            int(records is not None),
            0 if records is None else len(records.records),
        )
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO searches (at, subject, via, roles, admin_of, approved_for, "
                "client_ip, filters, purpose, released, records_returned, record_count) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def entries(
        self,
        *,
        first: int = DEFAULT_AUDIT_PAGE,
        after: str | None = None,
        subject: str | None = None,
    ) -> AuditPage:
        """A page of entries, newest first, optionally only one subject's."""
        where: list[str] = []
        params: list[Any] = []
        if after is not None:
            where.append("id < ?")
            params.append(_cursor_id(after))
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM searches {clause}ORDER BY id DESC LIMIT ?", (*params, first + 1)
            ).fetchall()
        entries = tuple(_entry(r) for r in rows[:first])
        end = encode_cursor(("audit", str(entries[-1].id))) if entries else None
        return AuditPage(entries, end, len(rows) > first)


def read_audit_log(
    audit: AuditLog | None,
    identity: Identity,
    *,
    first: int = DEFAULT_AUDIT_PAGE,
    after: str | None = None,
    subject: str | None = None,
) -> AuditPage:
    """A page of the log, newest first: for network operators only."""
    require_operator(identity, "auditLog")
    check_range("first", first, 1, MAX_PAGE_SIZE)
    if audit is None:
        return AuditPage((), None, False)
    try:
        return audit.entries(first=first, after=after, subject=subject)
    except BadAuditCursor:
        raise BadInput("after", after, "not a cursor of the audit log") from None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _cursor_id(cursor: str) -> int:
    try:
        kind, row_id = decode_cursor(cursor)
        if kind != "audit" or not row_id.isdigit():
            raise ValueError
    except ValueError:
        raise BadAuditCursor(cursor) from None
    return int(row_id)


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=int(row["id"]),
        at=str(row["at"]),
        subject=str(row["subject"]),
        via=str(row["via"]),
        roles=tuple(json.loads(row["roles"])),
        admin_of=tuple(json.loads(row["admin_of"])),
        approved_for=tuple(json.loads(row["approved_for"])),
        client_ip=row["client_ip"],
        filters=json.loads(row["filters"]),
        purpose=None if row["purpose"] is None else json.loads(row["purpose"]),
        released=tuple(ReleasedPrecision(**r) for r in json.loads(row["released"])),
        records_returned=bool(row["records_returned"]),
        record_count=int(row["record_count"]),
    )


def released_precision(result: SearchResult) -> tuple[ReleasedPrecision, ...]:
    """The precision each biobank's counts were released at: no values."""
    return tuple(
        ReleasedPrecision(
            b.biobank_id, b.donors.precision.value, b.samples.precision.value, b.generation
        )
        for b in result.by_biobank
    )


class NoAuditLog:
    """The sink of an entry point that has no audit log: it answers no search (fail-closed)."""

    def record(self, search: AnsweredSearch) -> None:
        """Refuse the search: it could not be accounted for."""
        log.error("no audit log for this entry point; refusing to answer the search")
        raise AuditUnavailable()
