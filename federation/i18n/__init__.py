"""Texts the server writes for people (count reasons, access rules, notes, errors), per language.

Code never writes such a sentence itself: it names a `Message` (a catalogue key and its
parameters) and the gateway renders it at the edge in the language the client asked for
(`Accept-Language` or a `language` argument). The catalogues are data, one JSON file per
language beside this module (`messages.en.json`, `messages.ja.json`); the English one
reproduces, word for word, what the API said before it spoke Japanese, so English clients
see no change. tests/i18n checks both catalogues hold every key the code uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from federation.errors import BadInput

LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
CATALOGUE_DIR = Path(__file__).resolve().parent
# The key of the text that joins several messages into one ("; " in English).
JOIN_KEY = "join"


class UnknownLanguage(BadInput):
    """A language the server has no catalogue for; names the value and the known ones."""

    def __init__(self, value: str) -> None:
        self.language = value
        super().__init__("language", value, f"not one of {', '.join(LANGUAGES)}")


@dataclass(frozen=True)
class Message:
    """A sentence for people, by catalogue key, with the values it mentions."""

    key: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, key: str, **params: Any) -> Message:
        """`Message.of("count.rounded", step=10)`."""
        return cls(key, tuple(sorted(params.items())))

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        """The sentence in a language (English where the catalogue lacks the key)."""
        template = catalogue(language).get(self.key) or catalogue(DEFAULT_LANGUAGE)[self.key]
        return template.format(**dict(self.params))


@cache
def catalogue(language: str) -> dict[str, str]:
    """The catalogue of a language: key to template (`str.format` placeholders)."""
    if language not in LANGUAGES:
        raise UnknownLanguage(language)
    path = CATALOGUE_DIR / f"messages.{language}.json"
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def render_all(messages: Iterable[Message], language: str = DEFAULT_LANGUAGE) -> str | None:
    """Several messages as one text, joined the language's way; None when there are none."""
    texts = [m.render(language) for m in messages]
    return catalogue(language)[JOIN_KEY].join(texts) if texts else None


def language_of(explicit: str | None, accept_language: Iterable[tuple[str, float]]) -> str:
    """The language to answer in: the explicit choice, else the best of Accept-Language."""
    if explicit is not None:
        chosen = explicit.strip().lower()
        if chosen not in LANGUAGES:
            raise UnknownLanguage(explicit)
        return chosen
    ranked = sorted(accept_language, key=lambda pair: -pair[1])
    for tag, quality in ranked:
        primary = tag.strip().lower().split("-")[0]
        if quality > 0 and primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE
