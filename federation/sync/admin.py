"""Sync administration: who may see sync runs and quarantined records, and start a sync.

The one place that decides access to a biobank's operational data. Entry points (the
GraphQL gateway, later others) parse their input and call these methods with the caller's
`Identity`; a refusal is a `FederationError` (UNAUTHENTICATED, FORBIDDEN, NOT_FOUND,
BAD_USER_INPUT) that each entry point shows with its code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from federation.disclosure.permissions import require_admin, require_signed_in
from federation.disclosure.roles import Identity
from federation.errors import NotFound, check_range
from federation.search.query import MAX_PAGE_SIZE
from federation.settings import Network
from federation.state.sync_records import SyncRequest
from federation.sync.recovery import Published, settle
from federation.sync.schedule import SyncQueue, read_schedules
from federation.sync.staging import FULL, INCREMENTAL
from federation.sync.state import FAILED, RUNNING, SUCCEEDED, QuarantinedRecord, SyncRun, SyncState

# What the gateway shows of runs and quarantine comes from here, so it needs no other
# import from the sync room.
__all__ = [
    "DEFAULT_QUARANTINE_PAGE",
    "DEFAULT_SYNC_RUNS",
    "Freshness",
    "QuarantinedRecord",
    "QueuedSync",
    "RequestedSync",
    "ScheduledSync",
    "SyncAdministration",
    "SyncRun",
]

DEFAULT_SYNC_RUNS = 20
DEFAULT_QUARANTINE_PAGE = 50
# Data whose last successful sync is older than this is shown as stale: a biobank's
# holdings change over weeks, and a weekly full sync is the slowest common schedule.
STALE_AFTER = dt.timedelta(days=7)
# How many recent runs are read to find the last attempt and the last success.
FRESHNESS_RUNS = 20


@dataclass(frozen=True)
class Freshness:
    """How current a biobank's searchable data is: public, no figure of the data in it."""

    # FRESH, STALE (last success older than STALE_AFTER), FAILING (the latest attempt
    # failed: the previous data still serves) or NEVER (no successful sync yet).
    status: str
    last_success: str | None  # when the last successful sync finished (ISO 8601)
    last_attempt: str | None  # when the latest finished run finished, whatever its outcome
    last_attempt_failed: bool


@dataclass(frozen=True)
class QueuedSync:
    """A sync an admin asked for, as queued for the worker."""

    request_id: int
    biobank_id: str
    mode: str
    requested_by: str
    requested_at: str
    already_queued: bool  # a request for the biobank was already waiting: this is it


@dataclass(frozen=True)
class RequestedSync:
    """A sync an admin asked for and where it is: `queued` until the worker takes it,
    `running` while its run runs (or is about to start), `finished` with the run's outcome."""

    request: SyncRequest
    state: str
    run: SyncRun | None


@dataclass(frozen=True)
class ScheduledSync:
    """A biobank's schedule from the network file, with its next and latest tick."""

    biobank_id: str
    mode: str
    cron: str
    next_at: str
    last_at: str


def request_state(request: SyncRequest, runs: list[SyncRun]) -> RequestedSync:
    """Where a request is, from the runs of its biobank (newest first)."""
    if request.claimed_at is None:
        return RequestedSync(request, "queued", None)
    # The worker records the run as triggered by `request:<who asked>` once it starts it.
    started = [
        run
        for run in runs
        if run.triggered_by == f"request:{request.requested_by}"
        and run.started_at >= request.claimed_at
    ]
    run = started[-1] if started else None
    if run is None or run.outcome == "running":
        return RequestedSync(request, "running", run)
    return RequestedSync(request, "finished", run)


