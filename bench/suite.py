"""`python -m bench suite`: every run behind docs/performance.md, then its table.

One command reproduces the published figures: it starts the local OpenSearch node when an
engine run needs one and none answers (scripts/search-node, heap from BIOFED_NODE_HEAP,
4 GB unless set), runs each benchmark in turn (never two at once: they would measure each
other), and rewrites the table between the markers in docs/performance.md from the JSON
files, and the table of issue 18's targets (bench/targets.py: every target, the figures
from the JSONs, met / missed / not measured) between its own markers. `--only NAME` runs a
subset; `--table-only` just rewrites the tables; `--keep` keeps each run's data and indices
(for profiling afterwards).
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.runner import ENGINE_URL, RESULTS, ROOT, Options, comparison_table, run
from bench.targets import targets_table

DOC = ROOT / "docs" / "performance.md"
TABLE_START = "<!-- bench suite table: start (written by python -m bench suite) -->"
TABLE_END = "<!-- bench suite table: end -->"
TARGETS_START = "<!-- bench suite targets: start (written by python -m bench suite) -->"
TARGETS_END = "<!-- bench suite targets: end -->"
NODE_HEAP = "4g"


@dataclass(frozen=True)
class SuiteRun:
    name: str
    backend: str
    samples: int
    reps: int = 10
    warmup: int = 2
    load_seconds: float = 20.0
    # Biobanks synced at once: the issue states the 10M ingest target for 2 jobs.
    sync_jobs: int = 2


# The sizes issue 18 asks for: 1M and 10M on both backends (the 10M runs take most of the
# suite's time on 2 cores, most of it the syncs).
RUNS = (
    SuiteRun("embedded-1m", "embedded", 1_000_000),
    # Fewer repetitions at 10M: the hand-written forms count distinct donors over every row
    # (tens of seconds each on 2 shared cores), and so does the landing page with a purpose.
    SuiteRun("embedded-10m", "embedded", 10_000_000, reps=5, warmup=1, load_seconds=10.0),
    SuiteRun("opensearch-1m", "opensearch", 1_000_000),
    SuiteRun("opensearch-10m", "opensearch", 10_000_000),
)


def engine_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ensure_node(url: str) -> None:
    """Start the local node when nothing answers at `url` (it must be the node's port)."""
    if engine_answers(url):
        return
    port = url.rsplit(":", 1)[-1].strip("/")
    env = {**os.environ, "BIOFED_NODE_PORT": port}
    env.setdefault("BIOFED_NODE_HEAP", NODE_HEAP)
    subprocess.run([str(ROOT / "scripts" / "search-node"), "start"], env=env, check=True)


def suite_results(results: Path = RESULTS) -> list[Path]:
    """The suite's result files that exist, in suite order."""
    return [results / f"{r.name}.json" for r in RUNS if (results / f"{r.name}.json").exists()]


def replace_between(doc: Path, start_marker: str, end_marker: str, table: str) -> str:
    """Put `table` between the markers in `doc`; return it."""
    text = doc.read_text(encoding="utf-8")
    head, start, rest = text.partition(start_marker)
    _, end, tail = rest.partition(end_marker)
    if not start or not end:
        raise ValueError(f"{doc} has no suite table markers ({start_marker} ... {end_marker})")
    doc.write_text(f"{head}{start_marker}\n{table}{end_marker}{tail}", encoding="utf-8")
    return table


def write_table(doc: Path, paths: list[Path]) -> str:
    """Rewrite the runs' table between the markers in `doc` from result files; return it."""
    return replace_between(doc, TABLE_START, TABLE_END, comparison_table(paths))


def write_targets(doc: Path, paths: list[Path]) -> str:
    """Rewrite the targets table between its markers in `doc` from result files."""
    return replace_between(doc, TARGETS_START, TARGETS_END, targets_table(paths))


def suite(
    only: tuple[str, ...] = (),
    *,
    table_only: bool = False,
    engine_url: str = ENGINE_URL,
    keep: bool = False,
) -> int:
    """Run the suite (or the runs named in `only`); return the number of failed runs."""
    unknown = set(only) - {r.name for r in RUNS}
    if unknown:
        raise ValueError(f"no suite run named {sorted(unknown)}; runs: {[r.name for r in RUNS]}")
    failures = 0
    if not table_only:
        chosen = [r for r in RUNS if not only or r.name in only]
        if any(r.backend != "embedded" for r in chosen):
            ensure_node(engine_url)
        for entry in chosen:
            options = Options(
                backend=entry.backend,
                samples=entry.samples,
                name=entry.name,
                reps=entry.reps,
                warmup=entry.warmup,
                load_seconds=entry.load_seconds,
                sync_jobs=entry.sync_jobs,
                engine_url=engine_url,
                keep=keep,
                command=f"python -m bench suite --only {entry.name}",
            )
            try:
                data = run(options)
            except Exception as err:  # report it and go on: the other runs still count
                print(f"{entry.name}: FAILED: {type(err).__name__}: {err}")
                failures += 1
                continue
            failures += not data["complete"]
            print(f"{entry.name}: written to bench/results/{entry.name}.json")
    print(write_table(DOC, suite_results()), end="")
    # Every run of the suite, found or not: a missing file shows as "not measured".
    print(write_targets(DOC, [RESULTS / f"{r.name}.json" for r in RUNS]), end="")
    return failures
