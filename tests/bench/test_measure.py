"""bench.measure: the one definition of percentiles, machine facts and process memory."""

from __future__ import annotations

import os

from bench.measure import machine_facts, percentile, percentiles, process_memory


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.95) == 7.0
    summary = percentiles([3.0, 1.0, 2.0])
    assert summary == {
        "n": 3,
        "p50_ms": 2.0,
        "p95_ms": 3.0,
        "p99_ms": 3.0,
        "min_ms": 1.0,
        "max_ms": 3.0,
    }
    assert percentiles([]) == {"n": 0}


def test_machine_facts_and_process_memory_read_this_machine() -> None:
    facts = machine_facts(("pyarrow", "no-such-package-biofed"))
    assert facts["nproc"] == os.cpu_count() and facts["memory_gb"] > 0
    assert facts["versions"]["pyarrow"] and facts["versions"]["no-such-package-biofed"] is None
    mine = process_memory()
    assert 0 < mine["VmRSS"] <= mine["VmHWM"]
    assert process_memory(os.getpid())["VmHWM"] >= mine["VmHWM"]
    assert process_memory(2**22 + 1) == {}  # above pid_max's default: no such process
