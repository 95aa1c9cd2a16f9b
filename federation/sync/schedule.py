"""Sync schedules (cron expressions in the network file) and the queue of requested syncs.

A biobank's entry in the network file may say when it is synced:

```yaml
- id: de-heidelberg-hosp
  schedule: "*/30 * * * *"                          # auto: incremental when it can be
- id: jp-osaka-hosp
  schedule: {incremental: "*/15 * * * *", full: "0 3 * * 0"}
```

`biofed worker` looks every poll interval at what is due. A schedule is due when its most
recent tick is later than the start of the biobank's last run of that kind (a full tick
counts only full runs; an incremental or auto tick counts any run). So a worker that was
down for a day runs each missed schedule once, not once per missed tick, and a biobank
that an admin synced by hand after the tick is not synced again. A biobank with a
schedule that has never been synced is due at once.

Biobank admins ask for a sync through the GraphQL `startSync` mutation; the gateway only
queues the request here (the gateway never talks to a source) and the worker runs it.
One request per biobank is queued at a time: asking again returns the queued one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from croniter import CroniterBadCronError, croniter

from federation.errors import FederationError
from federation.sync.state import SyncRun, SyncState, now

MODES = ("auto", "full", "incremental")

_QUEUE = """
CREATE TABLE IF NOT EXISTS sync_requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  biobank_id TEXT NOT NULL,
  mode TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  requested_at TEXT NOT NULL,
  claimed_at TEXT
);
CREATE INDEX IF NOT EXISTS sync_requests_open ON sync_requests (biobank_id)
  WHERE claimed_at IS NULL;
"""


class ScheduleError(FederationError, ValueError):
    """A schedule in the network file is not valid; the message names the biobank."""

    code = "SCHEDULE_INVALID"


@dataclass(frozen=True)
class Schedule:
    biobank_id: str
    mode: str  # auto | full | incremental
    cron: str

    def next_tick(self, at: dt.datetime) -> dt.datetime:
        """The first tick after `at`."""
        value: dt.datetime = croniter(self.cron, at).get_next(dt.datetime)
        return value

    def last_tick(self, at: dt.datetime) -> dt.datetime:
        """The most recent tick at or before `at`."""
        value: dt.datetime = croniter(self.cron, at + dt.timedelta(seconds=1)).get_prev(dt.datetime)
        return value

    def is_due(self, runs: list[SyncRun], at: dt.datetime) -> bool:
        """Due when its last tick came after the start of the last run it counts."""
        counted = [r for r in runs if self.mode != "full" or r.kind == "full"]
        if not counted:
            return True
        last_start = dt.datetime.fromisoformat(counted[0].started_at)
        return self.last_tick(at) > last_start


def read_schedules(network_path: Path) -> list[Schedule]:
    """Every biobank's schedules from the network file, checked."""
    document = yaml.safe_load(Path(network_path).read_text(encoding="utf-8")) or {}
    schedules = []
    for entry in document.get("biobanks") or ():
        biobank_id = str(entry.get("id"))
        spec = entry.get("schedule")
        if spec in (None, ""):
            continue
        items: dict[str, Any] = {"auto": spec} if isinstance(spec, str) else spec
        if not isinstance(items, dict):
            raise ScheduleError(f"{biobank_id}: schedule must be a cron line or a mapping")
        for mode, cron in items.items():
            if mode not in MODES:
                raise ScheduleError(f"{biobank_id}: schedule.{mode}: not one of {MODES}")
            try:
                croniter(str(cron))
            except (CroniterBadCronError, ValueError) as err:
                raise ScheduleError(
                    f"{biobank_id}: schedule.{mode}: {cron!r} is not a cron line ({err})"
                ) from None
            schedules.append(Schedule(biobank_id, str(mode), str(cron)))
    return schedules


def due(
    schedules: list[Schedule], state: SyncState, at: dt.datetime | None = None
) -> dict[str, str]:
    """Biobank -> mode of the syncs due now (full wins when both are due)."""
    at = at or dt.datetime.now(dt.UTC)
    wanted: dict[str, str] = {}
    for schedule in schedules:
        already_full = wanted.get(schedule.biobank_id) == "full"
        if not already_full and schedule.is_due(state.runs(schedule.biobank_id, limit=20), at):
            wanted[schedule.biobank_id] = schedule.mode
    return wanted


@dataclass(frozen=True)
class SyncRequest:
    """A sync asked for by a biobank admin, waiting for (or taken by) the worker."""

    id: int
    biobank_id: str
    mode: str
    requested_by: str
    requested_at: str
    claimed_at: str | None


class SyncQueue:
    """Requested syncs in the sync state store, taken by `biofed worker`."""

    def __init__(self, state: SyncState) -> None:
        self.state = state
        with state.connect() as db:
            db.executescript(_QUEUE)

    def request(self, biobank_id: str, requested_by: str, mode: str = "auto") -> SyncRequest:
        """Queue a sync; the open request for the biobank if there is one already."""
        with self.state.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT * FROM sync_requests WHERE biobank_id = ? AND claimed_at IS NULL",
                (biobank_id,),
            ).fetchone()
            if row is None:
                cursor = db.execute(
                    "INSERT INTO sync_requests (biobank_id, mode, requested_by, requested_at) "
                    "VALUES (?, ?, ?, ?)",
                    (biobank_id, mode, requested_by, now()),
                )
                row = db.execute(
                    "SELECT * FROM sync_requests WHERE id = ?", (cursor.lastrowid,)
                ).fetchone()
            db.execute("COMMIT")
        return SyncRequest(**dict(row))

    def claim(self) -> list[SyncRequest]:
        """Take every open request (each is taken by exactly one worker)."""
        stamp = now()
        with self.state.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT * FROM sync_requests WHERE claimed_at IS NULL ORDER BY id"
            ).fetchall()
            db.executemany(
                "UPDATE sync_requests SET claimed_at = ? WHERE id = ?",
                [(stamp, r["id"]) for r in rows],
            )
            db.execute("COMMIT")
        return [SyncRequest(**{**dict(r), "claimed_at": stamp}) for r in rows]

    def pending(self) -> list[SyncRequest]:
        with self.state.connect() as db:
            rows = db.execute(
                "SELECT * FROM sync_requests WHERE claimed_at IS NULL ORDER BY id"
            ).fetchall()
        return [SyncRequest(**dict(r)) for r in rows]

    def recent(self, biobank_ids: list[str] | None, limit: int) -> list[SyncRequest]:
        """The latest requests, taken or not, newest first; of these biobanks (None: all)."""
        where, params = "", []
        if biobank_ids is not None:
            where = f"WHERE biobank_id IN ({', '.join('?' for _ in biobank_ids)})"
            params = list(biobank_ids)
        with self.state.connect() as db:
            rows = db.execute(
                f"SELECT * FROM sync_requests {where} ORDER BY id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        return [SyncRequest(**dict(r)) for r in rows]
