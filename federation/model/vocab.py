"""Controlled vocabularies (MIABIS and DUO) read from the tables in `schema/vocab/`."""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from functools import cache

from federation import SCHEMA_DIR

VOCAB_DIR = SCHEMA_DIR / "vocab"
# A vocabulary this small is listed in full when a value is not in it; a longer one by the
# codes closest to the value, so an error stays one readable line.
LISTED_IN_FULL = 12
CLOSEST_SHOWN = 5


@dataclass(frozen=True)
class Term:
    """One entry of a controlled vocabulary."""

    code: str
    label: str
    ontology_uri: str = ""


@dataclass(frozen=True)
class Vocabulary:
    """A named code list with labels, looked up case-insensitively."""

    name: str
    terms: tuple[Term, ...]
    # Built once: validation looks a code up per field of every record, and a cache keyed
    # on the vocabulary itself would hash all its terms on each lookup.
    _by_upper: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_upper", {t.code.upper(): t.code for t in self.terms})

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.terms)

    def canonical(self, value: str) -> str | None:
        """The code spelled as in the table, or None when `value` is not in it."""
        return self._by_upper.get(value.strip().upper())

    def rejection(self, value: str) -> str:
        """Why `value` is not accepted, with the allowed codes (or the closest ones)."""
        head = f"{value!r} is not in the {self.name} vocabulary"
        if len(self.terms) <= LISTED_IN_FULL:
            return f"{head}; allowed: {', '.join(self.codes)}"
        closest = difflib.get_close_matches(
            value.strip().upper(), list(self._by_upper), n=CLOSEST_SHOWN, cutoff=0.4
        )
        shown = [self._by_upper[c] for c in closest] or list(self.codes[:CLOSEST_SHOWN])
        kind = "closest" if closest else "for example"
        return (
            f"{head}; {kind}: {', '.join(shown)} ({len(self.terms)} codes, all in "
            f"schema/vocab/{self.name}.csv)"
        )

    def label(self, code: str) -> str:
        for term in self.terms:
            if term.code == code:
                return term.label
        return code


@cache
def crosswalk(name: str, column: str) -> dict[str, str]:
    """`schema/vocab/<name>.csv` read as a mapping table: source `code` -> `column`."""
    with (VOCAB_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return {row["code"]: row[column] for row in csv.DictReader(handle) if row[column]}


@cache
def vocabulary(name: str) -> Vocabulary:
    """Load `schema/vocab/<name>.csv`."""
    with (VOCAB_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return Vocabulary(
        name, tuple(Term(r["code"], r["label"], r.get("ontology_uri", "")) for r in rows)
    )


def material_types() -> Vocabulary:
    return vocabulary("material_types")


def collection_types() -> Vocabulary:
    return vocabulary("collection_types")


def data_categories() -> Vocabulary:
    return vocabulary("data_categories")


def sexes() -> Vocabulary:
    return vocabulary("sex")


def storage_temperatures() -> Vocabulary:
    return vocabulary("storage_temperatures")


# Sample availability is ours: MIABIS has no table for it, and a researcher mostly wants to
# know whether asking is worth it.
AVAILABILITY = ("available", "limited", "unavailable")
