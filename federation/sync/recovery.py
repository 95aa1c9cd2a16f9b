"""Settling runs whose sync process died (SIGKILL, OOM, power): their record tells the truth.

A run still `running` whose process is gone either published before it died or did not.
The run recorded the generation it was about to publish and its quarantine beforehand
(`SyncRuns.prepare_publish` in the state store), so comparing that generation with the one
the backend serves decides: serving means the run succeeded (its quarantine is put in
place), anything else means it was interrupted: nothing a full pass did is visible (an
incremental run's next run resumes from its last checkpoint).

Settled at the next sync of the biobank (under its lock every running run of it is dead)
and whenever runs are read, for runs whose process on this host no longer exists.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

from federation.search.backend import GenerationInfo
from federation.sync.state import INTERRUPTED, RUNNING, SUCCEEDED, SyncRun, SyncState

Published = Callable[[], Mapping[str, GenerationInfo]]

# How many of the latest runs a read-time check looks at: running ones are recent.
RECENT_RUNS = 200


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def died_here(run: SyncRun) -> bool:
    """The run's process ran on this host and is gone."""
    return (
        run.host == socket.gethostname()
        and run.pid is not None
        and run.pid != os.getpid()
        and not process_alive(run.pid)
    )


def settle(state: SyncState, published: Published, biobank_id: str | None = None) -> int:
    """Settle the dead runs on this host (of one biobank or all); how many were settled."""
    dead = [r for r in state.runs(biobank_id, RECENT_RUNS) if r.outcome == RUNNING and died_here(r)]
    return _settle(state, published, dead)


def settle_locked(state: SyncState, published: Published, biobank_id: str) -> int:
    """Settle every running run of a biobank whose lock the caller holds: all are dead."""
    running = [r for r in state.runs(biobank_id, RECENT_RUNS) if r.outcome == RUNNING]
    return _settle(state, published, running)


def _settle(state: SyncState, published: Published, runs: list[SyncRun]) -> int:
    if not runs:
        return 0
    serving = published()
    for run in runs:
        where = f"pid {run.pid} on {run.host}" if run.pid is not None else "its process"
        live = serving.get(run.biobank_id)
        if run.generation is not None and live is not None and live.generation == run.generation:
            records = state.pending_quarantine(run.id)
            if records is not None:
                state.replace_quarantine(run.biobank_id, run.id, records)
            state.settle_run(
                run.id,
                SUCCEEDED,
                f"published generation {run.generation}, then the sync process ({where}) "
                "ended before finishing its record",
                published=True,
            )
        else:
            # A full pass records its generation before publishing, so without one nothing
            # was published; an incremental run may have applied some changes, which its
            # next run (resuming from the last checkpoint) applies again.
            after = (
                "the next run resumes from its last checkpoint"
                if run.kind == "incremental"
                else "nothing it did was published"
            )
            state.settle_run(
                run.id,
                INTERRUPTED,
                f"the sync process ({where}) ended without finishing; {after}",
                published=False,
            )
    return len(runs)
