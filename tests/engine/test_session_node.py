"""A test session without BIOFED_TEST_ENGINE_URL runs its own node on a free port and a state
folder of its own, stops it at the end, and leaves any other node alone, even one on the
port in BIOFED_NODE_PORT (another developer's, or the machine's default)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from federation import PROJECT_ROOT
from tests.engine.node import OPENSEARCH, SessionNodes

pytest_plugins = ["tests.engine.fixtures"]
pytestmark = pytest.mark.slow

PROBE = """
import os
from pathlib import Path

import pytest

from tests.engine.node import OPENSEARCH, SessionNodes

pytest_plugins = ["tests.engine.fixtures"]


def test_probe(request: pytest.FixtureRequest, engine_nodes: SessionNodes) -> None:
    Path(os.environ["PROBE_OUT"]).write_text(engine_nodes.get(request, OPENSEARCH).url)
"""


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_a_session_uses_a_node_of_its_own_and_stops_only_that(
    request: pytest.FixtureRequest, engine_nodes: SessionNodes, tmp_path: Path
) -> None:
    engine_url = engine_nodes.get(request, OPENSEARCH).url
    # The node this session shares plays "someone else's node on BIOFED_NODE_PORT".
    theirs = urlparse(engine_url).port
    probe = tmp_path / "test_probe.py"
    probe.write_text(textwrap.dedent(PROBE), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIOFED_TEST_")}
    env.update(BIOFED_NODE_PORT=str(theirs), PROBE_OUT=str(tmp_path / "url"))
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    used = (tmp_path / "url").read_text()
    assert urlparse(used).port != theirs, "the session borrowed the node on BIOFED_NODE_PORT"
    assert not answers(used), "the session left its own node running"
    assert answers(engine_url), "the session stopped a node it had not started"
