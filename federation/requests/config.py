"""What access requests are configured with: who may request and where biobanks take
applications (the network file's `access_requests`), and how notifications and the
Negotiator hand-off go out (the settings' `requests` section).

Errors name the setting and the value (`requests.email.smtp_port: 'x' is not ...`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from federation.disclosure.roles import Role
from federation.settings import SettingsError

# Signed-in researchers may request unless the network file says otherwise.
DEFAULT_REQUESTING_ROLES = (Role.REGISTERED, Role.APPROVED)
EMAIL_MODES = ("log", "smtp", "off")
DEFAULT_SMTP_PORT = 25
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BACKOFF_SECONDS = 2.0
DEFAULT_POLL_SECONDS = 1.0
DEFAULT_HTTP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class RequestPolicy:
    """The network file's `access_requests`: roles that may request; application URLs."""

    roles: frozenset[Role] = frozenset(DEFAULT_REQUESTING_ROLES)
    # Per biobank, a URL template: `{query}` (the question as JSON), `{request}`, `{title}`.
    application_urls: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str = "access_requests") -> RequestPolicy:
        """Validate the section; errors name `access_requests.<field>` and the value."""
        unknown = sorted(set(raw) - {"roles", "application_urls"})
        if unknown:
            raise SettingsError(f"{where}: unknown setting {unknown[0]!r}")
        roles_raw = raw.get("roles", [r.value for r in DEFAULT_REQUESTING_ROLES])
        if not isinstance(roles_raw, list):
            raise SettingsError(f"{where}.roles: {roles_raw!r} is not a list of roles")
        roles = set()
        for value in roles_raw:
            try:
                role = Role(str(value))
            except ValueError:
                known = ", ".join(r.value for r in Role if r is not Role.ANONYMOUS)
                raise SettingsError(f"{where}.roles: {value!r} is not one of {known}") from None
            if role is Role.ANONYMOUS:
                raise SettingsError(f"{where}.roles: anonymous callers cannot request samples")
            roles.add(role)
        urls = raw.get("application_urls") or {}
        if not isinstance(urls, Mapping):
            raise SettingsError(f"{where}.application_urls: must map biobank ids to URLs")
        for biobank_id, url in urls.items():
            _http_url(f"{where}.application_urls.{biobank_id}", url)
        return cls(frozenset(roles), {str(k): str(v) for k, v in urls.items()})


@dataclass(frozen=True)
class EmailSettings:
    """How e-mail goes out: printed to the log (the demo), through SMTP, or not at all."""

    mode: str = "log"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = DEFAULT_SMTP_PORT
    sender: str = "biofed@localhost"
    starttls: bool = False


@dataclass(frozen=True)
class RequestsSettings:
    """The settings' `requests` section."""

    # Where the network's web UI is, for links in messages and the Negotiator's `url`.
    public_url: str = "http://127.0.0.1:8000"
    email: EmailSettings = field(default_factory=EmailSettings)
    webhooks: tuple[str, ...] = ()
    webhook_secret: str = field(default="", repr=False)
    # The Negotiator's request endpoint (e.g. https://negotiator.example/api/v3/requests).
    negotiator_url: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    poll_seconds: float = DEFAULT_POLL_SECONDS
    http_timeout: float = DEFAULT_HTTP_TIMEOUT_SECONDS

    @classmethod
    def parse(cls, raw: Mapping[str, Any], webhook_secret: str = "") -> RequestsSettings:
        """Validate the section; errors name `requests.<field>` and the value."""
        where = "requests"
        known = {
            "public_url",
            "email",
            "webhooks",
            "negotiator_url",
            "max_attempts",
            "backoff_seconds",
            "poll_seconds",
            "http_timeout",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(f"{where}: unknown setting {unknown[0]!r}")
        webhooks = tuple(
            _http_url(f"{where}.webhooks[{n}]", url)
            for n, url in enumerate(raw.get("webhooks") or ())
        )
        if webhooks and not webhook_secret:
            raise SettingsError(
                f"{where}.webhooks: webhooks are signed; set BIOFED_WEBHOOK_SECRET in the "
                "environment"
            )
        negotiator = raw.get("negotiator_url")
        return cls(
            public_url=_http_url(f"{where}.public_url", raw.get("public_url", cls.public_url)),
            email=_email(raw.get("email") or {}, f"{where}.email"),
            webhooks=webhooks,
            webhook_secret=webhook_secret,
            negotiator_url=None
            if not negotiator
            else _http_url(f"{where}.negotiator_url", negotiator),
            max_attempts=int(
                _number(f"{where}.max_attempts", raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS), 1)
            ),
            backoff_seconds=_number(
                f"{where}.backoff_seconds", raw.get("backoff_seconds", DEFAULT_BACKOFF_SECONDS), 0
            ),
            poll_seconds=_number(
                f"{where}.poll_seconds", raw.get("poll_seconds", DEFAULT_POLL_SECONDS), 0.01
            ),
            http_timeout=_number(
                f"{where}.http_timeout", raw.get("http_timeout", DEFAULT_HTTP_TIMEOUT_SECONDS), 0.01
            ),
        )


def _email(raw: Any, where: str) -> EmailSettings:
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - {"mode", "smtp_host", "smtp_port", "sender", "starttls"})
    if unknown:
        raise SettingsError(f"{where}: unknown setting {unknown[0]!r}")
    mode = raw.get("mode", "log")
    if mode not in EMAIL_MODES:
        raise SettingsError(f"{where}.mode: {mode!r} is not one of {', '.join(EMAIL_MODES)}")
    starttls = raw.get("starttls", False)
    if not isinstance(starttls, bool):
        raise SettingsError(f"{where}.starttls: {starttls!r} is not true or false")
    port = _number(f"{where}.smtp_port", raw.get("smtp_port", DEFAULT_SMTP_PORT), 1)
    if port != int(port) or port > 65535:
        raise SettingsError(f"{where}.smtp_port: {raw.get('smtp_port')!r} is not a port")
    return EmailSettings(
        mode=mode,
        smtp_host=str(raw.get("smtp_host", "127.0.0.1")),
        smtp_port=int(port),
        sender=str(raw.get("sender", "biofed@localhost")),
        starttls=starttls,
    )


def _number(where: str, value: Any, low: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or number < low:
        raise SettingsError(f"{where}: {value!r} must be a number of at least {low:g}")
    return number


def _http_url(where: str, value: Any) -> str:
    text = str(value or "")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{where}: {value!r} is not an http(s) URL")
    return text.rstrip("/") if where.endswith("public_url") else text
