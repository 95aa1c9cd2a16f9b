"""One root for the project's own errors, each with a stable code.

Every room raises subclasses of `FederationError` so that an entry point (GraphQL, the
Beacon API, the CLI, a sync run record) can turn any expected failure into a message and
a code without knowing which room raised it. Codes are part of the public contract:
clients and admins branch on them, never on message text. Subclasses keep the builtin
base they already had (ValueError, RuntimeError, ...) where callers catch those.
"""

from __future__ import annotations


class FederationError(Exception):
    """An expected failure with a stable, machine-readable `code`."""

    code: str = "INTERNAL_SERVER_ERROR"
