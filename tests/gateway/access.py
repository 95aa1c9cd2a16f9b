"""Test identities: real API keys issued the way `biofed apikey create` issues them.

The shared `app` fixture accepts these keys, so any gateway test can act as a role by
sending `headers(...)`. Keys are made once per test session and never leave it.
"""

from __future__ import annotations

from typing import Any

from federation.gateway.auth import IssuedKey, issue_api_key
from federation.settings import Settings

KEYS: dict[str, IssuedKey] = {
    "operator": issue_api_key("ops@network.example", operator=True),
    # Administers both biobanks of the test network: sees all their sync runs and quarantine.
    "admin": issue_api_key("admin@biobanks.example", admin_of=("bb1", "bb2")),
    "bb1_admin": issue_api_key("admin@bb1.example", admin_of=("bb1",)),
    "bb2_admin": issue_api_key("admin@bb2.example", admin_of=("bb2",)),
    "bb1_approved": issue_api_key("approved@university.example", approved_for=("bb1",)),
    "researcher": issue_api_key("researcher@university.example"),
}

# The shared app serves hundreds of requests from one test client address: the rate limit
# has its own tests (test_limits.py) and is off elsewhere.
NO_RATE_LIMIT: dict[str, Any] = {"rate_limit": {"enabled": False}}


def headers(name: str) -> dict[str, str]:
    """Request headers that sign in as one of `KEYS`."""
    return {"Authorization": f"Bearer {KEYS[name].key}"}


def auth_section(**extra: Any) -> dict[str, Any]:
    """An `auth` settings section accepting every test key, plus `extra` (e.g. `oidc`)."""
    return {"api_keys": [issued.entry for issued in KEYS.values()], **extra}


def with_test_access(settings: Settings, **limits: Any) -> Settings:
    """`settings` accepting the test keys, without a rate limit unless `limits` sets one."""
    return settings.with_overrides(auth=auth_section(), limits={**NO_RATE_LIMIT, **limits})
