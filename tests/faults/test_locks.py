"""Locks after a kill: a lock whose holder died on this host is taken over at once (not after
the engine lock's TTL), and every refused attempt is recorded as a run."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from federation.state import open_state_store
from federation.sync.locks import biobank_lock
from federation.sync.state import INTERRUPTED, REFUSED, SUCCEEDED
from tests.faults.harness import KILLED, FaultNetwork

pytest_plugins = ["tests.engine.fixtures"]


def test_an_engine_lock_left_by_a_killed_sync_is_taken_over_at_once(
    tmp_path: Path, engine_url: str
) -> None:
    network = FaultNetwork(tmp_path, engine_url=engine_url)
    try:
        ttl = {"BIOFED_ENGINE_LOCK_TTL": "600"}  # ten minutes: waiting it out would show
        killed = network.sync(kill_at="after_pull", **ttl)
        assert killed.returncode == KILLED
        started = time.monotonic()
        again = network.sync(**ttl)
        assert again.returncode == 0, again.stderr
        assert time.monotonic() - started < 60
        assert "took over the stale sync lock of bb-a from" in again.stderr
        assert [r.outcome for r in network.runs("bb-a")] == [INTERRUPTED, SUCCEEDED]
        # Recorded in the state store, where /metrics counts it for every host.
        store = open_state_store(network.settings.state_url, network.settings.data_dir)
        try:
            assert store.lock_takeovers.counts() == {"bb-a": 1}
        finally:
            store.close()
    finally:
        network.close()


def test_an_engine_lock_held_by_a_live_process_is_refused_and_recorded(
    tmp_path: Path, engine_url: str
) -> None:
    network = FaultNetwork(tmp_path, engine_url=engine_url)
    try:
        with network.runtime() as runtime, runtime.backend.sync_lock("bb-a"):
            refused = network.sync()
        assert refused.returncode == 1
        assert "bb-a: FAILED" in refused.stderr
        (run,) = network.runs("bb-a")
        assert run.outcome == REFUSED
        assert f"already running on {socket.gethostname()} (pid {os.getpid()})" in (run.error or "")
        assert network.sync().returncode == 0  # released: the next one runs
        assert [r.outcome for r in network.runs("bb-a")] == [REFUSED, SUCCEEDED]
    finally:
        network.close()


def test_a_held_file_lock_refuses_and_records_the_attempt(tmp_path: Path) -> None:
    network = FaultNetwork(tmp_path)
    with biobank_lock(network.settings.locks_dir, "bb-a"):
        refused = network.sync()
    assert refused.returncode == 1
    assert "bb-a: FAILED: a sync of bb-a is already running" in refused.stderr
    (run,) = network.runs("bb-a")
    assert run.outcome == REFUSED and run.finished_at is not None
    assert run.error == "a sync of bb-a is already running"
