"""The curated table of colloquial names, abbreviations and missing titles of ICD-10 items.

WHO and Japanese ICD-10 titles say "malignant neoplasm of breast" (乳房の悪性新生物); people
type "breast cancer", 乳がん, "T2D" or 盲腸. `schema/vocab/disease_synonyms.csv` (written
for this project, see schema/vocab/SOURCES.md) maps such names to the item a researcher
means. A name on several rows is one idea spread over several items ("leukaemia" is C91 to
C95): its first row is the usual one. Rows of kind `title` name an item that the Japanese
ICD-10 data leaves unnamed (the block C00-C75).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache

from federation.errors import FederationError
from federation.model import icd10
from federation.model.disease_text import fold
from federation.model.vocab import VOCAB_DIR

SYNONYMS_FILE = VOCAB_DIR / "disease_synonyms.csv"
KINDS = ("colloquial", "abbreviation", "title")
LANGUAGES = ("en", "ja")


class SynonymTableError(FederationError, ValueError):
    """A row of the synonym table is invalid; the message names the row and the field."""

    code = "SYNONYM_TABLE"


@dataclass(frozen=True)
class Synonym:
    """A name people use for an ICD-10 item, its kana reading, and its rank within the idea."""

    code: str
    language: str
    name: str
    reading: str
    kind: str
    order: int  # 0 for the first item a name stands for, 1 for the next, ...

    @property
    def folded(self) -> str:
        return fold(self.name)


@cache
def synonyms() -> tuple[Synonym, ...]:
    """Every row of the table, validated (codes must be WHO ICD-10 spelled the WHO way)."""
    rows: list[Synonym] = []
    seen: dict[str, int] = {}
    with SYNONYMS_FILE.open(encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            rows.append(_synonym(row, line, seen))
    return tuple(rows)


def _synonym(row: dict[str, str], line: int, seen: dict[str, int]) -> Synonym:
    where = f"{SYNONYMS_FILE.name} line {line}"
    code, language = row["code"].strip(), row["language"].strip()
    name, kind = row["name"].strip(), row["kind"].strip()
    if not icd10.is_code(code) or icd10.normalise(code) != code:
        raise SynonymTableError(f"{where}: code {code!r} is not a WHO ICD-10 code as WHO spells it")
    if language not in LANGUAGES:
        raise SynonymTableError(f"{where}: language {language!r} is not one of {LANGUAGES}")
    if kind not in KINDS:
        raise SynonymTableError(f"{where}: kind {kind!r} is not one of {KINDS}")
    if not name:
        raise SynonymTableError(f"{where}: name is empty")
    key = f"{language}:{fold(name)}"
    order = seen.get(key, 0)
    seen[key] = order + 1
    return Synonym(code, language, name, (row.get("reading") or "").strip(), kind, order)


def by_name() -> dict[str, tuple[Synonym, ...]]:
    """Rows by folded name (and folded reading), first item first."""
    found: dict[str, list[Synonym]] = {}
    for synonym in synonyms():
        for key in {synonym.folded, fold(synonym.reading)} - {""}:
            found.setdefault(key, []).append(synonym)
    return {key: tuple(rows) for key, rows in found.items()}
