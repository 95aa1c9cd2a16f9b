"""Authentication: API keys and OIDC bearer tokens become an `Identity`; role checks.

Credentials arrive as `Authorization: Bearer <credential>` or `X-API-Key: <key>`. An API
key is recognised by its prefix (`bfk_`); any other bearer credential must be a JWT from
the configured OpenID Connect provider. A request without credentials is anonymous; a
request with credentials that do not verify is refused (`AuthenticationFailed`, HTTP 401),
never quietly served as anonymous. See docs/access.md.

Neither a key nor a token is ever written to a log or put in an error message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from federation.disclosure.roles import ANONYMOUS, Identity
from federation.errors import FederationError
from federation.gateway.errors import ErrorCode
from federation.settings import SettingsError

log = logging.getLogger(__name__)

API_KEY_PREFIX = "bfk_"
# 32 random bytes: a key is as hard to guess as a 256-bit secret, which is why one
# round of salted SHA-256 suffices to store it (slow hashes exist for guessable passwords).
API_KEY_BYTES = 32
HASH_SCHEME = "sha256"
_KEY_ID = re.compile(r"^[0-9a-f]{8,32}$")
_KEY_ID_BYTES = 6

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


class AuthenticationFailed(FederationError):
    """Credentials were sent but do not verify; answered with 401 and `WWW-Authenticate`."""

    code = ErrorCode.UNAUTHENTICATED

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.error = error  # the RFC 6750 error code for the WWW-Authenticate header


class AuthenticationUnavailable(FederationError):
    """A token cannot be checked right now (the provider's keys cannot be fetched): 503."""

    code = ErrorCode.BACKEND_UNAVAILABLE


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: its public id, salted hash and the identity it grants."""

    key_id: str
    salt: bytes
    digest: bytes = field(repr=False)
    identity: Identity


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


@dataclass(frozen=True)
class AuthConfig:
    """The `auth` settings section, validated."""

    api_keys: Mapping[str, ApiKey] = field(default_factory=dict)
    oidc: OidcConfig | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> AuthConfig:
        """Validate the `auth` section; errors name the setting path and never echo secrets."""
        _known(raw, "auth", ("api_keys", "oidc"))
        keys: dict[str, ApiKey] = {}
        entries = raw.get("api_keys")
        entries = [] if entries is None else entries
        if not isinstance(entries, list):
            raise SettingsError("auth.api_keys: must be a list of keys")
        for n, entry in enumerate(entries):
            key = _api_key(entry, f"auth.api_keys[{n}]")
            if key.key_id in keys:
                raise SettingsError(f"auth.api_keys[{n}].id: {key.key_id!r} appears twice")
            keys[key.key_id] = key
        oidc = raw.get("oidc")
        return cls(keys, _oidc(oidc) if oidc else None)


def _known(raw: Any, where: str, names: Iterable[str]) -> None:
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise SettingsError(f"{where}: unknown setting {unknown[0]!r}")


def _ids(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str) or not isinstance(value, list):
        raise SettingsError(f"{where}: must be a list of biobank ids (got {value!r})")
    return frozenset(str(v) for v in value)


def _api_key(entry: Any, where: str) -> ApiKey:
    _known(entry, where, ("id", "hash", "subject", "operator", "admin_of", "approved_for"))
    key_id = str(entry.get("id") or "")
    if not _KEY_ID.match(key_id):
        raise SettingsError(f"{where}.id: {key_id!r} is not a key id from `biofed apikey create`")
    # The hash is not echoed: it is not a secret, but it is no use in a message either.
    parts = str(entry.get("hash") or "").split(":")
    try:
        if len(parts) != 3 or parts[0] != HASH_SCHEME:
            raise ValueError
        salt, digest = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        if len(digest) != hashlib.sha256().digest_size or len(salt) < 8:
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"{where}.hash: not a `{HASH_SCHEME}:<salt>:<digest>` hash from `biofed apikey create`"
        ) from None
    subject = str(entry.get("subject") or "").strip()
    if not subject:
        raise SettingsError(f"{where}.subject: missing (who holds the key)")
    operator = entry.get("operator", False)
    if not isinstance(operator, bool):
        raise SettingsError(f"{where}.operator: {operator!r} is not true or false")
    identity = Identity(
        subject=subject,
        authenticated=True,
        operator=operator,
        admin_of=_ids(entry.get("admin_of"), f"{where}.admin_of"),
        approved_for=_ids(entry.get("approved_for"), f"{where}.approved_for"),
        via="api_key",
    )
    return ApiKey(key_id, salt, digest, identity)


def _seconds(raw: Mapping[str, Any], name: str, default: float, where: str) -> float:
    value = raw.get(name, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{where}.{name}: {value!r} is not a number of seconds") from None
    if seconds < 0:
        raise SettingsError(f"{where}.{name}: {value!r} must not be negative")
    return seconds


def _oidc(raw: Any) -> OidcConfig:
    where = "auth.oidc"
    _known(
        raw,
        where,
        (
            "issuer",
            "audience",
            "jwks_url",
            "jwks",
            "algorithms",
            "leeway_seconds",
            "jwks_cache_seconds",
            "jwks_refetch_seconds",
            "jwks_timeout_seconds",
            "claims",
        ),
    )
    issuer = str(raw.get("issuer") or "")
    if not issuer:
        raise SettingsError(f"{where}.issuer: missing (the `iss` tokens must carry)")
    audience_raw = raw.get("audience")
    audience = (audience_raw,) if isinstance(audience_raw, str) else tuple(audience_raw or ())
    if not audience or not all(isinstance(a, str) and a for a in audience):
        raise SettingsError(f"{where}.audience: missing (the `aud` tokens must carry)")
    jwks_url, jwks = raw.get("jwks_url"), raw.get("jwks")
    if bool(jwks_url) == bool(jwks):
        raise SettingsError(f"{where}: give either jwks_url or jwks (an inline JWK set)")
    if jwks_url and not str(jwks_url).startswith(("https://", "http://")):
        raise SettingsError(f"{where}.jwks_url: {jwks_url!r} is not an http(s) URL")
    if jwks:
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise SettingsError(f"{where}.jwks: must be a JWK set, a mapping with `keys`")
        try:
            _usable_keys(jwks, DEFAULT_ALGORITHMS)
        except AuthenticationUnavailable as err:
            raise SettingsError(f"{where}.jwks: {err}") from None
    algorithms = tuple(raw.get("algorithms") or DEFAULT_ALGORITHMS)
    for algorithm in algorithms:
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            known = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise SettingsError(f"{where}.algorithms: {algorithm!r} is not one of {known}")
    claims_raw = raw.get("claims") or {}
    _known(claims_raw, f"{where}.claims", [f.name for f in dataclasses.fields(ClaimNames)])
    names: dict[str, Any] = {k: (None if v is None else str(v)) for k, v in claims_raw.items()}
    claims = ClaimNames(**names)
    if not claims.subject:
        raise SettingsError(f"{where}.claims.subject: must name a claim")
    return OidcConfig(
        issuer=issuer,
        audience=audience,
        jwks_url=str(jwks_url) if jwks_url else None,
        jwks=dict(jwks) if jwks else None,
        algorithms=algorithms,
        leeway_seconds=_seconds(raw, "leeway_seconds", DEFAULT_LEEWAY_SECONDS, where),
        jwks_cache_seconds=_seconds(raw, "jwks_cache_seconds", DEFAULT_JWKS_CACHE_SECONDS, where),
        jwks_refetch_seconds=_seconds(
            raw, "jwks_refetch_seconds", DEFAULT_JWKS_REFETCH_SECONDS, where
        ),
        jwks_timeout_seconds=_seconds(
            raw, "jwks_timeout_seconds", DEFAULT_JWKS_TIMEOUT_SECONDS, where
        ),
        claims=claims,
    )


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
    return key_id if rest and _KEY_ID.match(key_id) else None


# --- OIDC ---------------------------------------------------------------------------------


class JwksCache:
    """The provider's signing keys, fetched with `requests`, kept for a TTL, thread-safe.

    A token naming a key id we do not hold triggers one refetch (providers rotate keys),
    at most once per `refetch_seconds`. When the provider cannot be reached, keys fetched
    earlier keep being used: an outage of the provider should not sign everyone out.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float,
        refetch_seconds: float,
        timeout: float,
        algorithms: Sequence[str],
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.refetch_seconds = refetch_seconds
        self.timeout = timeout
        self.algorithms = tuple(algorithms)
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
            self._keys = _usable_keys(response.json(), self.algorithms)
            self._fetched_at = now
        except (requests.RequestException, ValueError, AuthenticationUnavailable) as err:
            # Keep serving the keys we have; the next attempt waits `refetch_seconds`.
            log.warning("fetching the JWKS from %s failed: %s", self.url, err)


def _usable_keys(jwks: Any, algorithms: Sequence[str]) -> dict[str, dict[str, Any]]:
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
            self._static = _usable_keys(config.jwks, config.algorithms)
        else:
            assert config.jwks_url is not None
            self.cache = JwksCache(
                config.jwks_url,
                ttl=config.jwks_cache_seconds,
                refetch_seconds=config.jwks_refetch_seconds,
                timeout=config.jwks_timeout_seconds,
                algorithms=config.algorithms,
                session=session,
            )

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
