"""The targets of issue 18 against the suite's result files: the second table that
`python -m bench suite` writes into docs/performance.md.

Every target of the issue's Targets table has rows here, each naming the run it is stated
for, the figure(s) read from that run's JSON, and met / missed. A figure the JSON does not
have (an older run, a phase cut short, a run at another size, no file at all) shows as
"not measured" and is never counted as met.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"
# The 2026-12-06 re-run of embedded 1M under 4 clients (issue 18's first table).
RERUN_2026_12_06_RPS = 7.7
UNCACHED_LOAD_RPS = 2 * RERUN_2026_12_06_RPS
UNCACHED_LOAD_P99_MS = 500.0
LOAD_CLIENTS = 4
SYNC_P99_OVER_IDLE = 1.5
EMBEDDED_1M_RSS_MB = 600.0
LANDING_AFTER_PUBLISH_MS = 20.0
EMBEDDED_10M_INGEST = 25_000
EMBEDDED_10M_SYNC_JOBS = 2
EMBEDDED_10M_SELECTIVE_MS = 150.0
EMBEDDED_10M_LANDING_MS = 1_500.0
EMBEDDED_10M_RSS_MB = 1.5 * 1024  # 1.5 GB, in the MiB the runner reports
ENGINE_10M_SELECTIVE_P50_MS = 100.0
ENGINE_10M_SELECTIVE_P99_MS = 300.0
RATIO = 1.3
OVERHEAD_MEDIAN_MS = 5.0
OVERHEAD_LARGEST_MS = 10.0

# The suite's runs and the size each is stated for.
SIZES = {
    "embedded-1m": 1_000_000,
    "embedded-10m": 10_000_000,
    "opensearch-1m": 1_000_000,
    "opensearch-10m": 10_000_000,
}


@dataclass(frozen=True)
class Part:
    """One figure of a row and whether it meets its limit."""

    text: str
    status: str


def dig(run: Mapping[str, Any] | None, *keys: str) -> Any:
    """run[k1][k2]...; None when any step is missing."""
    value: Any = run
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def limit_part(
    label: str, value: float | None, limit: float, unit: str = " ms", *, at_least: bool = False
) -> Part:
    """`label value` against `limit` (at most, or at least)."""
    if value is None:
        return Part(f"{label}: not measured", NOT_MEASURED)
    ok = value >= limit if at_least else value <= limit
    shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"
    return Part(f"{label} {shown}{unit}", MET if ok else MISSED)


def verdict(parts: Sequence[Part]) -> str:
    """Missed if any part is; otherwise not measured if any part is; otherwise met."""
    statuses = {p.status for p in parts}
    if MISSED in statuses:
        return MISSED
    if NOT_MEASURED in statuses or not parts:
        return NOT_MEASURED
    return MET


# --- the figures of each target -----------------------------------------------------------------


def server_rss(limit: float) -> Callable[[Mapping[str, Any]], list[Part]]:
    """Master + workers VmHWM summed, each process shown, and the Pss sum beside it."""

    def parts(run: Mapping[str, Any]) -> list[Part]:
        memory = dig(run, "server_memory") or {}
        total = limit_part("VmHWM summed", memory.get("peak_rss_mb_sum"), limit, " MB")
        names = sorted(k for k, v in memory.items() if isinstance(v, Mapping))
        each = ", ".join(f"{n} {memory[n].get('peak_rss_mb')}" for n in names)
        pss = memory.get("pss_mb_sum")
        shared = f"Pss summed {pss} MB" if pss else "Pss not measured"
        # Shown beside the figure, judged by nothing: MET leaves the row's verdict alone.
        note = [Part(f"per process MB: {each}; {shared}", MET)]
        return [total, *note] if names else [total]

    return parts


def sync_p99(run: Mapping[str, Any]) -> list[Part]:
    """The load run's p99 with a sync running over its idle p99."""
    idle = dig(run, "load", "idle", "latency", "p99_ms")
    busy = dig(run, "load", "with_sync", "latency", "p99_ms")
    ratio = round(busy / idle, 2) if idle and busy else None
    part = limit_part("with sync / idle p99", ratio, SYNC_P99_OVER_IDLE, "x")
    if ratio is None:
        return [part]
    return [Part(f"{part.text} ({busy:g} / {idle:g} ms)", part.status)]


