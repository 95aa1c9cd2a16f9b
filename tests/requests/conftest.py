"""The shared two-biobank test network (tests/gateway/conftest.py) and the gateway app over
it, for the access request tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from federation.gateway import create_app
from federation.runtime import Runtime
from federation.settings import Settings
from tests.gateway.access import with_test_access
from tests.gateway.conftest import client, runtime, synced_settings
from tests.requests.api import SLOW_MACHINE

__all__ = ["app", "client", "runtime", "synced_settings"]


@pytest.fixture
def app(synced_settings: Settings) -> Iterator[Flask]:
    """The gateway app accepting the test keys, with its state store open (a worker opens
    it at start; opening and migrating it inside a request's deadline can time out on a
    loaded machine); its deliverer is stopped afterwards."""
    app = create_app(
        {"settings": with_test_access(synced_settings, **SLOW_MACHINE), "TESTING": True}
    )
    runtime = app.extensions["biofed"]
    assert isinstance(runtime, Runtime)
    runtime.state_store  # noqa: B018 -- opened for its side effect
    yield app
    runtime.deliverer.stop()
    if "backend" in vars(runtime):
        runtime.backend.close()
