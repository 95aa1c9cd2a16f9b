"""`biofed demo --backend opensearch` on the local node: Ctrl-C stops the node the demo
started; a node that was already running is left up, and the exact stop command (with its
port) is printed. Each test runs its node on a free port and a state folder of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.node import MISSING_TOOLS, OPENSEARCH, NodeUnavailable, PrivateNode, unavailable
from tests.support.server import free_port, wait_until_up

pytestmark = pytest.mark.slow


def demo_command(data: Path, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "federation.cli", "--data-dir", str(data), "demo"),
        *("--backend", "opensearch", "--biobanks", "1", "--samples", "40", "--port", str(port)),
    ]


def run_then_interrupt(
    command: list[str], node: PrivateNode, log: Path, request: pytest.FixtureRequest
) -> None:
    """Start the demo, wait until it serves, press Ctrl-C (SIGINT to its process group)."""
    port = int(command[-1])
    env = {**os.environ, "BIOFED_NODE_PORT": str(node.port)}
    env["BIOFED_NODE_STATE"] = str(node.state_dir)
    env.pop("BIOFED_ENGINE_URLS", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            wait_until_up(f"http://127.0.0.1:{port}", process, log, timeout=300)
        except AssertionError:
            text = log.read_text()
            if "the local OpenSearch node did not start" in text:
                missing = any(m in text for m in MISSING_TOOLS)
                unavailable(request, NodeUnavailable(text[-2000:], missing))
            raise
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=120) == 0, log.read_text()[-4000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[PrivateNode]:
    private = PrivateNode(OPENSEARCH, free_port(), tmp_path / "node-state")
    yield private
    private.stop()  # whatever a failed test left running


def test_ctrl_c_stops_the_node_the_demo_started(
    tmp_path: Path, node: PrivateNode, request: pytest.FixtureRequest
) -> None:
    log = tmp_path / "demo.log"
    run_then_interrupt(demo_command(tmp_path / "data", free_port()), node, log, request)
    text = log.read_text()
    assert f"starting the local OpenSearch node on port {node.port}" in text
    assert "the local OpenSearch node stops with the demo (Ctrl-C)" in text
    assert f"stopped the local OpenSearch node on port {node.port}" in text
    assert not node.running(), "Ctrl-C left the demo's node running"


def test_a_node_already_running_is_left_up_with_its_exact_stop_command(
    tmp_path: Path, node: PrivateNode, request: pytest.FixtureRequest
) -> None:
    try:
        node.start()
    except NodeUnavailable as err:
        unavailable(request, err)
    log = tmp_path / "demo.log"
    run_then_interrupt(demo_command(tmp_path / "data", free_port()), node, log, request)
    text = log.read_text()
    assert (
        "the OpenSearch node was already running; it stays up: "
        f"BIOFED_NODE_PORT={node.port} BIOFED_NODE_STATE={node.state_dir} scripts/search-node stop"
    ) in text
    assert "stopped the local OpenSearch node" not in text
    assert node.running(), "the demo stopped a node it had not started"
