"""Sync state shared by sync processes and servers: runs, quarantine, checkpoints.

SQLite in WAL mode: one writer at a time and readers that never block it, which is what
several server processes and a sync process on one machine need.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Raw payloads are kept so an admin sees what the source sent, but a pathological row
# (a whole file in one cell) must not fill the disk.
MAX_PAYLOAD_BYTES = 8192

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  biobank_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  triggered_by TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  outcome TEXT NOT NULL,
  read INTEGER NOT NULL DEFAULT 0,
  indexed INTEGER NOT NULL DEFAULT 0,
  rejected INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0,
  withdrawn INTEGER NOT NULL DEFAULT 0,
  duration_s REAL,
  generation TEXT,
  error TEXT
);
CREATE INDEX IF NOT EXISTS sync_runs_biobank ON sync_runs (biobank_id, id);
CREATE TABLE IF NOT EXISTS quarantine (
  biobank_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  record_key TEXT NOT NULL,
  source_id TEXT,
  position TEXT,
  field TEXT,
  value TEXT,
  reason TEXT NOT NULL,
  payload TEXT NOT NULL,
  run_id INTEGER NOT NULL,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  PRIMARY KEY (biobank_id, stream, record_key)
);
CREATE TABLE IF NOT EXISTS checkpoints (
  biobank_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  state TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (biobank_id, stream)
);
"""

RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"


@dataclass(frozen=True)
class SyncRun:
    """One recorded sync run of one biobank."""

    id: int
    biobank_id: str
    kind: str
    triggered_by: str
    started_at: str
    finished_at: str | None
    outcome: str
    read: int
    indexed: int
    rejected: int
    deleted: int
    withdrawn: int
    duration_s: float | None
    generation: str | None
    error: str | None


@dataclass(frozen=True)
class QuarantinedRecord:
    """A source record kept out of the index, with the reason, for the biobank's admin."""

    biobank_id: str
    stream: str
    source_id: str | None
    position: str | None
    field: str | None
    value: str | None
    reason: str
    payload: str
    run_id: int
    first_seen: str
    last_seen: str


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class SyncState:
    """The SQLite file holding sync runs, quarantined records and checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Private before SQLite opens it: the quarantine keeps raw source payloads.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; `BEGIN IMMEDIATE` for a write transaction."""
        with self._connect() as db:
            yield db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    # --- runs -----------------------------------------------------------------------------

    def start_run(self, biobank_id: str, kind: str, triggered_by: str) -> int:
        with self._connect() as db:
            # The caller holds the biobank's sync lock, so a run still marked running was
            # killed before it could record its end.
            db.execute(
                "UPDATE sync_runs SET outcome = ?, error = ? WHERE biobank_id = ? AND outcome = ?",
                (INTERRUPTED, "the sync process ended without finishing", biobank_id, RUNNING),
            )
            cursor = db.execute(
                "INSERT INTO sync_runs (biobank_id, kind, triggered_by, started_at, outcome) "
                "VALUES (?, ?, ?, ?, ?)",
                (biobank_id, kind, triggered_by, now(), RUNNING),
            )
            return int(cursor.lastrowid or 0)

    def finish_run(
        self,
        run_id: int,
        outcome: str,
        counts: Mapping[str, int],
        *,
        duration_s: float,
        generation: str | None = None,
        error: str | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE sync_runs SET finished_at = ?, outcome = ?, read = ?, indexed = ?, "
                "rejected = ?, deleted = ?, withdrawn = ?, duration_s = ?, generation = ?, "
                "error = ? WHERE id = ?",
                (
                    now(),
                    outcome,
                    counts.get("read", 0),
                    counts.get("indexed", 0),
                    counts.get("rejected", 0),
                    counts.get("deleted", 0),
                    counts.get("withdrawn", 0),
                    round(duration_s, 3),
                    generation,
                    error,
                    run_id,
                ),
            )

    def runs(self, biobank_id: str | None = None, limit: int = 50) -> list[SyncRun]:
        with self._connect() as db:
            if biobank_id is None:
                rows = db.execute("SELECT * FROM sync_runs ORDER BY id DESC LIMIT ?", (limit,))
            else:
                rows = db.execute(
                    "SELECT * FROM sync_runs WHERE biobank_id = ? ORDER BY id DESC LIMIT ?",
                    (biobank_id, limit),
                )
            return [SyncRun(**dict(r)) for r in rows.fetchall()]

    def run(self, run_id: int) -> SyncRun | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM sync_runs WHERE id = ?", (run_id,)).fetchone()
            return SyncRun(**dict(row)) if row else None

    # --- quarantine -----------------------------------------------------------------------

    def replace_quarantine(
        self, biobank_id: str, run_id: int, records: list[dict[str, Any]]
    ) -> None:
        """After a full sync: what it rejected is the quarantine; fixed records leave it."""
        stamp = now()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            first_seen = dict(
                db.execute(
                    "SELECT stream || char(0) || record_key, first_seen FROM quarantine "
                    "WHERE biobank_id = ?",
                    (biobank_id,),
                ).fetchall()
            )
            db.execute("DELETE FROM quarantine WHERE biobank_id = ?", (biobank_id,))
            db.executemany(
                "INSERT OR REPLACE INTO quarantine (biobank_id, stream, record_key, source_id, "
                "position, field, value, reason, payload, run_id, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        biobank_id,
                        r["stream"],
                        r["record_key"],
                        r["source_id"],
                        r["position"],
                        r["field"],
                        r["value"],
                        r["reason"],
                        cap_payload(r["payload"]),
                        run_id,
                        first_seen.get(f"{r['stream']}\0{r['record_key']}", stamp),
                        stamp,
                    )
                    for r in records
                ],
            )
            db.execute("COMMIT")

    def quarantine(
        self, biobank_id: str, *, limit: int = 100, offset: int = 0, stream: str | None = None
    ) -> list[QuarantinedRecord]:
        query = "SELECT * FROM quarantine WHERE biobank_id = ?"
        params: list[Any] = [biobank_id]
        if stream:
            query += " AND stream = ?"
            params.append(stream)
        query += " ORDER BY stream, record_key LIMIT ? OFFSET ?"
        with self._connect() as db:
            rows = db.execute(query, [*params, limit, offset]).fetchall()
        # sqlite3.Row iterates its values, not its keys: keys() is needed here.
        fields = [k for k in rows[0].keys() if k != "record_key"] if rows else []  # noqa: SIM118
        return [QuarantinedRecord(**{k: r[k] for k in fields}) for r in rows]

    def quarantine_count(self, biobank_id: str) -> int:
        with self._connect() as db:
            row = db.execute(
                "SELECT count(*) FROM quarantine WHERE biobank_id = ?", (biobank_id,)
            ).fetchone()
        return int(row[0])

    # --- checkpoints ----------------------------------------------------------------------

    def checkpoint(self, biobank_id: str, stream: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT state FROM checkpoints WHERE biobank_id = ? AND stream = ?",
                (biobank_id, stream),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def save_checkpoint(self, biobank_id: str, stream: str, state: Mapping[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoints (biobank_id, stream, state, updated_at) "
                "VALUES (?, ?, ?, ?)",
                (biobank_id, stream, json.dumps(dict(state), sort_keys=True), now()),
            )


def cap_payload(payload: Mapping[str, Any] | str) -> str:
    text = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, default=str, ensure_ascii=False)
    )
    raw = text.encode()
    if len(raw) <= MAX_PAYLOAD_BYTES:
        return text
    return raw[: MAX_PAYLOAD_BYTES - 32].decode(errors="ignore") + f"... [{len(raw)} bytes, cut]"
