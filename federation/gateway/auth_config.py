"""The `auth` settings section, read with marshmallow: API keys and the OIDC provider.

Errors name the setting path (`auth.api_keys[0].hash`) and the value, except a key's hash:
it is not a secret, but it is no use in a message either, so it is never echoed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError, fields, post_load, pre_load, validates_schema

from federation.disclosure.roles import Identity
from federation.gateway.errors import AuthenticationUnavailable
from federation.gateway.oidc import (
    ASYMMETRIC_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    DEFAULT_JWKS_CACHE_SECONDS,
    DEFAULT_JWKS_REFETCH_SECONDS,
    DEFAULT_JWKS_TIMEOUT_SECONDS,
    DEFAULT_LEEWAY_SECONDS,
    ClaimNames,
    OidcConfig,
    usable_keys,
)
from federation.model.config import Flag, Seconds, SectionSchema, section_errors
from federation.settings import SettingsError

HASH_SCHEME = "sha256"
KEY_ID = re.compile(r"^[0-9a-f]{8,32}$")
_MIN_SALT_BYTES = 8
_CREATE = "`biofed apikey create`"


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: its public id, salted hash and the identity it grants."""

    key_id: str
    salt: bytes
    digest: bytes = field(repr=False)
    identity: Identity


# --- the fields of a section --------------------------------------------------------------


class _Text(fields.Field):  # type: ignore[type-arg]
    """A non-empty string; `missing` says what it is for when it is empty or absent."""

    def __init__(self, missing: str, **kw: Any) -> None:
        super().__init__(required=True, error_messages={"required": missing}, **kw)
        self.missing = missing

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        text = str(value or "").strip()
        if not text:
            raise ValidationError(self.missing)
        return text


class _KeyId(fields.Field):  # type: ignore[type-arg]
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        key_id = str(value or "")
        if not KEY_ID.match(key_id):
            raise ValidationError(f"{key_id!r} is not a key id from {_CREATE}")
        return key_id


_HASH_FORMAT = f"`{HASH_SCHEME}:<salt>:<digest>` hash from {_CREATE}"
_NOT_A_HASH = f"not a {_HASH_FORMAT}"


