"""Running syncs of many biobanks: one at a time, or in parallel processes, largest first.

Used by `biofed sync` (in this process, or `--jobs N` processes) and by the worker (one
process per run, `start_in_process`). Sync sits below the composition root
(`federation.runtime`), so the entry points hand in how a process opens its environment
(`OpenEnvironment`, the `Runtime` class in practice): a child process opens its own.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from federation.search.backend import SearchBackend
from federation.search.warm import warm_published
from federation.settings import Network, Settings, load_network
from federation.sync.locks import SyncAlreadyRunning
from federation.sync.pipeline import Progress, RunRequest
from federation.sync.run import SyncFailed, sync_biobank
from federation.sync.state import SyncRun, SyncState

log = logging.getLogger(__name__)


class SyncEnvironment(Protocol):
    """What a sync needs from its process: settings, the backend, the state and the network."""

    settings: Settings

    @property
    def backend(self) -> SearchBackend: ...

    @property
    def state(self) -> SyncState: ...

    def network(self) -> Network: ...


# Opens a process's environment from its settings; must be picklable (a class or a
# module-level function), since spawned processes receive it.
OpenEnvironment = Callable[[Settings], SyncEnvironment]
# Reports one finished biobank: its summary line, and whether it failed.
Report = Callable[[str, bool], None]
# Makes a progress callback for one biobank, and closes it when the biobank is done.
ProgressFor = Callable[[str], tuple[Progress | None, Callable[[], None]]]


@dataclass(frozen=True)
class SyncOrder:
    """Which syncs to run and how: mode, who asked, and how many processes at once."""

    biobank_ids: tuple[str, ...]
    mode: str = "auto"
    triggered_by: str = "cli"
    jobs: int = 1
    allow_empty: bool = False  # publish a full read of zero records (biofed sync --allow-empty)
    allow_shrink: bool = False  # an admin confirmed that sources may shrink (shrink guard)

    def request(self, settings: Settings, progress: Progress | None = None) -> RunRequest:
        """The run request of each biobank's sync in this order."""
        return RunRequest(
            self.mode,
            self.triggered_by,
            progress,
            self.allow_empty,
            max_shrink=settings.sync_max_shrink,
            allow_shrink=self.allow_shrink,
        )


def summary(run: SyncRun) -> str:
    """One line on a finished run: outcome, kind, duration and counts."""
    return (
        f"{run.biobank_id}: {run.outcome} ({run.kind}) in {run.duration_s:.1f}s; "
        f"read {run.read} (accepted {run.accepted}, partly accepted {run.partial}, "
        f"rejected {run.rejected}), indexed {run.indexed}, deleted {run.deleted}, "
        f"withdrawn {run.withdrawn}" + (f"; {run.notes}" if run.notes else "")
    )


