"""The audit log: who searched for what, under which purpose, and what precision they got.

Every answered search leaves one row: identity (subject, how they signed in, roles and
memberships), client IP, the normalised filters and purpose, the precision released per
biobank, and whether records were returned and how many. Never the records and never the
released numbers: the log must not become a second copy of what disclosure protects.

The search service writes the row (`SearchService.audited`), so every entry point (the
GraphQL API, the web UI through it, `biofed search`) is audited the same way. Writing is
fail-closed: the row is committed before the answer leaves the process, and if it cannot
be written the search is not answered: a network that promises biobanks an audit trail of
every search cannot answer searches it is unable to account for. Rows of concurrent
searches share one commit, and the GraphQL endpoint waits for it only just before its
answer leaves (federation/search/audit_commit.py).

The rows live in the state store (`federation/state/audit_trail.py`: `state.db` in the data
folder, or the PostgreSQL database every gateway host shares), so one log covers every
host. The app only ever inserts; triggers in the database refuse UPDATE and DELETE (and
TRUNCATE on PostgreSQL), so removing rows (retention) is a deliberate operator action
outside the app (docs/state.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from federation.consent.purpose import ResearchPurpose
from federation.disclosure.permissions import require_operator
from federation.disclosure.roles import Identity
from federation.errors import BadInput, FederationError, check_range, unencodable
from federation.search.audit_commit import CommitFailed, GroupCommit, defer
from federation.search.backend import decode_cursor, encode_cursor
from federation.search.query import MAX_PAGE_SIZE, SampleQuery
from federation.search.result import SearchResult
from federation.state.audit_trail import AuditRecord, AuditTrail

log = logging.getLogger(__name__)

DEFAULT_AUDIT_PAGE = 20


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
    """The append-only audit log of answered searches, in the state store."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        # Rows of concurrent searches share one transaction (federation/search/audit_commit.py).
        self.commits = GroupCommit(trail.append_many)

    def record(self, search: AnsweredSearch) -> None:
        """Write the search's row before its answer is returned; AuditUnavailable if it cannot.

        Inside `deferred_audit` the row is queued and the block's owner waits for its commit
        before answering; elsewhere this waits for the commit itself.
        """
        receipt = self.commits.submit(audit_record(search))
        if defer(receipt):
            return
        try:
            receipt.wait()
        except CommitFailed:
            raise AuditUnavailable() from None

    def append(self, search: AnsweredSearch) -> int:
        """Write one row at once, in its own transaction; return its id. Raises
        SQLAlchemyError when it cannot."""
        return self.trail.append(audit_record(search))

    def entries(
        self,
        *,
        first: int = DEFAULT_AUDIT_PAGE,
        after: str | None = None,
        subject: str | None = None,
    ) -> AuditPage:
        """A page of entries, newest first, optionally only one subject's."""
        before_id = None if after is None else _cursor_id(after)
        records, more = self.trail.page(first, before_id=before_id, subject=subject)
        entries = tuple(_entry(r) for r in records)
        end = encode_cursor(("audit", str(entries[-1].id))) if entries else None
        return AuditPage(entries, end, more)


def audit_record(search: AnsweredSearch) -> AuditRecord:
    """The row an answered search leaves: who, from where, what was asked, at what precision."""
    identity, records = search.identity, search.result.records
    return AuditRecord(
        at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        subject=_storable(identity.subject),
        via=identity.via,
        roles=tuple(r.value for r in identity.roles),
        admin_of=tuple(_storable(b) for b in identity.admin_of),
        approved_for=tuple(_storable(b) for b in identity.approved_for),
        client_ip=search.client_ip,
        filters=_storable(search.query.normalised()),
        purpose=None if search.purpose is None else _storable(search.purpose.normalised()),
        released=tuple(vars(r) for r in released_precision(search.result)),
        records_returned=records is not None,
        record_count=0 if records is None else len(records.records),
    )


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


def _storable(value: Any) -> Any:
    """`value` with lone UTF-16 surrogates escaped in every string: the inputs are checked
    before a search runs, and this keeps an unchecked one from failing the insert (an
    encoding error there would refuse the search as if the log were down)."""
    if isinstance(value, str):
        return unencodable(value) or value
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _cursor_id(cursor: str) -> int:
    try:
        kind, row_id = decode_cursor(cursor)
        if kind != "audit" or not row_id.isdigit():
            raise ValueError
    except ValueError:
        raise BadAuditCursor(cursor) from None
    return int(row_id)


def _entry(record: AuditRecord) -> AuditEntry:
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    values["released"] = tuple(ReleasedPrecision(**r) for r in record.released)
    return AuditEntry(**values)


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
