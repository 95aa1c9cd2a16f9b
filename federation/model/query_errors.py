"""The error every room raises for a query argument it cannot use.

It lives in the model, below consent and search, because both parse parts of one
question (a purpose, a filter, a cursor) and an entry point reports them the same way.
"""

from __future__ import annotations

from typing import Any

from federation.errors import FederationError


class BadQuery(FederationError, ValueError):
    """A query argument that cannot be used; names the argument and the value."""

    code = "BAD_USER_INPUT"

    def __init__(self, argument: str, value: Any, reason: str) -> None:
        self.argument = argument
        self.value = value
        self.reason = reason
        super().__init__(f"{argument}: {reason} (got {value!r})")
