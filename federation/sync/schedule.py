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
from federation.state.sync_records import SyncRequest
from federation.sync.state import SyncRun, SyncState

MODES = ("auto", "full", "incremental")


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
        # get_prev is strictly before its start, so start a second later to include a tick
        # at `at` itself; but within the last second before a tick that finds the coming
        # tick, which is after `at` (10:59:59.5 gave 11:00): step back from it then.
        value: dt.datetime = croniter(self.cron, at + dt.timedelta(seconds=1)).get_prev(dt.datetime)
        if value > at:
            value = croniter(self.cron, value).get_prev(dt.datetime)
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


class SyncQueue:
    """Requested syncs in the state store, taken by `biofed worker`."""

    def __init__(self, state: SyncState) -> None:
        self.requests = state.store.sync_requests

    def request(self, biobank_id: str, requested_by: str, mode: str = "auto") -> SyncRequest:
        """Queue a sync; the open request for the biobank if there is one already."""
        return self.requests.request(biobank_id, requested_by, mode)

    def claim(self) -> list[SyncRequest]:
        """Take every open request (each is taken by exactly one worker)."""
        return self.requests.claim()

    def pending(self) -> list[SyncRequest]:
        """Open requests, oldest first."""
        return self.requests.pending()

    def recent(self, biobank_ids: list[str] | None, limit: int) -> list[SyncRequest]:
        """The latest requests, taken or not, newest first; of these biobanks (None: all)."""
        return self.requests.recent(biobank_ids, limit)
