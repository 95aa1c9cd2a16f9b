"""How disease names and queries are compared: one folded form for every script and width."""

from __future__ import annotations

import re
import unicodedata

# Katakana to hiragana: a reading typed either way (ニュウガン, にゅうがん) matches.
_KATAKANA_TO_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
# Where a word starts in a Latin name: after a space or punctuation, or at the start.
_WORD_START = r"(?:^|[\s,(:;/\[-])"
_LATIN_OR_DIGIT = re.compile(r"^[\x00-\x7f]+$")


def fold(text: str) -> str:
    """Case-, width- and kana-insensitive form used for matching (NFKC, casefold, hiragana)."""
    return unicodedata.normalize("NFKC", text).casefold().strip().translate(_KATAKANA_TO_HIRAGANA)


def words(text: str) -> list[str]:
    """The words of a folded text; Japanese has no spaces, so a CJK query is one word."""
    return text.split() if " " in text else [text]


def contains_words(folded_name: str, query: str) -> bool:
    """True when every word of the folded query occurs in the folded name."""
    return all(word in folded_name for word in words(query))


def starts_words(folded_name: str, query: str) -> bool:
    """True when every word of the query starts a word of the name (Latin script)."""
    return all(re.search(_WORD_START + re.escape(w), folded_name) for w in words(query))


def is_latin(text: str) -> bool:
    """True for ASCII text: word boundaries mean something there, not in Japanese."""
    return bool(_LATIN_OR_DIGIT.match(text))
