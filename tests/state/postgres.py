"""A real PostgreSQL for the state-store tests: the session's cluster and a database per test.

The cluster is the one in BIOFED_TEST_STATE_URL when set (`.ci/run` starts one with
scripts/state-db and exports its URL and BIOFED_STATE_PASSWORD), else one this session
starts with scripts/state-db on a free port and stops at the end. With CI=true a cluster
that cannot start fails the tests; elsewhere a machine without PostgreSQL skips them with
the reason.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from federation import PROJECT_ROOT
from tests.support.server import free_port

SCRIPT = PROJECT_ROOT / "scripts" / "state-db"
URL_VARIABLE = "BIOFED_TEST_STATE_URL"
PASSWORD_VARIABLE = "BIOFED_STATE_PASSWORD"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


class Cluster:
    """A PostgreSQL cluster: its URL (no password) and the password of its role."""

    def __init__(self, url: str, password: str) -> None:
        self.url = url
        self.password = password

    def env(self) -> dict[str, str]:
        """The environment a process needs to reach the cluster (the password)."""
        return {**os.environ, PASSWORD_VARIABLE: self.password}

    def _admin(self):  # type: ignore[no-untyped-def]
        url = make_url(self.url).set(drivername="postgresql+psycopg", password=self.password)
        return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=None)

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh empty database for one test, dropped afterwards; yields its URL."""
        name = f"biofed_test_{uuid.uuid4().hex[:12]}"
        admin = self._admin()
        try:
            with admin.connect() as db:
                db.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                yield make_url(self.url).set(database=name).render_as_string(False)
            finally:
                with admin.connect() as db:
                    db.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def _script(port: int, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BIOFED_PG_PORT": str(port), "BIOFED_PG_DIR": str(state_dir)}
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's PostgreSQL cluster (see the module docstring)."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield Cluster(url, os.environ.get(PASSWORD_VARIABLE, ""))
        return
    port, state_dir = free_port(), tmp_path_factory.mktemp("state-db")
    started = _script(port, state_dir, "start")
    if started.returncode != 0:
        reason = f"no PostgreSQL for the state store tests: {started.stderr.strip()}"
        if in_ci():
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    try:
        password = _script(port, state_dir, "password").stdout.strip()
        yield Cluster(started.stdout.strip(), password)
    finally:
        _script(port, state_dir, "stop")
