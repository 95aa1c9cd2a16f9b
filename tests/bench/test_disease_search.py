"""The disease-search benchmark runs over the gold set and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from bench import disease_search


def test_the_benchmark_writes_accuracy_and_timings(tmp_path: Path) -> None:
    out = tmp_path / "disease-search.json"
    result = disease_search.main(["--out", str(out), "--reps", "1"])
    assert json.loads(out.read_text(encoding="utf-8")) == result
    english = result["languages"]["en"]
    assert english["queries"] >= 30
    assert (
        english["curated_name"]["queries"] + english["found_by_ranking"]["queries"]
        == (english["queries"])
    )
    assert 0.0 <= english["top1"] <= english["top3"] <= 1.0
    assert english["find"]["p50_ms"] > 0 and english["find"]["n"] == english["queries"]
