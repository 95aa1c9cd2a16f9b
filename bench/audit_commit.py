"""What an audit row's commit costs on a state store: one search at a time, and 8 at once
with a transaction each against the group commit of federation/search/audit_commit.py.

    python -m bench.audit_commit                       # SQLite in a fresh scratch folder
    python -m bench.audit_commit postgresql://u@h:p/db # BIOFED_STATE_PASSWORD in the env
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from federation.search.audit_commit import GroupCommit
from federation.state.audit_trail import AuditRecord
from federation.state.store import open_state_store

ROWS = 60
CONCURRENT = 8
# A row the size of an operator's search over a 20-biobank network.
RECORD = AuditRecord(
    at="2026-12-07T00:00:00.000+00:00",
    subject="bench",
    via="api_key",
    roles=("operator",),
    admin_of=(),
    approved_for=(),
    client_ip="127.0.0.1",
    filters={"diseases": ["C50"]},
    purpose=None,
    released=tuple(
        {"biobank_id": f"bb{i}", "donors": "exact", "samples": "exact", "generation": "g1"}
        for i in range(20)
    ),
    records_returned=False,
    record_count=0,
)


def one_at_a_time(write: Callable[[], object]) -> float:
    """The median ms of ROWS commits in a row."""
    times = []
    for _ in range(ROWS):
        started = time.perf_counter()
        write()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def at_once(write: Callable[[], object]) -> tuple[float, float, float]:
    """CONCURRENT threads writing ROWS rows in all: p50 ms, mean ms, rows per second."""
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(ROWS // 4):
            started = time.perf_counter()
            write()
            took = (time.perf_counter() - started) * 1000
            with lock:
                times.append(took)

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENT)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return statistics.median(times), statistics.mean(times), len(times) / wall


def main(url: str | None) -> None:
    """Print the four figures for the store at `url` (SQLite in a scratch folder if None)."""
    with tempfile.TemporaryDirectory(prefix="biofed-audit-bench-") as scratch:
        trail = open_state_store(url, Path(scratch), migrate=True).audit
        for _ in range(5):
            trail.append(RECORD)
        commits = GroupCommit(trail.append_many)
        print(f"store: {'postgresql' if url else 'sqlite'}; load average {os.getloadavg()}")
        print(f"one at a time: p50 {one_at_a_time(lambda: trail.append(RECORD)):.2f} ms")
        for label, write in (
            ("a transaction each", lambda: trail.append(RECORD)),
            ("group commit", lambda: commits.submit(RECORD).wait()),
        ):
            p50, mean, rate = at_once(write)
            print(f"{CONCURRENT} at once, {label}: p50 {p50:.2f} ms, mean {mean:.2f} ms, ", end="")
            print(f"{rate:.0f} rows/s")
        trail.engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
