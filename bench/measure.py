"""Measuring, one definition each: percentiles, the machine's facts, a process's memory.

Every bench module takes these from here, so two reports of the same run agree on what a
p95 is and what machine it ran on.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 < q <= 1) of non-empty `values`: the smallest value
    with at least q of them at or below it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50 (the median), p95 and p99 (nearest rank), min, max and the count, in ms."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(percentile(ordered, 0.95), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


def machine_facts(packages: Sequence[str] = ()) -> dict[str, Any]:
    """What the numbers are measured on: CPUs, memory, kernel, Python and package versions."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(total_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions,
    }


def process_memory(pid: int | str = "self") -> dict[str, int]:
    """Every kB field of /proc/<pid>/status (VmRSS, VmHWM = peak, RssAnon, ...), in KiB;
    empty when the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[name] = int(value.split()[0])
    return out


def process_shared_memory(pid: int | str = "self") -> dict[str, int]:
    """The kB fields of /proc/<pid>/smaps_rollup (Rss, Pss, Shared_Clean, ...), in KiB.

    Pss divides each shared page among the processes mapping it: summed over server
    processes that map one snapshot file it counts the file once, where VmRSS/VmHWM count
    it in every process. Empty when the process is gone or the kernel has no rollup."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines[1:]:  # the first line names the address range
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[name] = int(value.split()[0])
    return out
