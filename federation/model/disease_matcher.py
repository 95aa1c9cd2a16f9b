"""Ranking ICD-10 items for what a person typed, and resolving free text to codes.

A researcher typing "breast" or 乳 means breast cancer (C50) far more often than the
breast engorgement of a newborn (P83.4), and "breast cancer" means C50 and everything
beneath it, not every item whose name mentions a breast. Each name that matches is scored:

- how it matches: the whole name, its start, every word at a word start, or inside it;
- what kind of name it is: a curated colloquial name (schema/vocab/disease_synonyms.csv)
  counts most, then an official title, then other names (MEDIS standard names, index words,
  kana readings);
- the level of the item: a category (C50) before its subcategories, blocks in between;
- how much of the name the query covers: "asthma" is all of J45 "Asthma";
- whether the query had to be reworded first (cancer -> malignant neoplasm, がん -> 癌).

An item scores its best name. Free text resolves to the items scoring close to the best,
without those that lie beneath another one found (a search for C50 finds C50.9 anyway).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from federation.model import icd10
from federation.model.disease_text import contains_words, fold, is_latin, starts_words

# (code, language, name, folded name or reading, kind) as the name index holds them.
Entry = tuple[str, str, str, str, str]

# Kinds of names in the index, and how much a match on each says about what is meant.
SYNONYM, TITLE, NAME, READING, ALIAS = "synonym", "title", "name", "reading", "alias"
_KIND_BONUS = {SYNONYM: 20.0, TITLE: 6.0, NAME: 0.0, READING: 0.0, ALIAS: 0.0}
# A word inside a colloquial name ("hemorrhage" in "brain hemorrhage") says little.
_SYNONYM_INSIDE_BONUS = 5.0
# Which name to show when several of an item's names match equally well.
_SHOW_PREFERENCE = {TITLE: 3, NAME: 2, READING: 2, SYNONYM: 1, ALIAS: 0}
_LEVEL_BONUS = {"category": 4.0, "block": 2.0, "chapter": 1.0, "subcategory": 0.0}
_EXACT, _PREFIX, _WORD_STARTS, _CJK_INSIDE, _INSIDE = 100.0, 85.0, 70.0, 60.0, 45.0
_COVERAGE_WEIGHT = 10.0
_REWORDED_PENALTY = 8.0
# A curated name standing for several items ranks them in the table's order.
_LATER_ITEM_PENALTY = 0.5
# A Latin query this short only matches at a word start ("mi" is not in "vomiting").
_SHORT_LATIN = 3
_CODE_EXACT, _CODE_PREFIX = 300.0, 200.0
_LIFT = 0.1

# Free text resolves to the items within this many points of the best one, at most this many.
RESOLVE_BAND = 10.0
RESOLVE_MAX = 20
_RESOLVE_POOL = 200

_CODE_LIKE = re.compile(r"^[A-Za-z]\d{1,2}(\.\d{0,2})?$|^[IVXL]+$")
# Lay words and the WHO wording that says the same (WHO says "malignant neoplasm").
_ENGLISH_REWORDINGS = (
    ("cancer", "malignant neoplasm"),
    ("carcinoma", "malignant neoplasm"),
    ("tumour", "neoplasm"),
    ("tumor", "neoplasm"),
    ("heart attack", "myocardial infarction"),
    ("stroke", "cerebral infarction"),
    ("diabetes", "diabetes mellitus"),
    # WHO writes British English.
    ("leukem", "leukaem"),
    ("anemi", "anaemi"),
    ("hemorrh", "haemorrh"),
    ("hemato", "haemato"),
    ("esophag", "oesophag"),
    ("edema", "oedema"),
    ("ischemi", "ischaemi"),
    ("pediatric", "paediatric"),
    ("tumor", "tumour"),
    ("'s", ""),
)
# がん, ガン (folded to がん) and 癌 are one word; titles say 悪性新生物 and put の between.
_JAPANESE_REWORDINGS = (
    ("がん", "癌"),
    ("がん", " 悪性新生物"),
    ("癌", "がん"),
    ("癌", " 悪性新生物"),
    ("悪性腫瘍", "悪性新生物"),
    ("腫瘍", "新生物"),
)


@dataclass(frozen=True)
class NameMatch:
    """A code found by a name search, with the name that matched and its language."""

    code: str
    name: str
    language: str
    score: float


class NameSource(Protocol):
    """What the matcher reads: the names holding a word, and each item's title."""

    def containing(self, queries: Sequence[str]) -> Sequence[Entry]: ...

    def title(self, code: str, language: str) -> str: ...

    def position(self, code: str) -> int: ...

    def synonym_order(self, code: str, folded: str) -> int: ...


def is_code_like(text: str) -> bool:
    """True when the text looks like an ICD-10 code (C50, c50.9, II) rather than a name."""
    return bool(_CODE_LIKE.match(text.strip()))


