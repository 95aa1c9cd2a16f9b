"""Real search engine nodes for tests: OpenSearch and Elasticsearch, shared or private.

Two engines, each with its own script and variables (`Engine`): OpenSearch from
`scripts/search-node` (port `BIOFED_NODE_PORT`, URL of a running node in
`BIOFED_TEST_ENGINE_URL`) and Elasticsearch 8 from `scripts/es-node` (`BIOFED_ES_NODE_PORT`,
`BIOFED_TEST_ELASTICSEARCH_URL`). The session's shared node of an engine is the URL in its
variable when set (`.ci/run` starts both), else one this session starts and stops at the end
(only if it started it). Tests that stop or kill a node use `PrivateNode` on a port of their
own, so they never take down the node other tests (or other developers' sessions) are using.

With CI=true a node that cannot start fails the tests; elsewhere a machine without a JDK,
Maven or curl skips them with the reason printed.

The fixtures live in `tests/engine/fixtures.py`, loaded as a plugin by the engine test
modules (`pytest_plugins`), so they are defined once for the whole session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from federation import PROJECT_ROOT
from federation.settings import Settings, load_settings
from tests.support.server import free_port

# Messages of the node scripts that mean "this machine cannot run a node at all".
MISSING_TOOLS = ("no JDK", "mvn (Maven) is needed", "curl is needed", "useradd is missing")


@dataclasses.dataclass(frozen=True)
class Engine:
    """One search engine the backend supports, and how tests get a node of it."""

    backend: str  # the `backend` setting that talks to it
    script: Path
    port_variable: str
    state_variable: str
    url_variable: str  # the URL of an already running node, if any
    default_port: int

    def __str__(self) -> str:
        return self.backend


OPENSEARCH = Engine(
    "opensearch",
    PROJECT_ROOT / "scripts" / "search-node",
    "BIOFED_NODE_PORT",
    "BIOFED_NODE_STATE",
    "BIOFED_TEST_ENGINE_URL",
    9250,
)
ELASTICSEARCH = Engine(
    "elasticsearch",
    PROJECT_ROOT / "scripts" / "es-node",
    "BIOFED_ES_NODE_PORT",
    "BIOFED_ES_NODE_STATE",
    "BIOFED_TEST_ELASTICSEARCH_URL",
    9260,
)
ENGINES = (OPENSEARCH, ELASTICSEARCH)


@dataclasses.dataclass(frozen=True)
class RunningNode:
    """A node tests may use: its engine and URL."""

    engine: Engine
    url: str

    @property
    def backend(self) -> str:
        return self.engine.backend


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


class NodeUnavailable(RuntimeError):
    """The node could not be started; `missing_tools` when the machine lacks Java/Maven."""

    def __init__(self, message: str, missing_tools: bool) -> None:
        super().__init__(message)
        self.missing_tools = missing_tools


class PrivateNode:
    """A node on its own port and state folder, driven through its engine's script."""

    def __init__(
        self, engine: Engine, port: int | None = None, state_dir: Path | None = None
    ) -> None:
        self.engine = engine
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The script's pid file and log; a test's own folder keeps /tmp tidy.
        self.state_dir = state_dir

    def _run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, self.engine.port_variable: str(self.port)}
        if self.state_dir is not None:
            env[self.engine.state_variable] = str(self.state_dir)
        return subprocess.run(
            [str(self.engine.script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *, keep_data: bool = False) -> str:
        done = self._run("start", *(["--keep-data"] if keep_data else []))
        if done.returncode != 0:
            script = self.engine.script.name
            message = done.stderr.strip() or f"scripts/{script} exited {done.returncode}"
            raise NodeUnavailable(message, any(m in message for m in MISSING_TOOLS))
        return done.stdout.strip()

    def running(self) -> bool:
        return self._run("status").returncode == 0

    def stop(self) -> None:
        self._run("stop")

    def kill(self) -> None:
        self._run("kill")


def unavailable(request: pytest.FixtureRequest, err: NodeUnavailable) -> None:
    """Fail in CI or when the node is broken; skip (saying why) when tools are missing."""
    if in_ci() or not err.missing_tools:
        pytest.fail(f"a search engine node could not start: {err}", pytrace=False)
    reason = f"engine tests skipped: {err}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(reason, yellow=True)
    pytest.skip(reason)


class SessionNodes:
    """Each engine's shared node, started on first use and stopped at the end if we started it."""

    def __init__(self) -> None:
        self._running: dict[Engine, RunningNode] = {}
        self._started: list[PrivateNode] = []

    def get(self, request: pytest.FixtureRequest, engine: Engine) -> RunningNode:
        """The engine's shared node; fails (CI) or skips (no tools) when it cannot start."""
        if engine in self._running:
            return self._running[engine]
        given = os.environ.get(engine.url_variable)
        if given:
            node = RunningNode(engine, given.rstrip("/"))
        else:
            # A node of this session's own, on a free port with a state folder of its own: a
            # node someone else runs on the machine (the default port, or the one in the
            # engine's port variable) is neither borrowed nor stopped.
            state = Path(tempfile.mkdtemp(prefix=f"biofed-test-{engine}-"))
            private = PrivateNode(engine, state_dir=state)
            self._started.append(private)
            try:
                url = private.start()
            except NodeUnavailable as err:
                unavailable(request, err)
                raise
            node = RunningNode(engine, url)
        self._running[engine] = node
        return node

    def stop_started(self) -> None:
        for private in self._started:
            private.stop()
            if private.state_dir is not None:
                shutil.rmtree(private.state_dir, ignore_errors=True)


def engine_settings(base: Settings, node: RunningNode, prefix: str, **values: Any) -> Settings:
    """`base` switched to `node` (its engine's backend and URL), with indices under `prefix`."""
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    current.update(
        backend=node.backend,
        engine_urls=node.url,
        engine_index_prefix=prefix,
        # Tests see outages quickly: few retries, short backoff (see also engine_lock_ttl).
        engine_search_timeout=5,
        engine_bulk_retries=2,
        engine_bulk_timeout=30,
    )
    current.update(values)
    return load_settings(overrides=current, read_files=False, environ={})


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def engine_get(url: str, path: str) -> Any:
    """GET a JSON endpoint of the node directly (not through the code under test)."""
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as response:
        return json.loads(response.read())


def engine_request(url: str, method: str, path: str, body: Any | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def indices(url: str, prefix: str) -> dict[str, set[str]]:
    """Every index whose name starts with `prefix`, with its aliases."""
    found = engine_request(url, "GET", f"/{prefix}-*/_alias")
    return {name: set(entry.get("aliases", {})) for name, entry in (found or {}).items()}


def drop_prefix(url: str, prefix: str) -> None:
    """Delete a test's indices (by name: wildcard deletes may be forbidden)."""
    names = sorted(indices(url, prefix))
    if names:
        engine_request(url, "DELETE", f"/{','.join(names)}")
