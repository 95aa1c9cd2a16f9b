"""The server's message catalogues: every key the code uses, in every language."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from federation import PROJECT_ROOT
from federation.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    Message,
    UnknownLanguage,
    catalogue,
    language_of,
    render_all,
)

# Keys named in code: Message.of("key", ...), and the error frames built from codes.
_KEY_IN_CODE = re.compile(r"""Message\.of\(\s*["']([\w.]+)["']""")
SOURCES = [*(PROJECT_ROOT / "federation").rglob("*.py")]


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def keys_used_in_code() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found.update(_KEY_IN_CODE.findall(Path(path).read_text(encoding="utf-8")))
    return found


def test_code_uses_keys_and_finds_them_in_the_source() -> None:
    used = keys_used_in_code()
    assert {"count.below_threshold", "access.exact", "records.none"} <= used


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_key_used_in_code_is_in_the_catalogue(language: str) -> None:
    missing = keys_used_in_code() - set(catalogue(language))
    assert missing == set()


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_catalogues_hold_the_same_keys_and_placeholders(language: str) -> None:
    english, other = catalogue(DEFAULT_LANGUAGE), catalogue(language)
    assert set(other) == set(english)
    for key, template in english.items():
        assert placeholders(other[key]) == placeholders(template), key
        assert other[key].strip(), key


def test_japanese_is_japanese() -> None:
    english, japanese = catalogue("en"), catalogue("ja")
    untranslated = [k for k in english if k != "join" and japanese[k] == english[k]]
    # Error frames in English are the bare detail; in Japanese each gets a lead sentence.
    assert untranslated == []


def test_messages_render_with_their_values_and_join_per_language() -> None:
    parts = (Message.of("count.noised", scale=1.0), Message.of("count.rounded", step=10))
    assert render_all(parts) == "fixed random noise (scale 1) added; rounded to the nearest 10"
    assert (
        render_all(parts, "ja") == "固定の乱数ノイズ（尺度 1）を加えています；10 単位に丸めています"
    )
    assert render_all(()) is None


def test_the_language_comes_from_the_argument_else_accept_language() -> None:
    assert language_of(None, [("fr", 1.0), ("ja-JP", 0.8), ("en", 0.5)]) == "ja"
    assert language_of(None, [("ja", 0.0), ("de", 1.0)]) == "en"
    assert language_of(" JA ", [("en", 1.0)]) == "ja"
    with pytest.raises(UnknownLanguage, match=r'language: not one of en, ja \(got "fr"\)'):
        language_of("fr", [])