class _KeyHash(fields.Field):  # type: ignore[type-arg]
    """`sha256:<salt hex>:<digest hex>` as (salt, digest); never echoed in a message."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kw: Any
    ) -> tuple[bytes, bytes]:
        parts = str(value or "").split(":")
        try:
            if len(parts) != 3 or parts[0] != HASH_SCHEME:
                raise ValueError
            salt, digest = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            if len(digest) != hashlib.sha256().digest_size or len(salt) < _MIN_SALT_BYTES:
                raise ValueError
        except ValueError:
            raise ValidationError(_NOT_A_HASH) from None
        return salt, digest


class _BiobankIds(fields.Field):  # type: ignore[type-arg]
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> frozenset[str]:
        if isinstance(value, str) or not isinstance(value, list):
            raise ValidationError(f"must be a list of biobank ids (got {value!r})")
        return frozenset(str(v) for v in value)


class _Audience(fields.Field):  # type: ignore[type-arg]
    missing = "missing (the `aud` tokens must carry)"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> tuple[str, ...]:
        audience = (value,) if isinstance(value, str) else tuple(value or ())
        if not audience or not all(isinstance(a, str) and a for a in audience):
            raise ValidationError(self.missing)
        return audience


class _Url(fields.Field):  # type: ignore[type-arg]
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str | None:
        if not value:
            return None
        if not str(value).startswith(("https://", "http://")):
            raise ValidationError(f"{value!r} is not an http(s) URL")
        return str(value)


class _JwkSet(fields.Field):  # type: ignore[type-arg]
    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kw: Any
    ) -> dict[str, Any] | None:
        if not value:
            return None
        if not isinstance(value, Mapping) or not isinstance(value.get("keys"), list):
            raise ValidationError("must be a JWK set, a mapping with `keys`")
        try:
            usable_keys(value, DEFAULT_ALGORITHMS)
        except AuthenticationUnavailable as err:
            raise ValidationError(str(err)) from None
        return dict(value)


class _Algorithm(fields.Field):  # type: ignore[type-arg]
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        if value not in ASYMMETRIC_ALGORITHMS:
            known = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise ValidationError(f"{value!r} is not one of {known}")
        return str(value)


class _ClaimName(fields.Field):  # type: ignore[type-arg]
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> str:
        if not str(value):
            raise ValidationError("must name a claim")
        return str(value)


# --- the schemas --------------------------------------------------------------------------


class _ApiKeySchema(SectionSchema):
    id = _KeyId(required=True, error_messages={"required": f"missing (a key id from {_CREATE})"})
    hash = _KeyHash(required=True, error_messages={"required": f"missing (a {_HASH_FORMAT})"})
    subject = _Text("missing (who holds the key)")
    operator = Flag(load_default=False)
    admin_of = _BiobankIds(allow_none=True)
    approved_for = _BiobankIds(allow_none=True)

    @post_load
    def _api_key(self, data: dict[str, Any], **kwargs: Any) -> ApiKey:
        salt, digest = data["hash"]
        identity = Identity(
            subject=data["subject"],
            authenticated=True,
            operator=data["operator"],
            admin_of=data.get("admin_of") or frozenset(),
            approved_for=data.get("approved_for") or frozenset(),
            via="api_key",
        )
        return ApiKey(data["id"], salt, digest, identity)


class _ClaimsSchema(SectionSchema):
    subject = _ClaimName()
    operator = _ClaimName()
    admin_of = _ClaimName()
    approved_for = _ClaimName()
    roles = _ClaimName(allow_none=True)
    role_prefix = _ClaimName()

    @post_load
    def _claims(self, data: dict[str, Any], **kwargs: Any) -> ClaimNames:
        return ClaimNames(**data)


class _OidcSchema(SectionSchema):
    issuer = _Text("missing (the `iss` tokens must carry)")
    audience = _Audience(required=True, error_messages={"required": _Audience.missing})
    jwks_url = _Url(allow_none=True, load_default=None)
    jwks = _JwkSet(allow_none=True, load_default=None)
    algorithms = fields.List(_Algorithm(), allow_none=True, load_default=None)
    leeway_seconds = Seconds(load_default=DEFAULT_LEEWAY_SECONDS)
    jwks_cache_seconds = Seconds(load_default=DEFAULT_JWKS_CACHE_SECONDS)
    jwks_refetch_seconds = Seconds(load_default=DEFAULT_JWKS_REFETCH_SECONDS)
    jwks_timeout_seconds = Seconds(load_default=DEFAULT_JWKS_TIMEOUT_SECONDS)
    claims = fields.Nested(_ClaimsSchema, allow_none=True, load_default=None)

    @validates_schema
    def _one_key_source(self, data: dict[str, Any], **kwargs: Any) -> None:
        if bool(data.get("jwks_url")) == bool(data.get("jwks")):
            raise ValidationError("give either jwks_url or jwks (an inline JWK set)")

    @post_load
    def _oidc(self, data: dict[str, Any], **kwargs: Any) -> OidcConfig:
        algorithms = tuple(data["algorithms"] or DEFAULT_ALGORITHMS)
        claims = data["claims"] or ClaimNames()
        return OidcConfig(**{**data, "algorithms": algorithms, "claims": claims})


class _AuthSchema(SectionSchema):
    api_keys = fields.List(
        fields.Nested(_ApiKeySchema),
        allow_none=True,
        error_messages={"invalid": "must be a list of keys"},
    )
    oidc = fields.Nested(_OidcSchema, allow_none=True)

    @pre_load
    def _no_provider(self, data: Any, **kwargs: Any) -> Any:
        # `oidc:` left empty (or `{}`) means no provider, as leaving it out does.
        if isinstance(data, Mapping) and "oidc" in data and not data["oidc"]:
            return {k: v for k, v in data.items() if k != "oidc"}
        return data


@dataclass(frozen=True)
class AuthConfig:
    """The `auth` settings section, validated."""

    api_keys: Mapping[str, ApiKey] = field(default_factory=dict)
    oidc: OidcConfig | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> AuthConfig:
        """Validate the `auth` section; errors name the setting path and never echo secrets."""
        try:
            loaded: dict[str, Any] = _AuthSchema().load(raw)
        except ValidationError as err:
            raise SettingsError("; ".join(section_errors(err.messages, "auth"))) from None
        keys: dict[str, ApiKey] = {}
        for n, key in enumerate(loaded.get("api_keys") or ()):
            if key.key_id in keys:
                raise SettingsError(f"auth.api_keys[{n}].id: {key.key_id!r} appears twice")
            keys[key.key_id] = key
        return cls(keys, loaded.get("oidc"))
