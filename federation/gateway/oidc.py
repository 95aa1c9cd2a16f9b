"""OpenID Connect: a bearer JWT from the configured provider becomes an `Identity`.

The provider's signing keys come from its JWKS URL (cached, refetched when a token names
a key we do not hold) or inline from the settings. Only asymmetric algorithms are
accepted. Neither a token nor a key is ever written to a log or put in an error message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from federation.disclosure.roles import Identity
from federation.gateway.errors import AuthenticationFailed, AuthenticationUnavailable

log = logging.getLogger(__name__)

# Only asymmetric algorithms: the gateway holds public keys, so an HMAC algorithm would
# let anyone holding the "public" key forge tokens.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
DEFAULT_ALGORITHMS = ("RS256", "ES256")
DEFAULT_LEEWAY_SECONDS = 30.0
DEFAULT_JWKS_CACHE_SECONDS = 600.0
# A token naming an unknown key makes us refetch the JWKS (the provider rotated keys),
# but not more often than this, so a stream of made-up `kid`s cannot hammer the provider.
DEFAULT_JWKS_REFETCH_SECONDS = 30.0
DEFAULT_JWKS_TIMEOUT_SECONDS = 5.0
DEFAULT_ROLE_PREFIX = "biofed:"
_PARSED_KEYS = 64


@dataclass(frozen=True)
class ClaimNames:
    """Which token claims carry the subject, roles and biobank memberships."""

    subject: str = "sub"
    operator: str = "biofed_operator"
    admin_of: str = "biofed_admin_of"
    approved_for: str = "biofed_approved_for"
    # A list of role strings such as `biofed:operator`, `biofed:admin:bb1`,
    # `biofed:approved:bb2` (dotted paths reach nested claims, e.g. `realm_access.roles`).
    roles: str | None = None
    role_prefix: str = DEFAULT_ROLE_PREFIX


@dataclass(frozen=True)
class OidcConfig:
    """The OpenID Connect provider whose tokens are accepted."""

    issuer: str
    audience: tuple[str, ...]
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_seconds: float = DEFAULT_LEEWAY_SECONDS
    jwks_cache_seconds: float = DEFAULT_JWKS_CACHE_SECONDS
    jwks_refetch_seconds: float = DEFAULT_JWKS_REFETCH_SECONDS
    jwks_timeout_seconds: float = DEFAULT_JWKS_TIMEOUT_SECONDS
    claims: ClaimNames = ClaimNames()


class JwksCache:
    """The provider's signing keys, fetched with `requests`, kept for a TTL, thread-safe.

    A token naming a key id we do not hold triggers one refetch (providers rotate keys),
    at most once per `refetch_seconds`. When the provider cannot be reached, keys fetched
    earlier keep being used: an outage of the provider should not sign everyone out.
    """

    def __init__(
        self,
        config: OidcConfig,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert config.jwks_url is not None
        self.url = config.jwks_url
        self.ttl = config.jwks_cache_seconds
        self.refetch_seconds = config.jwks_refetch_seconds
        self.timeout = config.jwks_timeout_seconds
        self.algorithms = tuple(config.algorithms)
        self._session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self.fetches = 0  # how many times the URL was fetched; for metrics and tests

    def keys(self, kid: str | None) -> dict[str, dict[str, Any]]:
        """The key set, refreshed when stale or when it does not hold `kid`."""
        now = self._clock()
        with self._lock:
            stale = now - self._fetched_at >= self.ttl
            missing = kid is not None and self._keys is not None and kid not in self._keys
            may_retry = now - self._attempted_at >= self.refetch_seconds
            if self._keys is None or (stale and may_retry) or (missing and may_retry):
                self._fetch(now)
            if self._keys is None:
                raise AuthenticationUnavailable(
                    "the identity provider's signing keys cannot be fetched"
                )
            return self._keys

    def _fetch(self, now: float) -> None:
        self._attempted_at = now
        self.fetches += 1
        try:
            response = self._session.get(
                self.url, timeout=self.timeout, headers={"Accept": "application/json"}
            )
            response.raise_for_status()
            self._keys = usable_keys(response.json(), self.algorithms)
            self._fetched_at = now
        except (requests.RequestException, ValueError, AuthenticationUnavailable) as err:
            # Keep serving the keys we have; the next attempt waits `refetch_seconds`.
            log.warning("fetching the JWKS from %s failed: %s", self.url, err)


def usable_keys(jwks: Any, algorithms: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Signing keys of a JWK set by `kid` (the empty string for a key without one)."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise AuthenticationUnavailable("the JWKS is not a JWK set (no `keys` list)")
    keys: dict[str, dict[str, Any]] = {}
    allowed_types = {_KEY_TYPES[a[:2]] for a in algorithms}
    for jwk in jwks["keys"]:
        if not isinstance(jwk, Mapping) or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("kty") not in allowed_types:
            continue  # symmetric ("oct") keys never verify tokens here
        keys[str(jwk.get("kid") or "")] = dict(jwk)
    if not keys:
        raise AuthenticationUnavailable("the JWKS holds no signing key for the allowed algorithms")
    return keys


class OidcVerifier:
    """Checks a bearer JWT's signature, issuer, audience, expiry and not-before."""

    def __init__(self, config: OidcConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self._static: dict[str, dict[str, Any]] | None = None
        self.cache: JwksCache | None = None
        # Parsed keys by (JWK, algorithm): building an RSA key on every request is waste.
        self._parsed: dict[tuple[str, str], jwt.PyJWK] = {}
        self._parsed_lock = threading.Lock()
        if config.jwks is not None:
            self._static = usable_keys(config.jwks, config.algorithms)
        else:
            self.cache = JwksCache(config, session)

    def identity(self, token: str) -> Identity:
        """The identity a valid token asserts; `AuthenticationFailed` for any other token."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.config.algorithms:
            raise AuthenticationFailed(
                f"the token's algorithm {algorithm!r} is not accepted "
                f"(accepted: {', '.join(self.config.algorithms)})"
            )
        kid = header.get("kid")
        kid = str(kid) if kid is not None else None
        key = self._key(kid, str(algorithm))
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[str(algorithm)],
                audience=list(self.config.audience),
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed("the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("the token is not meant for this service (aud)") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed("the token comes from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as err:
            raise AuthenticationFailed(f"the token has no `{err.claim}` claim") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("the token is not valid") from None
        return claims_identity(claims, self.config.claims)

    def _key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        keys = self._static if self._static is not None else self._cached(kid)
        if kid is not None:
            jwk = keys.get(kid)
        else:
            # A token without `kid` is only unambiguous when the set holds one key.
            jwk = next(iter(keys.values())) if len(keys) == 1 else None
        if jwk is None:
            raise AuthenticationFailed("the token is signed with a key the provider does not list")
        if jwk.get("alg") not in (None, algorithm) or jwk.get("kty") != _KEY_TYPES[algorithm[:2]]:
            raise AuthenticationFailed("the token's algorithm does not match its signing key")
        cache_key = (json.dumps(jwk, sort_keys=True), algorithm)
        with self._parsed_lock:
            parsed = self._parsed.get(cache_key)
        if parsed is None:
            try:
                parsed = jwt.PyJWK(jwk, algorithm)
            except jwt.PyJWTError:
                raise AuthenticationFailed("the token's signing key is unusable") from None
            with self._parsed_lock:
                if len(self._parsed) >= _PARSED_KEYS:
                    self._parsed.clear()  # rotated-out keys; the live ones come back at once
                self._parsed[cache_key] = parsed
        return parsed

    def _cached(self, kid: str | None) -> dict[str, dict[str, Any]]:
        assert self.cache is not None
        return self.cache.keys(kid)


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _claim_ids(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    value = _claim(claims, name)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())  # a space-separated list, as OAuth writes `scope`
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise AuthenticationFailed(f"the token's `{name}` claim is not a list of biobank ids")


def claims_identity(claims: Mapping[str, Any], names: ClaimNames) -> Identity:
    """Map verified claims to an identity: subject, operator flag, memberships."""
    subject = _claim(claims, names.subject)
    if not isinstance(subject, str) or not subject:
        raise AuthenticationFailed(f"the token's `{names.subject}` claim is empty")
    operator = _claim(claims, names.operator) is True
    admin_of = set(_claim_ids(claims, names.admin_of))
    approved_for = set(_claim_ids(claims, names.approved_for))
    if names.roles:
        for role in _claim_ids(claims, names.roles):
            if not role.startswith(names.role_prefix):
                continue  # roles of other applications share the claim
            kind, _, biobank = role[len(names.role_prefix) :].partition(":")
            if kind == "operator" and not biobank:
                operator = True
            elif kind == "admin" and biobank:
                admin_of.add(biobank)
            elif kind == "approved" and biobank:
                approved_for.add(biobank)
    return Identity(
        subject=subject,
        authenticated=True,
        operator=operator,
        admin_of=frozenset(admin_of),
        approved_for=frozenset(approved_for),
        via="oidc",
    )
