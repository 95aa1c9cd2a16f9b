"""Sync state shared by sync processes and servers: runs, quarantine, checkpoints.

SQLite in WAL mode: one writer at a time and readers that never block it, which is what
several server processes and a sync process on one machine need.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.sqlite_wal import use_wal

# Raw payloads are kept so an admin sees what the source sent, but a pathological row
# (a whole file in one cell) must not fill the disk.
MAX_PAYLOAD_BYTES = 8192
# Space kept in a file beside the database and freed when the disk is full, so the run
# that hit the full disk can still record why it failed.
RESERVE_BYTES = 1 << 20

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
  error TEXT,
  host TEXT,
  pid INTEGER
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
CREATE TABLE IF NOT EXISTS pending_quarantine (
  run_id INTEGER PRIMARY KEY,
  biobank_id TEXT NOT NULL,
  records TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
  biobank_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  state TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (biobank_id, stream)
);
"""

# Columns added after the first release: (table, column, declaration), added to older files.
_ADDED_COLUMNS = (
    ("sync_runs", "partial", "INTEGER NOT NULL DEFAULT 0"),
    ("sync_runs", "notes", "TEXT"),
    ("quarantine", "kept", "INTEGER NOT NULL DEFAULT 0"),
    # Where a run's process ran, so a run whose process died shows as such at once.
    ("sync_runs", "host", "TEXT"),
    ("sync_runs", "pid", "INTEGER"),
)

RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
# A sync that did not start because another held the biobank's lock.
REFUSED = "refused"


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
    partial: int = 0  # records kept with some values dropped (each has a quarantine row)
    notes: str | None = None  # how the source was read (a detected paging style, ...)

    @property
    def accepted(self) -> int:
        """Records taken whole: read minus those rejected and those partly accepted."""
        return max(self.read - self.rejected - self.partial, 0)

    # Where the run's process ran, so a run whose process died shows as such at once.
    host: str | None = None
    pid: int | None = None


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
    kept: int = 0  # 1: the record is indexed without the value named here


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class SyncState:
    """The SQLite file holding sync runs, quarantined records and checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Private before SQLite opens it: the quarantine keeps raw source payloads.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self.reserve = self.path.with_name(self.path.name + ".reserve")
        # Set when the reserve had to be freed: the disk is full, and the space freed is for
        # recording runs, not for a sync to fill again.
        self.reserve_spent = False
        self._keep_reserve()
        self.despite_full_disk(self._create)

    def _create(self) -> None:
        with self._connect() as db:
            use_wal(db)  # the mode is kept in the file: once per process is enough
            db.executescript(_SCHEMA)
            for table, column, declaration in _ADDED_COLUMNS:
                present = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def _keep_reserve(self) -> None:
        if self.reserve.exists():
            return
        try:
            with self.reserve.open("wb") as handle:
                handle.write(b"\0" * RESERVE_BYTES)  # written, not sparse: real blocks
        except OSError:  # the disk is full already: try again next time
            self.reserve.unlink(missing_ok=True)

    def despite_full_disk(self, write: Callable[[], None]) -> None:
        """Run a state write; if the disk is full, free the reserve and run it once more."""
        try:
            write()
        except sqlite3.OperationalError:
            if not self.reserve.exists() or not self.disk_full():
                raise
            self.reserve.unlink(missing_ok=True)
            self.reserve_spent = True
            write()

    def disk_full(self) -> bool:
        """Whether the database's disk has less room left than the reserve holds.

        SQLite reports a full disk as "database or disk is full", or, when it cannot even
        create its shared-memory file, as a "disk I/O error"; the free space tells them apart.
        """
        return shutil.disk_usage(self.path.parent).free < RESERVE_BYTES

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; `BEGIN IMMEDIATE` for a write transaction."""
        with self._connect() as db:
            yield db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
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
                "INSERT INTO sync_runs (biobank_id, kind, triggered_by, started_at, outcome, "
                "host, pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (biobank_id, kind, triggered_by, now(), RUNNING, socket.gethostname(), os.getpid()),
            )
            return int(cursor.lastrowid or 0)

    def record_refused(self, biobank_id: str, triggered_by: str, reason: str) -> int:
        """Record a sync that was refused before it started (another holds the lock)."""
        stamp = now()
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO sync_runs (biobank_id, kind, triggered_by, started_at, "
                "finished_at, outcome, duration_s, error, host, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    biobank_id,
                    "full",
                    triggered_by,
                    stamp,
                    stamp,
                    REFUSED,
                    reason,
                    socket.gethostname(),
                    os.getpid(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def prepare_publish(
        self,
        run_id: int,
        generation: str,
        counts: Mapping[str, int],
        rejections: list[dict[str, Any]] | None,
    ) -> None:
        """Before publishing: the generation about to serve, its counts and quarantine.

        A run killed between its publish and its record is then settled truthfully from
        these (`federation.sync.recovery`): succeeded with its generation and quarantine
        if that generation serves, else interrupted.
        """
        # None: the run's quarantine is kept elsewhere (a staged sync's staging store).
        payload = (
            None
            if rejections is None
            else json.dumps(
                [{**r, "payload": cap_payload(r["payload"])} for r in rejections],
                ensure_ascii=False,
                default=str,
            )
        )
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE sync_runs SET generation = ?, read = ?, indexed = ?, rejected = ?, "
                "deleted = ?, withdrawn = ? WHERE id = ?",
                (
                    generation,
                    counts.get("read", 0),
                    counts.get("indexed", 0),
                    counts.get("rejected", 0),
                    counts.get("deleted", 0),
                    counts.get("withdrawn", 0),
                    run_id,
                ),
            )
            if payload is not None:
                db.execute(
                    "INSERT OR REPLACE INTO pending_quarantine (run_id, biobank_id, records) "
                    "SELECT id, biobank_id, ? FROM sync_runs WHERE id = ?",
                    (payload, run_id),
                )
            db.execute("COMMIT")

    def pending_quarantine(self, run_id: int) -> list[dict[str, Any]] | None:
        """The quarantine a run recorded before publishing, if it did."""
        with self._connect() as db:
            row = db.execute(
                "SELECT records FROM pending_quarantine WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def settle_run(self, run_id: int, outcome: str, error: str, *, published: bool) -> None:
        """End a run whose process died: `published` keeps its generation, else clears it."""
        with self._connect() as db:
            db.execute(
                "UPDATE sync_runs SET finished_at = ?, outcome = ?, error = ?, "
                "generation = CASE WHEN ? THEN generation END WHERE id = ? AND outcome = ?",
                (now(), outcome, error, published, run_id, RUNNING),
            )
            db.execute("DELETE FROM pending_quarantine WHERE run_id = ?", (run_id,))

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
            db.execute("DELETE FROM pending_quarantine WHERE run_id = ?", (run_id,))

    def annotate_run(self, run_id: int, notes: list[str], partial: int = 0) -> None:
        """Say how the source was read, and how many records were kept in part."""
        with self._connect() as db:
            db.execute(
                "UPDATE sync_runs SET notes = ?, partial = ? WHERE id = ?",
                ("; ".join(notes) or None, partial, run_id),
            )

    def last_success(self, biobank_id: str, kind: str) -> SyncRun | None:
        """The biobank's most recent succeeded run of this kind (full or incremental)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM sync_runs WHERE biobank_id = ? AND kind = ? AND outcome = ? "
                "ORDER BY id DESC LIMIT 1",
                (biobank_id, kind, SUCCEEDED),
            ).fetchone()
        return SyncRun(**dict(row)) if row else None

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

    def published_biobanks(self) -> set[str]:
        """Biobanks that some run published a generation of: the backend must serve them."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT DISTINCT biobank_id FROM sync_runs WHERE outcome = ? "
                "AND generation IS NOT NULL",
                (SUCCEEDED,),
            ).fetchall()
        return {str(r[0]) for r in rows}

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
                "position, field, value, reason, payload, run_id, first_seen, last_seen, kept) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        int(r.get("kept", 0)),
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

    def biobank_ids(self) -> list[str]:
        """Biobanks with a sync history or quarantined records."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT biobank_id FROM sync_runs UNION SELECT biobank_id FROM quarantine"
            ).fetchall()
        return sorted(r[0] for r in rows)

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
