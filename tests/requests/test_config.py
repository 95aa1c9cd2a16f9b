"""The `access_requests` network section and the `requests` settings: defaults, and errors
that name the setting and the value."""

from __future__ import annotations

from typing import Any

import pytest

from federation.disclosure.roles import Role
from federation.requests.config import RequestPolicy, RequestsSettings
from federation.settings import SettingsError, load_settings


def test_signed_in_researchers_may_request_by_default() -> None:
    assert RequestPolicy.parse({}).roles == {Role.REGISTERED, Role.APPROVED}
    assert RequestPolicy.parse({"roles": []}).roles == frozenset()
    defaults = RequestsSettings.parse(load_settings(environ={}).requests)
    assert (defaults.email.mode, defaults.webhooks, defaults.negotiator_url) == ("log", (), None)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"roles": ["anonymous"]}, "access_requests.roles: anonymous callers cannot request"),
        ({"roles": ["guest"]}, "access_requests.roles: 'guest' is not one of registered"),
        ({"roles": "registered"}, "access_requests.roles: 'registered' is not a list"),
        ({"application_urls": {"bb1": "ftp://x"}}, "access_requests.application_urls.bb1: 'ftp"),
        ({"role": []}, "access_requests: unknown setting 'role'"),
    ],
)
def test_a_bad_network_section_is_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        RequestPolicy.parse(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"email": {"mode": "pigeon"}}, "requests.email.mode: 'pigeon' is not one of log"),
        ({"email": {"smtp_port": "x"}}, "requests.email.smtp_port: 'x' is not a number"),
        ({"webhooks": ["https://h.example/x"]}, "requests.webhooks: webhooks are signed"),
        ({"negotiator_url": "negotiator"}, "requests.negotiator_url: 'negotiator' is not an"),
        ({"max_attempts": 0}, "requests.max_attempts: 0 must be a number of at least 1"),
        ({"smtp": {}}, "requests: unknown setting 'smtp'"),
    ],
)
def test_bad_requests_settings_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        RequestsSettings.parse(raw)


def test_the_webhook_secret_comes_only_from_the_environment(tmp_path: Any) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("webhook_secret: s3cret\n")
    with pytest.raises(SettingsError, match="BIOFED_WEBHOOK_SECRET"):
        load_settings(config, environ={})
    settings = load_settings(environ={"BIOFED_WEBHOOK_SECRET": "s3cret"})
    assert RequestsSettings.parse({"webhooks": ["https://h.example/x"]}, settings.webhook_secret)
