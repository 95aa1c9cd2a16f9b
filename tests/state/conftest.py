"""The state store on each engine: `store_url` and `store` run every test on SQLite and on
PostgreSQL (a fresh database per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.state import StateStore, open_state_store
from tests.state.postgres import Cluster, postgres_cluster

__all__ = ["postgres_cluster"]  # the session's cluster, a fixture for the tests here

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store's URL on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'state.db'}"
        return
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("BIOFED_STATE_PASSWORD", cluster.password)
    with cluster.database() as url:
        yield url


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[StateStore]:
    """A migrated, empty store on each engine."""
    opened = open_state_store(store_url, tmp_path, migrate=True)
    yield opened
    opened.close()