def uncached_load(run: Mapping[str, Any]) -> list[Part]:
    """Requests per second and p99 of the idle load run with 4 clients, answer cache off."""
    idle = dig(run, "load", "idle") or {}
    if idle.get("clients") != LOAD_CLIENTS:
        return [Part(f"no load run with {LOAD_CLIENTS} clients: not measured", NOT_MEASURED)]
    return [
        limit_part("req/s", idle.get("throughput_rps"), UNCACHED_LOAD_RPS, "", at_least=True),
        limit_part("p99", dig(idle, "latency", "p99_ms"), UNCACHED_LOAD_P99_MS),
    ]


def landing_after_publish(run: Mapping[str, Any]) -> list[Part]:
    """The first landing search after a publish, and the steady landing p50 after it."""
    entry = dig(run, "landing_after_publish") or {}
    return [
        limit_part(
            "first search after publish p50",
            dig(entry, "first_after_publish", "p50_ms"),
            LANDING_AFTER_PUBLISH_MS,
        ),
        limit_part("steady p50", dig(entry, "steady", "p50_ms"), LANDING_AFTER_PUBLISH_MS),
    ]


def ingest_two_jobs(run: Mapping[str, Any]) -> list[Part]:
    """Samples per second of a sync with 2 jobs."""
    jobs = dig(run, "ingest", "sync_jobs")
    rate = dig(run, "ingest", "samples_per_s")
    if rate is not None and jobs != EMBEDDED_10M_SYNC_JOBS:
        return [Part(f"{rate:,} samples/s with {jobs} jobs: not measured with 2", NOT_MEASURED)]
    return [limit_part("samples/s", rate, EMBEDDED_10M_INGEST, "", at_least=True)]


def question_p(name: str, stat: str, limit: float) -> Callable[[Mapping[str, Any]], list[Part]]:
    """Our p50 or p99 of one question of the mix (answers computed afresh)."""

    def parts(run: Mapping[str, Any]) -> list[Part]:
        value = dig(run, "queries", "questions", name, "ours", f"{stat}_ms")
        return [limit_part(f"{name} {stat}", value, limit)]

    return parts


def ratios(section: str, label: str) -> Callable[[Mapping[str, Any]], list[Part]]:
    """The largest ours/raw p50 ratio of a pass (and the range), against RATIO."""

    def parts(run: Mapping[str, Any]) -> list[Part]:
        questions = dig(run, section, "questions") or {}
        found = {n: e.get("ratio_p50") for n, e in questions.items() if e.get("ratio_p50")}
        if not found:
            return [Part(f"{label}: not measured", NOT_MEASURED)]
        worst = max(found, key=lambda n: found[n])
        part = limit_part(f"{label} max", found[worst], RATIO, "x")
        low = min(found.values())
        return [Part(f"{part.text} ({worst}; lowest {low:g}x)", part.status)]

    return parts


def graphql_overhead(run: Mapping[str, Any]) -> list[Part]:
    """The GraphQL overhead p50: median over the mix, and on the largest answer."""
    gateway = dig(run, "gateway") or {}
    largest = gateway.get("largest_question")
    return [
        limit_part("median of the mix", gateway.get("overhead_p50_ms_median"), OVERHEAD_MEDIAN_MS),
        limit_part(
            f"largest question ({largest})" if largest else "largest question",
            gateway.get("overhead_p50_ms_largest"),
            OVERHEAD_LARGEST_MS,
        ),
    ]


@dataclass(frozen=True)
class Target:
    """One target of the issue, stated for some of the suite's runs."""

    figure: str
    limit: str
    runs: tuple[str, ...]
    parts: Callable[[Mapping[str, Any]], list[Part]]