def variants(query: str) -> list[tuple[str, float]]:
    """The folded query and its rewordings, each with the penalty a match through it takes."""
    found = {query: 0.0}
    pairs = _ENGLISH_REWORDINGS if is_latin(query) else _JAPANESE_REWORDINGS
    for lay, official in pairs:
        if lay in query:
            reworded = " ".join(query.replace(lay, official).split())
            if reworded and reworded not in found:
                found[reworded] = _REWORDED_PENALTY
    return list(found.items())


def _tier(query: str, folded: str, latin: bool) -> float:
    if folded == query:
        return _EXACT
    if folded.startswith(query):
        return _PREFIX
    if not contains_words(folded, query):
        return 0.0
    if not latin:
        return _CJK_INSIDE
    if starts_words(folded, query):
        return _WORD_STARTS
    return _INSIDE if len(query) > _SHORT_LATIN else 0.0


def _is_twin_block(code: str) -> bool:
    """A block of one category (C50-C50): the same item as the category, named the same."""
    first, _, last = code.partition("-")
    return bool(last) and first == last


class DiseaseMatcher:
    """Ranks items for a text (autocomplete) and resolves free text to codes (search)."""

    def __init__(self, names: NameSource) -> None:
        self.names = names

    def rank(self, text: str, limit: int = 10) -> list[NameMatch]:
        """The items a person most likely means by `text`, best first."""
        query = fold(text)
        if not query:
            return []
        scores: dict[str, float] = {}
        shown: dict[str, tuple[tuple[float, int], str, str]] = {}  # (how well, name, language)
        tiers: dict[str, float] = {}  # how each item's best name matched
        if is_code_like(text):
            upper = text.strip().upper()
            for code in icd10.all_codes():
                if code.startswith(upper) and not _is_twin_block(code):
                    scores[code] = _CODE_EXACT if code == upper else _CODE_PREFIX - len(code)
                    shown[code] = ((_EXACT, _SHOW_PREFERENCE[TITLE]), icd10.name(code), "en")
        for variant, penalty in variants(query):
            latin = is_latin(variant)
            for code, language, name, folded, kind in self.names.containing([variant]):
                tier = _tier(variant, folded, latin)
                if not tier or _is_twin_block(code):
                    continue
                bonus = _KIND_BONUS[kind]
                if kind == SYNONYM and tier < _PREFIX:
                    bonus = _SYNONYM_INSIDE_BONUS
                score = (
                    tier
                    + bonus
                    + _LEVEL_BONUS[icd10.kind(code)]
                    + _COVERAGE_WEIGHT * len(variant) / max(len(folded), 1)
                    - penalty
                )
                if kind == SYNONYM:
                    score -= _LATER_ITEM_PENALTY * self.names.synonym_order(code, folded)
                scores[code] = max(score, scores.get(code, score))
                tiers[code] = max(tier, tiers.get(code, tier))
                how_well = (tier - penalty, _SHOW_PREFERENCE[kind])
                if code not in shown or how_well > shown[code][0]:
                    # An alias derived from a subcategory's title is shown as the title.
                    display = self.names.title(code, language) if kind == ALIAS else name
                    shown[code] = (how_well, display, language)
        _lift_categories(scores, tiers)
        order = sorted(scores, key=lambda c: (-scores[c], self.names.position(c)))
        return [NameMatch(c, shown[c][1], shown[c][2], scores[c]) for c in order[:limit]]

    def resolve(self, text: str, synonym_codes: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The codes a free text stands for: a curated name's items, or the best matches."""
        if is_code_like(text):
            try:
                return (icd10.normalise(text),)
            except icd10.UnknownCode:
                pass
        if synonym_codes:
            return _outermost(synonym_codes)
        ranked = self.rank(text, _RESOLVE_POOL)
        if not ranked:
            return ()
        floor = ranked[0].score - RESOLVE_BAND
        return _outermost([m.code for m in ranked if m.score >= floor])[:RESOLVE_MAX]


def _lift_categories(scores: dict[str, float], tiers: dict[str, float]) -> None:
    """Rank a category just above its best subcategory when its own name starts with the
    query: 帯状疱疹 names B02.9 exactly and B02 by its start, and B02 is what is meant."""
    for code, score in list(scores.items()):
        if icd10.kind(code) != "subcategory":
            continue
        parent = icd10.ancestors(code)[0]
        if tiers.get(parent, 0.0) >= _PREFIX and scores[parent] <= score:
            scores[parent] = score + _LIFT


def _outermost(codes: Sequence[str]) -> tuple[str, ...]:
    """The codes in their order, without those beneath another one of them."""
    chosen = set(codes)
    return tuple(
        dict.fromkeys(c for c in codes if not any(a in chosen for a in icd10.ancestors(c)))
    )