def at_sync_priority(niceness: int) -> int:
    """Lower this process's CPU priority to `niceness` (never raise it); the niceness now.

    A sync is a batch job: at a lower priority it takes the cores only when searches leave
    them idle. Called first thing in a sync process: on Linux the niceness is a thread's,
    and the threads started after (DuckDB's, a pool's processes) inherit it.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness > current:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    if os.getsid(0) == os.getpid():
        _lower_session_priority(niceness)
    return max(current, niceness)


# Linux's autogroup scheduling (on by default) gives each session one share of the CPU,
# with a niceness of its own: a process's niceness then orders only its own session's
# processes. Written here, it applies to the session as a whole.
AUTOGROUP = Path("/proc/self/autogroup")


def _lower_session_priority(niceness: int) -> None:
    """Lower this session's CPU share as well: only called in a session's leader (a sync
    started in a session of its own), so no server shares it."""
    try:
        current = int(AUTOGROUP.read_text().split()[-1])  # "/autogroup-42 nice 0"
        if niceness > current:
            AUTOGROUP.write_text(str(niceness))
    except (OSError, ValueError, IndexError):
        pass  # no autogroup scheduling here: the process's own niceness is what counts


def sync_all(
    runtime: SyncEnvironment,
    order: SyncOrder,
    report: Report,
    progress_for: ProgressFor | None = None,
    open_environment: OpenEnvironment | None = None,
) -> int:
    """Run the order (in parallel when it asks for jobs > 1 and says how a child opens its
    environment); return how many failed."""
    # The run's publishes become searchable together when it ends (one embedded snapshot
    # build for the whole run), before `biofed sync` returns; then warmed once, not per
    # biobank: each warming asks the landing question of what is searchable.
    with runtime.backend.holding_publishes():
        try:
            if order.jobs > 1 and len(order.biobank_ids) > 1 and open_environment is not None:
                failures = sync_in_parallel(runtime, order, report, open_environment)
            else:
                failures = sync_in_turn(runtime, order, report, progress_for)
        finally:
            runtime.backend.settle()
    if failures < len(order.biobank_ids):
        warm_answers(runtime.backend, runtime.state)
    return failures


def sync_in_turn(
    runtime: SyncEnvironment,
    order: SyncOrder,
    report: Report,
    progress_for: ProgressFor | None = None,
) -> int:
    """Run the order one biobank after the other; return how many failed."""
    failures = 0
    for biobank_id in order.biobank_ids:
        progress, done = progress_for(biobank_id) if progress_for else (None, _nothing)
        try:
            run = sync_biobank(
                runtime.network().get(biobank_id),
                runtime.backend,
                runtime.state,
                locks_dir=runtime.settings.locks_dir,
                request=order.request(runtime.settings, progress),
            )
        except (SyncFailed, SyncAlreadyRunning) as err:
            done()
            report(f"{biobank_id}: FAILED: {err}", True)
            failures += 1
            continue
        done()
        report(summary(run), False)
    return failures


def sync_in_parallel(
    runtime: SyncEnvironment, order: SyncOrder, report: Report, open_environment: OpenEnvironment
) -> int:
    """Sync biobanks in `jobs` processes at once, largest first; report each as it ends.

    Separate processes rather than threads: a sync is CPU-bound Python (parsing and
    validation), and each biobank publishes on its own (its own generation, the manifest
    update or alias swap serialised by the backend), exactly as the worker runs them.
    """
    ordered = largest_first(runtime, order.biobank_ids)
    failures = 0
    # spawn, not fork: a forked child would inherit the parent's DuckDB and HTTP pools.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(order.jobs, len(ordered)), mp_context=context) as pool:
        futures = {
            pool.submit(
                sync_one,
                open_environment,
                runtime.settings,
                biobank_id,
                order.request(runtime.settings),
                False,  # the order warms once when every job is done
            ): biobank_id
            for biobank_id in ordered
        }
        for future in as_completed(futures):
            try:
                line, failed = future.result()
            except Exception as err:  # a crash in the child: report it, go on with the rest
                line, failed = f"{futures[future]}: FAILED: {type(err).__name__}: {err}", True
            report(line, failed)
            failures += failed
    return failures


def largest_first(runtime: SyncEnvironment, biobank_ids: Iterable[str]) -> list[str]:
    """Longest first keeps the last job short: order by what the previous run read."""
    last_read = {run.biobank_id: run.read for run in reversed(runtime.state.runs(limit=1000))}
    return sorted(biobank_ids, key=lambda b: -last_read.get(b, sys.maxsize))


def sync_one(
    open_environment: OpenEnvironment,
    settings: Settings,
    biobank_id: str,
    request: RunRequest,
    warm: bool = True,
) -> tuple[str, bool]:
    """One biobank's sync in its own process: its summary line, and whether it failed;
    with `warm`, the warm answers of what it published are computed after it."""
    at_sync_priority(settings.sync_niceness)
    runtime = open_environment(settings)
    try:
        # A job of a parallel order leaves making its publish searchable (one snapshot build
        # for the order) and warming to the parent (`sync_all`); a run on its own (the
        # worker's) is searchable when its publish returns, and warms what it published.
        hold = contextlib.nullcontext() if warm else runtime.backend.holding_publishes()
        with hold:
            run = sync_biobank(
                runtime.network().get(biobank_id),
                runtime.backend,
                runtime.state,
                locks_dir=settings.locks_dir,
                request=request,
            )
        if warm:
            warm_answers(runtime.backend, runtime.state)
    except (SyncFailed, SyncAlreadyRunning) as err:
        return f"{biobank_id}: FAILED: {err}", True
    finally:
        runtime.backend.close()
    return summary(run), False


def warm_answers(backend: SearchBackend, state: SyncState) -> None:
    """Compute the warm answers of what was just published (search/warm.py); one that
    fails is only logged: searches are then asked of the backend, as before."""
    try:
        warm_published(backend, state.store.publications)
    except Exception as err:  # a warming failure must not fail the sync that published
        log.warning("warm answers not computed: %s: %s", type(err).__name__, err)


def start_in_process(
    open_environment: OpenEnvironment, settings: Settings, biobank_id: str, request: RunRequest
) -> BaseProcess:
    """Start one biobank's sync in a new process (the worker's way); exit code 1 on failure.

    A process per run, on purpose: a sync holds a whole source's references and the
    backend's write buffers, which a long-lived worker would otherwise keep (Python rarely
    returns freed memory to the OS); and a sync that crashes, is OOM-killed or is killed by
    an operator takes only its own process down. Its flock dies with it, its run is marked
    interrupted, and the next run resumes from its checkpoints. spawn, not fork: a forked
    child would inherit the worker's SQLite handles.
    """
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_run_and_exit,
        args=(open_environment, settings, biobank_id, request),
        name=f"sync-{biobank_id}",
    )
    process.start()
    return process


def _run_and_exit(
    open_environment: OpenEnvironment, settings: Settings, biobank_id: str, request: RunRequest
) -> None:
    line, failed = sync_one(open_environment, settings, biobank_id, request)
    print(line, file=sys.stderr if failed else sys.stdout, flush=True)
    if failed:
        sys.exit(1)


def unknown_biobank(biobank_id: str, state: SyncState, network_path: Path | None) -> str | None:
    """Why `biobank_id` is unknown (naming the known ids), or None: known ids are those of
    the network file (valid or not) and those with a sync history."""
    known = set(state.biobank_ids())
    if network_path is not None and network_path.exists():
        network = load_network(network_path, skip_invalid=True)
        known |= {s.biobank.id for s in network.biobanks} | {e.label for e in network.invalid}
    if biobank_id in known:
        return None
    return f"no biobank {biobank_id!r} (known: {', '.join(sorted(known)) or 'none'})"


def _nothing() -> None:
    return None
