"""Sync runs summed per biobank, read at scrape time by `/metrics` (docs/metrics.md).

Computed from the runs every host records in the store, so any gateway reports the
syncs of every worker host, not only what its own processes saw.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, func, select

from federation.state.database import reading
from federation.state.schema import quarantine, sync_runs
from federation.state.sync_records import RUNNING, SUCCEEDED

# What the metrics call the run counts: a rejected record is one kept in quarantine.
STAGES = {
    "read": sync_runs.c.read,
    "indexed": sync_runs.c.indexed,
    "quarantined": sync_runs.c.rejected,
}


@dataclass
class BiobankSyncTotals:
    """One biobank's sync history in numbers."""

    biobank_id: str
    runs: dict[str, int] = field(default_factory=dict)  # finished runs by outcome
    running: int = 0
    records: dict[str, int] = field(default_factory=dict)  # summed over finished runs
    last_success: dict[str, int] = field(default_factory=dict)  # counts of the newest success
    last_success_at: dt.datetime | None = None
    quarantine: int = 0  # records in quarantine now


def sync_totals(engine: Engine) -> dict[str, BiobankSyncTotals]:
    """Every biobank with a recorded run or quarantined record, by id."""
    totals: dict[str, BiobankSyncTotals] = {}

    def of(biobank_id: str) -> BiobankSyncTotals:
        return totals.setdefault(biobank_id, BiobankSyncTotals(biobank_id))

    by_outcome = select(
        sync_runs.c.biobank_id,
        sync_runs.c.outcome,
        func.count(),
        *(func.coalesce(func.sum(column), 0) for column in STAGES.values()),
    ).group_by(sync_runs.c.biobank_id, sync_runs.c.outcome)
    newest = (
        select(func.max(sync_runs.c.id).label("id"))
        .where(sync_runs.c.outcome == SUCCEEDED)
        .group_by(sync_runs.c.biobank_id)
        .subquery()
    )
    last_success = select(sync_runs.c.biobank_id, sync_runs.c.finished_at, *STAGES.values()).join(
        newest, and_(sync_runs.c.id == newest.c.id)
    )
    quarantined = select(quarantine.c.biobank_id, func.count()).group_by(quarantine.c.biobank_id)
    with reading(engine) as db:
        for biobank_id, outcome, runs, *sums in db.execute(by_outcome):
            entry = of(biobank_id)
            if outcome == RUNNING:
                entry.running += int(runs)
                continue
            entry.runs[outcome] = int(runs)
            for stage, value in zip(STAGES, sums, strict=True):
                entry.records[stage] = entry.records.get(stage, 0) + int(value)
        for biobank_id, finished_at, *counts in db.execute(last_success):
            entry = of(biobank_id)
            entry.last_success = {s: int(v) for s, v in zip(STAGES, counts, strict=True)}
            entry.last_success_at = _utc(finished_at) if finished_at else None
        for biobank_id, count in db.execute(quarantined):
            of(biobank_id).quarantine = int(count)
    return totals


def _utc(stamp: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
