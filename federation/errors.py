"""One root for the project's own errors, each with a stable code.

Every room raises subclasses of `FederationError` so that an entry point (GraphQL, the
Beacon API, the CLI, a sync run record) can turn any expected failure into a message and
a code without knowing which room raised it. Codes are part of the public contract:
clients and admins branch on them, never on message text. Subclasses keep the builtin
base they already had (ValueError, RuntimeError, ...) where callers catch those.
"""

from __future__ import annotations

import json
from typing import Any


class FederationError(Exception):
    """An expected failure with a stable, machine-readable `code`."""

    code: str = "INTERNAL_SERVER_ERROR"


class RequestError(FederationError):
    """An expected failure of one request; `extensions` carry details a client can act on."""

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.extensions = extensions


class BadInput(RequestError, ValueError):
    """An argument value a service cannot use; names the argument and the value."""

    code = "BAD_USER_INPUT"

    def __init__(self, argument: str, value: Any, reason: str) -> None:
        shown = json.dumps(value, default=str, ensure_ascii=False)
        super().__init__(
            f"{argument}: {reason} (got {shown})", argument=argument, value=json.loads(shown)
        )


def unencodable(value: str) -> str | None:
    """`value` with its lone UTF-16 surrogates escaped, when it has any (else None).

    JSON can carry "\ud800", but it is not Unicode text: no store or log can encode it.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return None


def check_text(argument: str, value: str | None) -> None:
    """BadInput when a text argument holds a lone UTF-16 surrogate."""
    escaped = None if value is None else unencodable(value)
    if escaped is not None:
        raise BadInput(argument, escaped, "contains a lone UTF-16 surrogate, which is not text")


def check_range(argument: str, value: int, low: int, high: int | None = None) -> None:
    """BadInput unless `low <= value` (and `value <= high` when given)."""
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadInput(argument, value, f"must be {limit}")


class NotFound(RequestError):
    """A referenced thing (a biobank) does not exist."""

    code = "NOT_FOUND"

    def __init__(self, argument: str, value: str, what: str) -> None:
        super().__init__(f"{argument}: no {what} {value!r}", argument=argument, value=value)


class Unauthenticated(RequestError):
    """The request needs a signed-in caller and came without credentials."""

    code = "UNAUTHENTICATED"


class Forbidden(RequestError):
    """The caller is known but their role does not allow this."""

    code = "FORBIDDEN"
