"""The shared two-biobank test network and its app (tests/gateway/conftest.py), for the
access request tests."""

from tests.gateway.conftest import app, client, runtime, synced_settings

__all__ = ["app", "client", "runtime", "synced_settings"]
