"""Smoke test of the benchmark runner at a tiny size: it runs end to end and writes its
results in the documented shape. Timings are not checked: CI machines vary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.suite import TABLE_END, TABLE_START, write_table
from bench.targets import MET, MISSED, NOT_MEASURED, target_rows
from federation import PROJECT_ROOT

QUESTIONS = {
    "selective",
    "landing",
    "chapter",
    "free_text",
    "selective+purpose",
    "landing+purpose",
    "chapter+purpose",
    "free_text+purpose",
}


def test_runner_writes_every_phase_at_tiny_size(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--backend",
        "embedded",
        "--samples",
        "2000",
        "--biobanks",
        "4",
        "--reps",
        "3",
        "--warmup",
        "1",
        "--load-seconds",
        "1",
        "--clients",
        "2",
        "--name",
        "smoke",
        "--results-dir",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=480, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["complete"] is True
    assert data["command"].startswith("python -m bench run --backend embedded")
    assert {"nproc", "memory_gb", "cpu_model", "versions", "git_commit"} <= set(data["machine"])
    assert len(data["loadavg_start"]) == 3

    ingest = data["ingest"]
    assert ingest["sample_rows"] == 2000
    assert 0 < ingest["indexed_samples"] <= 2000
    assert ingest["samples_per_s"] > 0 and ingest["peak_rss_mb"] > 0

    questions = data["queries"]["questions"]
    assert set(questions) == QUESTIONS
    for entry in questions.values():
        for side in ("ours", "raw"):
            assert entry[side]["n"] == 3
            assert {"p50_ms", "p95_ms", "p99_ms"} <= set(entry[side])
        assert entry["ratio_p50"] > 0
    # The hand-written SQL answers the same question: same exact totals for the operator.
    for name in ("selective", "landing", "chapter", "free_text"):
        assert questions[name]["answer"]["samples"] == questions[name]["answer"]["raw_samples"]
    # Timed answers are computed afresh; cache hits are timed apart, every one a hit.
    cached = data["queries"]["cached"]
    assert set(cached["questions"]) == QUESTIONS
    assert cached["answers_from_cache"] == 3 * len(QUESTIONS)
    # The landing page after the publish: every search cut from the sync's warm answer.
    warm = data["queries"]["landing_warm"]
    assert warm["n"] == 3 and warm["warm_hits"] == warm["searches"]
    assert "landing after publish (warm) p50 ms" in {t["target"] for t in data["targets"]}

    gateway = data["gateway"]
    assert set(gateway["questions"]) == QUESTIONS
    assert "overhead_p50_ms_median" in gateway
    # The Beacon count query beside the same GraphQL search (same released figure checked).
    beacon = data["beacon"]
    assert set(beacon["questions"]) == {"selective", "landing", "chapter"}
    for entry in beacon["questions"].values():
        assert entry["beacon_http"]["n"] == entry["graphql_http"]["n"] == 3
        assert entry["ratio_p50"] > 0
    assert "Beacon count / GraphQL p50 selective" in {t["target"] for t in data["targets"]}
    for run in (data["load"]["idle"], data["load"]["with_sync"]):
        assert run["requests"] > 0 and run["errors"] == 0
        assert {"p50_ms", "p95_ms", "p99_ms"} <= set(run["latency"])
    assert data["load"]["with_sync"]["sync"]["biobank"]
    assert data["server_memory"]["peak_rss_mb_sum"] > 0
    assert {t["target"] for t in data["targets"]} >= {"ingest samples/s", "selective p50 ms"}
    assert_issue_18_measurements(data)
    assert (tmp_path / "smoke.md").read_text().startswith("# smoke")

    # The suite's table is rebuilt from result files between the markers of the doc.
    doc = tmp_path / "performance.md"
    doc.write_text(f"intro\n{TABLE_START}\nold table\n{TABLE_END}\nafter\n", encoding="utf-8")
    table = write_table(doc, [tmp_path / "smoke.json"])
    text = doc.read_text(encoding="utf-8")
    assert "old table" not in text and table in text
    assert text.startswith("intro\n") and text.endswith(f"{TABLE_END}\nafter\n")
    assert "| backend, samples | embedded, 2,000 |" in table

    # The targets table reads every new figure: as the suite's 1M run (the size check
    # passes), every target of that run is judged, but the 4-client load (2 clients here).
    as_suite_run = {**data, "samples": 1_000_000}
    rows = {r[0]: r for r in target_rows({"embedded-1m": as_suite_run}) if r[2] == "embedded-1m"}
    load = rows.pop("embedded 1M load, 4 clients, uncached mix")
    assert load[4] == NOT_MEASURED and "no load run with 4 clients" in load[3]
    assert len(rows) == 7 and all(r[4] in (MET, MISSED) for r in rows.values()), rows


def assert_issue_18_measurements(data: dict[str, Any]) -> None:
    """Issue 18's figures: the registered pass, Beacon against raw, memory per process,
    the load with a sync as a ratio, mixed roles, the landing page after a publish."""
    registered = data["registered"]
    assert set(registered["questions"]) == QUESTIONS
    assert registered["ledger"] is True and registered["first_answer_precision"]
    for entry in registered["questions"].values():
        assert entry["ours"]["n"] == entry["raw"]["n"] == 3 and entry["ratio_p50"] > 0
    beacon = data["beacon_raw"]
    assert set(beacon["questions"]) == {"selective", "landing", "chapter"}
    for entry in beacon["questions"].values():
        # The Beacon count is the operator's exact count: the hand-written one.
        assert entry["answer"]["samples"] == entry["answer"]["raw_samples"] > 0
        assert entry["ours"]["n"] == entry["raw"]["n"] == 3
    gateway = data["gateway"]
    assert gateway["largest_question"] in QUESTIONS
    sizes = {name: e["response_bytes"] for name, e in gateway["questions"].items()}
    assert sizes[gateway["largest_question"]] == max(sizes.values()) > 0
    assert "overhead_p50_ms_largest" in gateway
    memory = data["server_memory"]
    assert memory["processes"] == 3  # master + 2 workers
    for role in ("master", "worker1", "worker2"):
        assert 0 < memory[role]["pss_mb"] <= memory[role]["rss_mb"] <= memory[role]["peak_rss_mb"]
    assert 0 < memory["pss_mb_sum"] <= memory["peak_rss_mb_sum"]
    load = data["load"]
    assert load["with_sync_p99_over_idle"] == round(
        load["with_sync"]["latency"]["p99_ms"] / load["idle"]["latency"]["p99_ms"], 2
    )
    mixed = load["mixed_roles"]
    # Client n asks as the n-th role: with 2 clients, anonymous and registered.
    assert mixed["errors"] == 0 and set(mixed["by_role"]) == {"anonymous", "registered", "operator"}
    assert mixed["by_role"]["anonymous"]["n"] > 0 and mixed["by_role"]["registered"]["n"] > 0
    after = data["landing_after_publish"]
    assert all(sync["exit_code"] == 0 and sync["new_generation"] for sync in after["syncs"])
    assert after["first_after_publish"]["n"] == after["rounds"] == 3
    for role in ("anonymous", "registered", "operator"):
        assert after["first_by_role"][role]["n"] == 3
        assert after["steady_by_role"][role]["n"] == 3 * 3  # reps per publish
    assert data["ingest"]["stored"]["data_dir_bytes"] > 0
