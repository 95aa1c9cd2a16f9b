"""`biofed worker`: runs scheduled and requested syncs, each in its own process.

Each poll it reads the schedules from the network file (re-read, so an admin's edit takes
effect without a restart), takes the queued requests, and starts a sync process
(`federation.sync.orchestrate.start_in_process`, which says why a process) for each biobank
that is due, at most `jobs` at a time and never a second one for
a biobank whose sync is still running (the per-biobank lock would refuse it anyway, and
that holds across workers on several machines). A sync process that crashes or is killed
costs nothing: its run is marked interrupted and the next one resumes from its checkpoints.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from federation.settings import Settings
from federation.sync.orchestrate import OpenEnvironment, start_in_process
from federation.sync.pipeline import RunRequest
from federation.sync.schedule import ScheduleError, SyncQueue, due, read_schedules
from federation.sync.state import SyncState

log = logging.getLogger(__name__)


@dataclass
class _Job:
    biobank_id: str
    mode: str
    reason: str
    process: BaseProcess


class SyncWorker:
    """Starts due syncs as child processes and reaps them."""

    def __init__(
        self, settings: Settings, open_environment: OpenEnvironment, *, jobs: int = 2
    ) -> None:
        assert settings.network is not None
        self.settings = settings
        self.open_environment = open_environment
        self.jobs = jobs
        self.state = SyncState.from_settings(settings)
        self.queue = SyncQueue(self.state)
        self.running: dict[str, _Job] = {}
        self._waiting: dict[str, tuple[str, str]] = {}  # biobank -> (mode, reason) not started

    def run(self, *, poll: float, once: bool = False) -> None:
        """Loop: start what is due, reap what ended; with `once`, one round then wait."""
        while True:
            self.tick()
            if once:
                while self.running or self._waiting:
                    time.sleep(min(poll, 0.2))
                    self.reap()
                    self._start_waiting()
                return
            time.sleep(poll)

    def tick(self) -> None:
        """Reap finished syncs, then queue and start what is due now."""
        self.reap()
        try:
            schedules = read_schedules(Path(str(self.settings.network)))
        except (ScheduleError, OSError) as err:
            log.error("schedules not read: %s", err)
            schedules = []
        for biobank_id, mode in due(schedules, self.state).items():
            self._waiting.setdefault(biobank_id, (mode, "schedule"))
        for request in self.queue.claim():
            self._waiting[request.biobank_id] = (request.mode, f"request:{request.requested_by}")
        self._start_waiting()

    def _start_waiting(self) -> None:
        for biobank_id in list(self._waiting):
            if len(self.running) >= self.jobs:
                return
            if biobank_id in self.running:
                continue  # still syncing: it starts after this one ends
            mode, reason = self._waiting.pop(biobank_id)
            self.running[biobank_id] = _Job(
                biobank_id, mode, reason, self._spawn(biobank_id, mode, reason)
            )
            log.info("started %s sync of %s (%s)", mode, biobank_id, reason)

    def _spawn(self, biobank_id: str, mode: str, reason: str) -> BaseProcess:
        return start_in_process(
            self.open_environment,
            self.settings,
            biobank_id,
            RunRequest(mode, reason, max_shrink=self.settings.sync_max_shrink),
        )

    def reap(self) -> None:
        for biobank_id, job in list(self.running.items()):
            if job.process.is_alive():
                continue
            job.process.join()
            code = job.process.exitcode
            del self.running[biobank_id]
            if code:
                # The child printed why to stderr (inherited); the run record has it too.
                log.warning("sync of %s ended with %s", biobank_id, code)
            else:
                log.info("sync of %s finished", biobank_id)

    def stop(self) -> None:
        """Let running syncs finish (a killed one would only be resumed later anyway)."""
        for job in self.running.values():
            job.process.join()
        self.reap()
