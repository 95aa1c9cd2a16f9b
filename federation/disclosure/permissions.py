"""Who may do what beyond searching: checks on an `Identity` that every service shares.

Each check raises `Unauthenticated` or `Forbidden` (federation.errors) naming what was
asked for, so any entry point turns a refusal into the same code and message.
"""

from __future__ import annotations

from federation.disclosure.roles import Identity
from federation.errors import Forbidden, Unauthenticated


def require_signed_in(identity: Identity, what: str) -> None:
    """UNAUTHENTICATED unless the caller has signed in."""
    if not identity.authenticated:
        raise Unauthenticated(f"{what}: sign in (an API key or a bearer token) to see this")


def require_operator(identity: Identity, what: str) -> None:
    """Only network operators."""
    require_signed_in(identity, what)
    if not identity.operator:
        raise Forbidden(f"{what}: only network operators may see this")


def require_admin(identity: Identity, biobank_id: str, what: str, *, operators: bool) -> None:
    """Only admins of `biobank_id` (and network operators when `operators`)."""
    require_signed_in(identity, what)
    if biobank_id in identity.admin_of or (operators and identity.operator):
        return
    who = "admins of that biobank" + (" and network operators" if operators else "")
    raise Forbidden(f"{what}: only {who} may see this", biobank=biobank_id)
