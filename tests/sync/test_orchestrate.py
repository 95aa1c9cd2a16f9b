"""Orchestrating syncs of many biobanks, for the CLI and the worker alike."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from federation.runtime import Runtime
from federation.settings import Settings
from federation.sync.orchestrate import (
    AUTOGROUP,
    SyncOrder,
    largest_first,
    start_in_process,
    sync_all,
)
from federation.sync.pipeline import RunRequest
from tests.conftest import Federation


def _network(federation: Federation) -> None:
    small = federation.biobank("small")
    small.donor("D1").sample("S1", "D1")
    big = federation.biobank("big")
    big.donor("D1")
    for number in range(5):
        big.sample(f"S{number}", "D1")
    federation.biobank("new").donor("D1").sample("S1", "D1")
    federation.write()


def test_largest_first_orders_by_the_last_run_and_puts_unknown_ones_first(
    federation: Federation,
) -> None:
    _network(federation)
    federation.sync("small")
    federation.sync("big")
    order = largest_first(federation.runtime, ["small", "big", "new"])
    assert order == ["new", "big", "small"]


def test_sync_all_reports_each_biobank_and_counts_failures(federation: Federation) -> None:
    _network(federation)
    federation.biobank("small").folder.joinpath("samples.csv").unlink()
    lines: list[tuple[str, bool]] = []
    failures = sync_all(
        federation.runtime,
        SyncOrder(("small", "big"), triggered_by="test"),
        lambda line, failed: lines.append((line, failed)),
    )
    assert failures == 1
    assert lines[0][1] is True and lines[0][0].startswith("small: FAILED:")
    assert lines[1][1] is False and lines[1][0].startswith("big: succeeded (full)")
    assert "indexed 5" in lines[1][0]
    runs = {run.biobank_id: run for run in federation.runtime.state.runs()}
    assert runs["big"].triggered_by == "test"


def test_a_sync_process_exits_with_1_when_its_sync_fails(federation: Federation) -> None:
    _network(federation)
    federation.biobank("small").folder.joinpath("donors.csv").unlink()
    failed = start_in_process(Runtime, federation.settings, "small", RunRequest("auto", "test"))
    succeeded = start_in_process(Runtime, federation.settings, "big", RunRequest("full", "test"))
    failed.join(120)
    succeeded.join(120)
    assert (failed.exitcode, succeeded.exitcode) == (1, 0)
    runs = {run.biobank_id: run for run in federation.runtime.state.runs()}
    assert runs["small"].outcome == "failed" and runs["big"].outcome == "succeeded"


def niceness_recording_environment(settings: Settings) -> Runtime:
    """Open a sync process's environment as the worker does, noting the process's niceness
    then (module level: a spawned process receives it by name)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    noted = settings.data_dir / f"niceness-{os.getpid()}"
    noted.write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))
    return Runtime(settings)


def test_a_sync_process_runs_at_the_sync_niceness_and_the_worker_does_not(
    federation: Federation,
) -> None:
    _network(federation)
    worker = os.getpriority(os.PRIO_PROCESS, 0)
    settings = federation.settings.with_overrides(sync_niceness=worker + 3)
    process = start_in_process(
        niceness_recording_environment, settings, "big", RunRequest("full", "test")
    )
    process.join(120)
    assert process.exitcode == 0
    (noted,) = federation.settings.data_dir.glob("niceness-*")
    assert int(noted.read_text()) == worker + 3
    assert os.getpriority(os.PRIO_PROCESS, 0) == worker


def test_sync_priority_is_only_ever_lowered() -> None:
    # In a child process: a niceness once raised cannot be taken back without privileges.
    script = (
        "import os; from federation.sync.orchestrate import at_sync_priority; "
        "start = os.getpriority(os.PRIO_PROCESS, 0); "
        "print(start, at_sync_priority(start + 2), at_sync_priority(start + 1), "
        "at_sync_priority(0), os.getpriority(os.PRIO_PROCESS, 0))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    start, *after = map(int, out.stdout.split())
    assert after == [start + 2] * 4


def test_a_sync_leading_its_own_session_lowers_the_session_priority_too() -> None:
    # Under autogroup scheduling a niceness only orders processes within their session;
    # a sync started in a session of its own (as the benchmark and a service manager start
    # it) lowers its session's share against the server's session.
    if not AUTOGROUP.exists():
        pytest.skip("this kernel has no autogroup scheduling")
    script = (
        "from pathlib import Path; from federation.sync.orchestrate import at_sync_priority; "
        "at_sync_priority(9); print(Path('/proc/self/autogroup').read_text(), end='')"
    )
    led = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    # A new session is a new autogroup ("/autogroup-42 nice 9").
    assert led.stdout.split()[-2:] == ["nice", "9"], led.stdout
    # Not the leader of its session (the test's): the session's share is left alone. A
    # session outside any autogroup (a process in a cgroup of its own, as under some CI
    # runners) reads as an empty file, here and in the child alike.
    joined = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout == AUTOGROUP.read_text()
