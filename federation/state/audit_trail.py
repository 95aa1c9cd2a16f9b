"""The audit log's rows in the store: appended, paged, never changed.

The store knows rows, not identities: `federation.gateway.audit` decides what a search
leaves in the log. JSON columns are written with sorted keys so equal values read equal.
The migrations refuse UPDATE and DELETE on this table in the database itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row, insert, select

from federation.state.database import reading, stored_json, writing
from federation.state.schema import audit_searches

_JSON_COLUMNS = ("roles", "admin_of", "approved_for", "filters", "purpose", "released")


@dataclass(frozen=True)
class AuditRecord:
    """One audited search as stored: identity, filters, purpose and released precision."""

    at: str
    subject: str
    via: str
    roles: tuple[str, ...]
    admin_of: tuple[str, ...]
    approved_for: tuple[str, ...]
    client_ip: str | None
    filters: dict[str, Any]
    purpose: dict[str, Any] | None
    released: tuple[dict[str, Any], ...]
    records_returned: bool
    record_count: int
    id: int = field(default=0)


def _record(row: Row[Any]) -> AuditRecord:
    values = row._asdict()
    for name in _JSON_COLUMNS:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    for name in ("roles", "admin_of", "approved_for", "released"):
        values[name] = tuple(values[name])
    values["records_returned"] = bool(values["records_returned"])
    return AuditRecord(**values)


def _values(record: AuditRecord) -> dict[str, Any]:
    """The row's columns as stored (JSON columns as text)."""
    return {
        "at": record.at,
        "subject": record.subject,
        "via": record.via,
        "roles": stored_json(list(record.roles)),
        "admin_of": stored_json(sorted(record.admin_of)),
        "approved_for": stored_json(sorted(record.approved_for)),
        "client_ip": record.client_ip,
        "filters": stored_json(record.filters),
        "purpose": None if record.purpose is None else stored_json(record.purpose),
        "released": stored_json(list(record.released)),
        "records_returned": int(record.records_returned),
        "record_count": record.record_count,
    }


class AuditTrail:
    """Append-only audited searches, readable newest first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, record: AuditRecord) -> int:
        """Write one row and return its id; raises when it cannot be written."""
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[AuditRecord]) -> list[int]:
        """Write rows in one transaction (one commit for all) and return their ids in order;
        raises when they cannot be written, and then none is."""
        statement = insert(audit_searches).returning(audit_searches.c.id)
        with writing(self.engine) as db:
            return [int(db.execute(statement, _values(r)).scalar_one()) for r in records]

    def page(
        self, first: int, *, before_id: int | None = None, subject: str | None = None
    ) -> tuple[list[AuditRecord], bool]:
        """Up to `first` rows older than `before_id`, newest first, and whether more exist."""
        query = select(audit_searches).order_by(audit_searches.c.id.desc()).limit(first + 1)
        if before_id is not None:
            query = query.where(audit_searches.c.id < before_id)
        if subject is not None:
            query = query.where(audit_searches.c.subject == subject)
        with reading(self.engine) as db:
            rows = db.execute(query).all()
        return [_record(r) for r in rows[:first]], len(rows) > first
