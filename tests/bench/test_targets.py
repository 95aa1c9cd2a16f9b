"""bench.targets: every target of issue 18 against result files, met / missed / not measured.

Read on a committed result file with issue 18's fields taken out (the shape of the 2026-11-26
runs) and on made-up runs at each limit. The smoke test
(test_runner.py) builds the same table from a run that has every new field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.suite import RUNS, TARGETS_END, TARGETS_START, write_targets
from bench.targets import (
    MET,
    MISSED,
    NOT_MEASURED,
    SIZES,
    TARGETS,
    target_rows,
    targets_table,
)
from federation import PROJECT_ROOT

OLDER = PROJECT_ROOT / "bench" / "results" / "embedded-1m.json"


def rows_for(runs: dict[str, Any], figure: str) -> dict[str, tuple[str, str]]:
    """run name -> (figures, status) of one target."""
    return {
        run: (figures, status)
        for name, _, run, figures, status in target_rows(runs)
        if name == figure
    }


def test_every_target_of_the_issue_has_a_row_for_every_run_it_names() -> None:
    assert set(SIZES) == {r.name for r in RUNS}
    rows = target_rows({})
    assert len(rows) == sum(len(t.runs) for t in TARGETS)
    # No result file at all: every row says so, none is met.
    assert {status for *_, status in rows} == {NOT_MEASURED}
    figures = {t.figure for t in TARGETS}
    for words in (
        "server RSS",
        "sync running",
        "uncached mix",
        "landing page p50 after publish",
        "10M ingest with 2 jobs",
        "10M selective p50",
        "10M uncached landing",
        "engine 10M selective p99",
        "ours / raw",
        "registered",
        "Beacon",
        "GraphQL overhead",
    ):
        assert any(words in f for f in figures), words


def older_shape(path: Path) -> dict[str, Any]:
    """A committed result file without the fields issue 18 added (as the 2026-11-26 runs
    were written), whatever run is committed there now."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("landing_after_publish", "registered", "beacon_raw"):
        data.pop(key, None)
    for key in ("largest_question", "overhead_p50_ms_largest"):
        data["gateway"].pop(key, None)
    data["load"].pop("mixed_roles", None)
    for key in ("pss_mb_sum", "processes", "rss_mb_sum"):
        data["server_memory"].pop(key, None)
    return data


def test_an_older_result_file_reads_and_its_missing_figures_are_not_measured() -> None:
    older = older_shape(OLDER)
    runs = {"embedded-1m": older}
    landing = rows_for(runs, "landing page p50 after publish (warm)")
    assert landing["embedded-1m"][1] == NOT_MEASURED
    assert "not measured" in landing["embedded-1m"][0]
    assert rows_for(runs, "ours / raw, Beacon v2 count queries")["embedded-1m"][1] == NOT_MEASURED
    # Figures it has are judged against the limit.
    total = older["server_memory"]["peak_rss_mb_sum"]
    rss = rows_for(runs, "embedded 1M server RSS, master + 2 workers")["embedded-1m"]
    assert rss[1] == (MET if total <= 600 else MISSED)
    # Shown as the table shows figures: thousands grouped and whole, smaller ones as they are.
    shown = f"{total:,.0f}" if total >= 1000 else f"{total:g}"
    assert f"VmHWM summed {shown} MB" in rss[0] and "Pss not measured" in rss[0]
    idle = older["load"]["idle"]["latency"]["p99_ms"]
    busy = older["load"]["with_sync"]["latency"]["p99_ms"]
    sync = rows_for(runs, "embedded 1M load with a sync running, p99")["embedded-1m"]
    assert sync[1] == (MET if busy / idle <= 1.5 else MISSED)
    assert f"{round(busy / idle, 2):g}x" in sync[0]
    # The GraphQL target needs the largest question too, which this shape lacks: met
    # figures do not make the row met (missed beats not measured, which beats met).
    overhead = rows_for(runs, "GraphQL overhead p50, median of the mix / largest question")
    assert "largest question: not measured" in overhead["embedded-1m"][0]
    median = older["gateway"]["overhead_p50_ms_median"]
    assert overhead["embedded-1m"][1] == (MISSED if median > 5 else NOT_MEASURED)


def made_up_run(samples: int, value: float) -> dict[str, Any]:
    """A run whose every timed figure is `value` ms (and ratios value/100)."""
    timing = {"p50_ms": value, "p99_ms": value, "n": 3}
    questions = {
        name: {"ours": timing, "raw": timing, "ratio_p50": value / 100}
        for name in ("selective", "landing")
    }
    return {
        "samples": samples,
        "queries": {"questions": questions},
        "registered": {"questions": questions},
        "beacon_raw": {"questions": questions},
        "gateway": {
            "overhead_p50_ms_median": value / 4,
            "overhead_p50_ms_largest": value / 2,
            "largest_question": "landing",
        },
        "landing_after_publish": {"first_after_publish": timing, "steady": timing},
    }


def test_limits_are_inclusive_and_a_run_at_another_size_is_not_measured() -> None:
    at_limit = {"opensearch-10m": made_up_run(10_000_000, 20.0)}
    landing = rows_for(at_limit, "landing page p50 after publish (warm)")
    assert landing["opensearch-10m"][1] == MET
    over = {"opensearch-10m": made_up_run(10_000_000, 20.5)}
    assert rows_for(over, "landing page p50 after publish (warm)")["opensearch-10m"][1] == MISSED
    # 130 ms: ratios 1.3x (met, the limit), overhead 32.5 / 65 ms (missed).
    ratios = {"opensearch-10m": made_up_run(10_000_000, 130.0)}
    for figure in (
        "ours / raw, every question of the operator mix",
        "ours / raw, the mix as a registered researcher (noise, ledger)",
        "ours / raw, Beacon v2 count queries",
    ):
        assert rows_for(ratios, figure)["opensearch-10m"][1] == MET, figure
    small = {"opensearch-10m": made_up_run(100_000, 1.0)}
    row = rows_for(small, "engine 10M selective p50")["opensearch-10m"]
    assert row[1] == NOT_MEASURED and "100000 samples" in row[0]


def test_the_targets_table_is_written_between_its_markers(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"intro\n{TARGETS_START}\nold\n{TARGETS_END}\nafter\n", encoding="utf-8")
    older = tmp_path / "embedded-1m.json"
    older.write_text(json.dumps(older_shape(OLDER)), encoding="utf-8")
    table = write_targets(doc, [older, tmp_path / "embedded-10m.json"])
    text = doc.read_text(encoding="utf-8")
    assert "old" not in text and table in text and text.endswith(f"{TARGETS_END}\nafter\n")
    assert table == targets_table([older, tmp_path / "embedded-10m.json"])
    assert "| embedded 10M selective p50 | <= 150 ms | embedded-10m | no result file |" in table
    date = json.loads(older.read_text(encoding="utf-8"))["date"][:10]
    assert f"| embedded-1m ({date}) |" in table and "not measured" in table