EVERY_RUN = tuple(SIZES)
TARGETS: tuple[Target, ...] = (
    Target(
        "embedded 1M server RSS, master + 2 workers",
        f"<= {EMBEDDED_1M_RSS_MB:g} MB",
        ("embedded-1m",),
        server_rss(EMBEDDED_1M_RSS_MB),
    ),
    Target(
        "embedded 1M load with a sync running, p99",
        f"<= {SYNC_P99_OVER_IDLE}x the idle p99 of the same run",
        ("embedded-1m",),
        sync_p99,
    ),
    Target(
        "embedded 1M load, 4 clients, uncached mix",
        f">= {UNCACHED_LOAD_RPS:g} req/s (2x {RERUN_2026_12_06_RPS}), "
        f"p99 <= {UNCACHED_LOAD_P99_MS:g} ms",
        ("embedded-1m",),
        uncached_load,
    ),
    Target(
        "landing page p50 after publish (warm)",
        f"<= {LANDING_AFTER_PUBLISH_MS:g} ms",
        EVERY_RUN,
        landing_after_publish,
    ),
    Target(
        "embedded 10M ingest with 2 jobs",
        f">= {EMBEDDED_10M_INGEST:,} samples/s",
        ("embedded-10m",),
        ingest_two_jobs,
    ),
    Target(
        "embedded 10M selective p50",
        f"<= {EMBEDDED_10M_SELECTIVE_MS:g} ms",
        ("embedded-10m",),
        question_p("selective", "p50", EMBEDDED_10M_SELECTIVE_MS),
    ),
    Target(
        "embedded 10M uncached landing p50",
        f"<= {EMBEDDED_10M_LANDING_MS:,g} ms",
        ("embedded-10m",),
        question_p("landing", "p50", EMBEDDED_10M_LANDING_MS),
    ),
    Target(
        "embedded 10M server RSS, master + 2 workers",
        f"<= 1.5 GB ({EMBEDDED_10M_RSS_MB:g} MB)",
        ("embedded-10m",),
        server_rss(EMBEDDED_10M_RSS_MB),
    ),
    Target(
        "engine 10M selective p50",
        f"<= {ENGINE_10M_SELECTIVE_P50_MS:g} ms",
        ("opensearch-10m",),
        question_p("selective", "p50", ENGINE_10M_SELECTIVE_P50_MS),
    ),
    Target(
        "engine 10M selective p99",
        f"<= {ENGINE_10M_SELECTIVE_P99_MS:g} ms",
        ("opensearch-10m",),
        question_p("selective", "p99", ENGINE_10M_SELECTIVE_P99_MS),
    ),
    Target(
        "ours / raw, every question of the operator mix",
        f"<= {RATIO}x (below 1: the plan, see above)",
        EVERY_RUN,
        ratios("queries", "ours/raw"),
    ),
    Target(
        "ours / raw, the mix as a registered researcher (noise, ledger)",
        f"<= {RATIO}x",
        EVERY_RUN,
        ratios("registered", "ours/raw"),
    ),
    Target(
        "ours / raw, Beacon v2 count queries",
        f"<= {RATIO}x",
        EVERY_RUN,
        ratios("beacon_raw", "Beacon/raw"),
    ),
    Target(
        "GraphQL overhead p50, median of the mix / largest question",
        f"<= {OVERHEAD_MEDIAN_MS:g} / {OVERHEAD_LARGEST_MS:g} ms",
        EVERY_RUN,
        graphql_overhead,
    ),
)


def load_runs(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """The result files by run name (the file's stem)."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in paths if p.exists()}


def target_rows(runs: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(figure, limit, run, figures, status) for every target and every run it names."""
    rows = []
    for target in TARGETS:
        for name in target.runs:
            run = runs.get(name)
            if run is None:
                parts = [Part("no result file", NOT_MEASURED)]
            elif run.get("samples") != SIZES[name]:
                parts = [Part(f"{run.get('samples')} samples, not {SIZES[name]:,}", NOT_MEASURED)]
            else:
                parts = target.parts(run)
            figures = "; ".join(p.text for p in parts)
            rows.append((target.figure, target.limit, name, figures, verdict(parts)))
    return rows


def targets_table(paths: Sequence[Path]) -> str:
    """The markdown table of every target against the result files."""
    runs = load_runs(paths)
    lines = [
        "| target | limit | run | figure(s) from the run's JSON | status |",
        "|---|---|---|---|---|",
    ]
    for figure, limit, name, figures, status in target_rows(runs):
        shown = f"**{status}**" if status == MISSED else status
        date = str(dig(runs.get(name), "date") or "")[:10]
        run = f"{name} ({date})" if date else name
        lines.append(f"| {figure} | {limit} | {run} | {figures} | {shown} |")
    return "\n".join(lines) + "\n"
