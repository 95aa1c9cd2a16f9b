"""Running syncs of many biobanks: one at a time, or in parallel processes, largest first.

Used by `biofed sync` (in this process, or `--jobs N` processes) and by the worker (one
process per run, `start_in_process`).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from federation.runtime import Runtime
from federation.settings import Settings
from federation.sync.locks import SyncAlreadyRunning
from federation.sync.pipeline import Progress, RunRequest
from federation.sync.run import SyncFailed, sync_biobank
from federation.sync.state import SyncRun

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


def summary(run: SyncRun) -> str:
    """One line on a finished run: outcome, kind, duration and counts."""
    return (
        f"{run.biobank_id}: {run.outcome} ({run.kind}) in {run.duration_s:.1f}s; "
        f"read {run.read}, "
        f"indexed {run.indexed}, rejected {run.rejected}, deleted {run.deleted}, "
        f"withdrawn {run.withdrawn}"
    )


def sync_all(
    runtime: Runtime, order: SyncOrder, report: Report, progress_for: ProgressFor | None = None
) -> int:
    """Run the order (in parallel when it asks for jobs > 1); return how many failed."""
    if order.jobs > 1 and len(order.biobank_ids) > 1:
        return sync_in_parallel(runtime, order, report)
    failures = 0
    for biobank_id in order.biobank_ids:
        progress, done = progress_for(biobank_id) if progress_for else (None, _nothing)
        try:
            run = sync_biobank(
                runtime.network().get(biobank_id),
                runtime.backend,
                runtime.state,
                locks_dir=runtime.settings.locks_dir,
                request=RunRequest(order.mode, order.triggered_by, progress),
            )
        except (SyncFailed, SyncAlreadyRunning) as err:
            done()
            report(f"{biobank_id}: FAILED: {err}", True)
            failures += 1
            continue
        done()
        report(summary(run), False)
    return failures


def sync_in_parallel(runtime: Runtime, order: SyncOrder, report: Report) -> int:
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
                sync_one, runtime.settings, biobank_id, order.mode, order.triggered_by
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


def largest_first(runtime: Runtime, biobank_ids: Iterable[str]) -> list[str]:
    """Longest first keeps the last job short: order by what the previous run read."""
    last_read = {run.biobank_id: run.read for run in reversed(runtime.state.runs(limit=1000))}
    return sorted(biobank_ids, key=lambda b: -last_read.get(b, sys.maxsize))


def sync_one(settings: Settings, biobank_id: str, mode: str, triggered_by: str) -> tuple[str, bool]:
    """One biobank's sync in its own process: its summary line, and whether it failed."""
    runtime = Runtime(settings)
    try:
        run = sync_biobank(
            runtime.network().get(biobank_id),
            runtime.backend,
            runtime.state,
            locks_dir=settings.locks_dir,
            request=RunRequest(mode, triggered_by),
        )
    except (SyncFailed, SyncAlreadyRunning) as err:
        return f"{biobank_id}: FAILED: {err}", True
    finally:
        runtime.backend.close()
    return summary(run), False


def start_in_process(settings: Settings, biobank_id: str, mode: str, reason: str) -> BaseProcess:
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
        args=(settings, biobank_id, mode, reason),
        name=f"sync-{biobank_id}",
    )
    process.start()
    return process


def _run_and_exit(settings: Settings, biobank_id: str, mode: str, reason: str) -> None:
    line, failed = sync_one(settings, biobank_id, mode, reason)
    print(line, file=sys.stderr if failed else sys.stdout, flush=True)
    if failed:
        sys.exit(1)


def _nothing() -> None:
    return None
