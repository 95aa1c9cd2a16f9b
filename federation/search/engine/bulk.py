"""Documents as JSON and bulk payloads: what a load or an incremental change sends."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from federation.search.documents import COLUMNS
from federation.search.engine.client import (
    EngineError,
    EngineUnavailable,
    Written,
)
from federation.search.engine.layout import DONOR_KIND, NESTED, SAMPLE_KIND, sample_doc_id
from federation.search.fingerprint import DONOR_KEY_FIELD, donor_key

# Bulk requests of a few MB keep the engine busy without queueing huge requests.
BULK_MAX_BYTES = 8 * 1024 * 1024
BULK_MAX_ACTIONS = 10_000
# Bulk requests in flight during a load: the engine indexes one while the next is encoded.
BULK_IN_FLIGHT = 2


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # Stored in UTC, as the embedded store does; a naive time is taken to be UTC.
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in the engine")


def dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, default=_json_default, separators=(",", ":"), ensure_ascii=False
    ).encode()


SAMPLE_HEAD = b'{"kind":"' + SAMPLE_KIND.encode() + b'",'


def _sql_json_value(name: str, kind: str) -> str:
    column = '"' + name + '"'
    if kind == "timestamp":
        # As _json_default writes it: ISO 8601 in UTC (DuckDB's own text has a space).
        return f"strftime(timezone('UTC', {column}), '%Y-%m-%dT%H:%M:%S.%f+00:00')"
    return column


def spool_json_sql(path: Path) -> str:
    """SQL reading a spool file as (donor_id, sample doc id as JSON, row JSON, donor_ord)
    by donor.

    The row JSON has the COLUMNS in order, as `_dumps` of the row would; the id comes out
    JSON-quoted so any character in a source's sample id survives into the bulk action.
    """
    fields = ", ".join(f"{name} := {_sql_json_value(name, kind)}" for name, kind in COLUMNS.items())
    source = "'" + str(path).replace("'", "''") + "'"
    return (
        f"SELECT donor_id, to_json('{sample_doc_id('')}' || sample_id)::VARCHAR AS doc_id, "
        f"to_json(struct_pack({fields}))::VARCHAR AS doc, donor_ord "
        f"FROM read_parquet({source}) ORDER BY donor_id, sample_id"
    )


def sample_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The flat document of one sample row (for record pages and incremental rebuilds)."""
    return {"kind": SAMPLE_KIND, **{name: row.get(name) for name in COLUMNS}}


def donor_document(
    biobank_id: str, donor_id: str, rows: Sequence[Mapping[str, Any]], *, keyed: bool = True
) -> Any:
    """A donor with every one of its sample rows nested: the unit donor counts are made of
    (with its key unless the index predates donor keys: `keyed` false)."""
    document: dict[str, Any] = {"kind": DONOR_KIND, "biobank_id": biobank_id, "donor_id": donor_id}
    if keyed:
        # At the root, where `reverse_nested` sums it into the donors' fingerprint.
        document[DONOR_KEY_FIELD] = donor_key(rows[0]["donor_ord"])
    document[NESTED] = [{name: row.get(name) for name in COLUMNS} for row in rows]
    return document


class BulkPayloads:
    """Accumulates actions into NDJSON payloads of a bounded size."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._size = 0
        self._actions = 0

    def add(self, action: Mapping[str, Any], document: Mapping[str, Any] | None) -> bytes | None:
        """Add one action; return a full payload when this one filled it."""
        return self.add_encoded(action, None if document is None else dumps(document))

    def add_encoded(self, action: Mapping[str, Any], document: bytes | None) -> bytes | None:
        """Add one action whose document is already JSON."""
        return self.add_line(dumps(action), document)

    def add_line(self, line: bytes, document: bytes | None) -> bytes | None:
        """Add one action already encoded as JSON, with its document if it has one."""
        self._lines.append(line)
        self._size += len(line) + 1
        if document is not None:
            self._lines.append(document)
            self._size += len(document) + 1
        self._actions += 1
        if self._size >= BULK_MAX_BYTES or self._actions >= BULK_MAX_ACTIONS:
            return self.take()
        return None

    def take(self) -> bytes | None:
        """The payload so far (None when empty), and start a new one."""
        if not self._lines:
            return None
        payload = b"\n".join(self._lines) + b"\n"
        self._lines, self._size, self._actions = [], 0, 0
        return payload


class _Overloaded(EngineUnavailable):
    """Some bulk items were refused with 429: the whole payload is sent again (idempotent)."""


def raise_for_bulk(written: Sequence[Written], *, conflicts_ok: bool) -> None:
    for item in written:
        if item.status < 300 or (conflicts_ok and item.status in (404, 409)):
            continue
        if item.status == 429 or item.status >= 500:
            raise _Overloaded(f"engine refused bulk items ({item.status}): {item.error}")
        raise EngineError(f"document {item.id} rejected ({item.status}): {item.error}", item.status)
