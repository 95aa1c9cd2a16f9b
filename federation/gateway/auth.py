"""Authentication: API keys and OIDC bearer tokens become an `Identity`.

Credentials arrive as `Authorization: Bearer <credential>` or `X-API-Key: <key>`. An API
key is recognised by its prefix (`bfk_`); any other bearer credential must be a JWT from
the configured OpenID Connect provider. A request without credentials is anonymous; a
request with credentials that do not verify is refused (`AuthenticationFailed`, HTTP 401),
never quietly served as anonymous. Tokens are checked in federation/gateway/oidc.py, the
`auth` settings section is read in auth_config.py, and who may see what is decided by the
services (federation/disclosure/permissions.py). See docs/access.md.

Neither a key nor a token is ever written to a log or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from federation.disclosure.roles import ANONYMOUS, Identity
from federation.gateway.auth_config import HASH_SCHEME, KEY_ID, AuthConfig
from federation.gateway.errors import AuthenticationFailed
from federation.gateway.oidc import OidcVerifier

API_KEY_PREFIX = "bfk_"
# 32 random bytes: a key is as hard to guess as a 256-bit secret, which is why one
# round of salted SHA-256 suffices to store it (slow hashes exist for guessable passwords).
API_KEY_BYTES = 32
_KEY_ID_BYTES = 6


# --- API keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    """A new API key: the key itself (shown once) and the config entry that stores its hash."""

    key: str = field(repr=False)
    entry: dict[str, Any]


def hash_api_key(key: str, salt: bytes) -> bytes:
    """The stored digest of a key: SHA-256 over the salt and the whole key."""
    return hashlib.sha256(salt + key.encode("utf-8")).digest()


def issue_api_key(
    subject: str,
    *,
    operator: bool = False,
    admin_of: Sequence[str] = (),
    approved_for: Sequence[str] = (),
) -> IssuedKey:
    """Make a random API key and the `auth.api_keys` entry (with its salted hash) for it."""
    if not subject.strip():
        raise ValueError("an API key needs a subject: who holds it")
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    key = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(API_KEY_BYTES)}"
    salt = secrets.token_bytes(16)
    entry: dict[str, Any] = {
        "id": key_id,
        "hash": f"{HASH_SCHEME}:{salt.hex()}:{hash_api_key(key, salt).hex()}",
        "subject": subject.strip(),
        "operator": operator,
        "admin_of": sorted(set(admin_of)),
        "approved_for": sorted(set(approved_for)),
    }
    return IssuedKey(key, entry)


def _key_id(key: str) -> str | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    key_id, _, rest = key[len(API_KEY_PREFIX) :].partition("_")
    return key_id if rest and KEY_ID.match(key_id) else None


# --- the authenticator --------------------------------------------------------------------


class Authenticator:
    """Turns a request's headers into an `Identity`."""

    def __init__(self, config: AuthConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self.oidc = OidcVerifier(config.oidc, session) if config.oidc else None

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> Identity:
        """The identity the credential headers prove: anonymous without any, raises on bad ones."""
        authorization = (authorization or "").strip()
        api_key = (api_key or "").strip()
        if authorization and api_key:
            raise AuthenticationFailed(
                "send one credential: Authorization or X-API-Key, not both", "invalid_request"
            )
        if api_key:
            return self._api_key(api_key)
        if not authorization:
            return ANONYMOUS
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationFailed(
                "use `Authorization: Bearer <API key or token>`", "invalid_request"
            )
        if credential.startswith(API_KEY_PREFIX):
            return self._api_key(credential)
        if self.oidc is None:
            raise AuthenticationFailed("this service accepts API keys only, not bearer tokens")
        return self.oidc.identity(credential)

    def _api_key(self, key: str) -> Identity:
        key_id = _key_id(key)
        entry = self.config.api_keys.get(key_id) if key_id else None
        # The id is public (it is in the config and may be logged); only the comparison of
        # the secret part must not leak timing, hence compare_digest.
        if entry is None or not hmac.compare_digest(hash_api_key(key, entry.salt), entry.digest):
            raise AuthenticationFailed("the API key is not valid")
        return entry.identity
