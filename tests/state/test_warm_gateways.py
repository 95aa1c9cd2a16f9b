"""A publish is seen at once by every gateway process on one PostgreSQL state store: two
gateways under gunicorn (two workers each) on the same search data, `biofed sync` in a
process of its own (which warms the landing answer after it publishes), and a publish that
changes the counts shown by every landing search on both right after (issue 18,
search/warm.py). Once on the embedded backend (one index folder), once on the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from federation import PROJECT_ROOT
from federation.state import open_state_store
from tests.engine.node import RunningNode, drop_prefix, unique_prefix
from tests.state.postgres import PASSWORD_VARIABLE, Cluster
from tests.support.network import TabularBiobank, write_network
from tests.support.server import graphql, gunicorn

pytest_plugins = ["tests.engine.fixtures"]
pytestmark = pytest.mark.slow

LANDING = "{ search(query: {}) { donors { value precision } samples { value } } }"
# Enough requests that both workers of each gateway answer some (gunicorn hands each
# connection to whichever worker accepts it first).
ASKED_PER_GATEWAY = 8


def sync_all(data_dir: Path, network: Path) -> None:
    """`biofed sync --all` in its own process, as a sync host runs it."""
    args = ["--data-dir", str(data_dir), "--network", str(network), "sync", "--all"]
    done = subprocess.run(
        [sys.executable, "-m", "federation.cli", *args, "--no-progress"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def landing_donors(urls: list[str]) -> set[int]:
    """The donors every landing search on every gateway shows."""
    shown = set()
    for url in urls:
        for _ in range(ASKED_PER_GATEWAY):
            answer = graphql(url, LANDING)
            assert "errors" not in answer, answer
            assert answer["data"]["search"]["donors"]["precision"] == "EXACT"
            shown.add(int(answer["data"]["search"]["donors"]["value"]))
    return shown


@contextmanager
def served(
    tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> Iterator[None]:
    with cluster.database() as url:
        for name, value in {
            "BIOFED_STATE_URL": url,
            PASSWORD_VARIABLE: cluster.password,
            "BIOFED_SECRET_KEY": "warm-gateways-secret",
            "BIOFED_LIMITS": json.dumps({"rate_limit": {"enabled": False}}),
            **env,
        }.items():
            monkeypatch.setenv(name, value)
        open_state_store(url, tmp_path, migrate=True).close()
        yield


def publish_is_seen_at_once(tmp_path: Path) -> None:
    alpha = TabularBiobank(tmp_path, "alpha")
    for n in range(5):
        alpha.donor(f"D{n}", birth_year=1950 + n)
        alpha.sample(f"S{n}", f"D{n}")
    network = write_network(tmp_path, [alpha])
    data = tmp_path / "data"
    sync_all(data, network)
    with ExitStack() as stack:
        urls = [
            stack.enter_context(gunicorn(data, network, tmp_path / f"gateway{n}.log", workers=2))
            for n in (1, 2)
        ]
        assert landing_donors(urls) == {5}
        alpha.donor("D5", birth_year=1990)
        alpha.sample("S5", "D5")
        write_network(tmp_path, [alpha])
        sync_all(data, network)
        assert landing_donors(urls) == {6}


def test_embedded_publish_is_seen_at_once_by_every_gateway_process(
    tmp_path: Path, postgres_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(tmp_path, postgres_cluster, monkeypatch, {}):
        publish_is_seen_at_once(tmp_path)


@pytest.mark.engine
def test_engine_publish_is_seen_at_once_by_every_gateway_process(
    tmp_path: Path,
    postgres_cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    engine_node: RunningNode,
) -> None:
    prefix = unique_prefix()
    env = {
        "BIOFED_BACKEND": engine_node.backend,
        "BIOFED_ENGINE_URLS": engine_node.url,
        "BIOFED_ENGINE_INDEX_PREFIX": prefix,
    }
    try:
        with served(tmp_path, postgres_cluster, monkeypatch, env):
            publish_is_seen_at_once(tmp_path)
    finally:
        drop_prefix(engine_node.url, prefix)