class SyncAdministration:
    """Sync history, quarantine and sync requests, each behind its permission check."""

    def __init__(
        self,
        state: SyncState,
        network: Callable[[], Network],
        published: Published | None = None,
    ) -> None:
        self.state = state
        # A callable, so the network file is read only once a check needs it.
        self._network = network
        # What the backend serves: runs whose process died here are settled against it
        # before they are shown, so none stays `running` (`federation.sync.recovery`).
        self._published = published

    def runs(
        self, identity: Identity, *, biobank: str | None = None, first: int = DEFAULT_SYNC_RUNS
    ) -> list[SyncRun]:
        """Recent runs, newest first: a biobank's admins and the network's operators.

        An admin asking without `biobank` gets the runs of the biobanks they administer.
        """
        require_signed_in(identity, "syncRuns")
        check_range("first", first, 1, MAX_PAGE_SIZE)
        if self._published is not None:
            settle(self.state, self._published)
        if biobank is not None:
            self._require_biobank(biobank)
            require_admin(identity, biobank, "syncRuns", operators=True)
            return self.state.runs(biobank, limit=first)
        if identity.operator:
            return self.state.runs(None, limit=first)
        if not identity.admin_of:
            require_admin(identity, "", "syncRuns", operators=True)
        runs = [run for bb in sorted(identity.admin_of) for run in self.state.runs(bb, limit=first)]
        return sorted(runs, key=lambda run: (run.started_at, run.id), reverse=True)[:first]

    def requests(
        self, identity: Identity, *, biobank: str | None = None, first: int = DEFAULT_SYNC_RUNS
    ) -> list[RequestedSync]:
        """Requested syncs, newest first, each queued, running or finished: for the same
        people as `runs`."""
        require_signed_in(identity, "syncRequests")
        check_range("first", first, 1, MAX_PAGE_SIZE)
        biobanks = self._visible(identity, biobank, "syncRequests")
        if self._published is not None:
            settle(self.state, self._published)
        out = []
        for request in SyncQueue(self.state).recent(biobanks, first):
            out.append(request_state(request, self.state.runs(request.biobank_id, limit=50)))
        return out

    def schedules(self, identity: Identity, *, biobank: str | None = None) -> list[ScheduledSync]:
        """When each biobank is synced by the worker (the network file's `schedule:`)."""
        require_signed_in(identity, "syncSchedules")
        biobanks = self._visible(identity, biobank, "syncSchedules")
        at = dt.datetime.now(dt.UTC)
        return [
            ScheduledSync(
                s.biobank_id,
                s.mode,
                s.cron,
                s.next_tick(at).isoformat(timespec="seconds"),
                s.last_tick(at).isoformat(timespec="seconds"),
            )
            for s in read_schedules(self._network().path)
            if biobanks is None or s.biobank_id in biobanks
        ]

    def _visible(self, identity: Identity, biobank: str | None, field: str) -> list[str] | None:
        """The biobanks whose sync data the identity may read (None: every one)."""
        if biobank is not None:
            self._require_biobank(biobank)
            require_admin(identity, biobank, field, operators=True)
            return [biobank]
        if identity.operator:
            return None
        if not identity.admin_of:
            require_admin(identity, "", field, operators=True)
        return sorted(identity.admin_of)

    def quarantine(
        self,
        identity: Identity,
        biobank: str,
        *,
        first: int = DEFAULT_QUARANTINE_PAGE,
        offset: int = 0,
    ) -> list[QuarantinedRecord]:
        """A biobank's rejected records with their reasons: its admins only."""
        require_signed_in(identity, "quarantine")
        check_range("first", first, 1, MAX_PAGE_SIZE)
        check_range("offset", offset, 0)
        self._require_biobank(biobank)
        # Rejected payloads are the biobank's raw data: its admins only, not operators.
        require_admin(identity, biobank, "quarantine", operators=False)
        return self.state.quarantine(biobank, limit=first, offset=offset)

    def start_sync(self, identity: Identity, biobank: str, *, full: bool = False) -> QueuedSync:
        """Queue a sync of a biobank for the worker: only its admins may."""
        require_admin(identity, biobank, "startSync", operators=False)
        self._require_biobank(biobank)
        queue = SyncQueue(self.state)
        waiting = {r.biobank_id for r in queue.pending()}
        request = queue.request(biobank, identity.subject, "full" if full else "auto")
        return QueuedSync(
            request.id,
            request.biobank_id,
            request.mode,
            request.requested_by,
            request.requested_at,
            biobank in waiting,
        )

    def freshness(self, biobank_id: str, at: dt.datetime | None = None) -> Freshness:
        """How current the biobank's data is: anyone may ask (it reveals no figure)."""
        self._require_biobank(biobank_id)
        runs = [
            r for r in self.state.runs(biobank_id, limit=FRESHNESS_RUNS) if r.outcome != RUNNING
        ]
        success = next((r for r in runs if r.outcome == SUCCEEDED), None)
        if success is None:  # older than the runs read, or none at all
            found = [self.state.last_success(biobank_id, kind) for kind in (FULL, INCREMENTAL)]
            success = max((r for r in found if r), key=lambda r: r.id, default=None)
        latest = runs[0] if runs else None
        failed = latest is not None and latest.outcome == FAILED
        finished = success.finished_at if success else None
        if finished is None:
            status = "NEVER"
        elif failed:
            status = "FAILING"
        else:
            age = (at or dt.datetime.now(dt.UTC)) - dt.datetime.fromisoformat(finished)
            status = "STALE" if age > STALE_AFTER else "FRESH"
        return Freshness(status, finished, latest.finished_at if latest else None, failed)

    def _require_biobank(self, biobank_id: str) -> None:
        if not any(s.biobank.id == biobank_id for s in self._network().biobanks):
            raise NotFound("biobank", biobank_id, "biobank in this network with id")
