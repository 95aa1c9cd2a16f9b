"""Errors in the asker's language: the gateway edge renders them from the catalogues.

Error texts are written in English where they are raised (they name the argument and the
value). For another language the edge puts the message in that language's frame for the
error's code ("入力値を使えません：...") with the detail translated where its sentence is
known (federation/gateway/error_details.py), and translates the fixed messages (backend
down, internal error) in full; the English text stays in `extensions.englishMessage`.
"""

from __future__ import annotations

from typing import Any

from federation.gateway.error_details import detail_in
from federation.gateway.errors import BACKEND_MESSAGE, INTERNAL_MESSAGE
from federation.i18n import DEFAULT_LANGUAGE, Message, catalogue

_FIXED = {BACKEND_MESSAGE: "error.backend", INTERNAL_MESSAGE: "error.internal"}
_FRAME = "error.frame."


def localise_errors(body: dict[str, Any], language: str) -> dict[str, Any]:
    """The response body with each error's message in `language` (English unchanged)."""
    errors = body.get("errors")
    if language == DEFAULT_LANGUAGE or not errors:
        return body
    return {**body, "errors": [localise_error(error, language) for error in errors]}


def localise_error(error: dict[str, Any], language: str) -> dict[str, Any]:
    """One error entry in `language`, keeping the English message in its extensions."""
    english = str(error.get("message", ""))
    extensions = dict(error.get("extensions") or {})
    if english in _FIXED:
        text = Message.of(_FIXED[english]).render(language)
    else:
        key = _FRAME + str(extensions.get("code", ""))
        if key not in catalogue(DEFAULT_LANGUAGE):
            return error
        text = Message.of(key, detail=detail_in(english, language)).render(language)
    return {**error, "message": text, "extensions": {**extensions, "englishMessage": english}}
