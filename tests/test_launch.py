"""Starting the demo as a newcomer does: a busy port is reported before any work, the demo
network follows the parameters asked for, generation shows progress, keys say who they are."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from federation.cli import main
from federation.launch import (
    DemoKey,
    DemoParameters,
    PortBusy,
    check_port_free,
    demo_keys,
    prepare_demo_network,
    recorded_parameters,
)
from tests.support.server import free_port, graphql, running

TINY = DemoParameters(biobanks=2, samples=40, seed=3)


@pytest.fixture
def occupied_port() -> Iterator[tuple[socket.socket, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock, sock.getsockname()[1]
    sock.close()


def test_a_busy_port_fails_the_demo_at_once_before_any_generation_or_sync(
    tmp_path: Path, occupied_port: tuple[socket.socket, int]
) -> None:
    _, port = occupied_port
    data = tmp_path / "data"
    started = time.monotonic()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "federation.cli", "--data-dir", str(data), "demo"),
            *("--biobanks", "1", "--samples", "20", "--port", str(port)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert f"--port {port + 1}" in done.stderr
    # Nothing was generated, synced or indexed: the message came first.
    assert not (data / "demo").exists() and not (data / "index").exists()
    assert "generating" not in done.stderr and "succeeded" not in done.stdout + done.stderr
    assert took < 30, f"the busy port took {took:.1f}s to report"


def test_serve_checks_its_port_too(occupied_port: tuple[socket.socket, int]) -> None:
    _, port = occupied_port
    result = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.output


def test_a_free_port_passes_and_a_listening_one_does_not(
    occupied_port: tuple[socket.socket, int],
) -> None:
    sock, port = occupied_port
    with pytest.raises(PortBusy) as caught:
        check_port_free("127.0.0.1", port)
    assert caught.value.code == "PORT_BUSY"
    sock.close()
    check_port_free("127.0.0.1", port)  # free again once its listener is gone


def test_the_demo_network_is_made_again_when_the_parameters_differ(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    said: list[str] = []
    assert prepare_demo_network(out, TINY, fresh=False, say=said.append)
    assert recorded_parameters(out / "network.yaml") == TINY
    assert any(line.startswith("  [2/2] ") and "samples" in line for line in said), said
    written = (out / "network.yaml").stat().st_mtime_ns

    said.clear()
    assert not prepare_demo_network(out, TINY, fresh=False, say=said.append)
    assert (out / "network.yaml").stat().st_mtime_ns == written
    assert said == [f"using the demo network in {out} ({TINY.describe()}; --fresh makes it anew)"]

    said.clear()
    smaller = DemoParameters(biobanks=1, samples=60, seed=3)
    assert prepare_demo_network(out, smaller, fresh=False, say=said.append)
    assert said[0] == (
        f"the demo network in {out} was made with --biobanks 2 --samples 40 --seed 3 "
        "--sources mixed; making it again with:"
    )
    assert said[1] == "  --biobanks 1 --samples 60 --seed 3 --sources mixed"
    assert recorded_parameters(out / "network.yaml") == smaller
    # The biobank the smaller network no longer has left no folder behind.
    assert len(list((out / "sources").iterdir())) == 1

    said.clear()
    assert prepare_demo_network(out, smaller, fresh=True, say=said.append)
    assert said[0].startswith("generating 1 biobanks, 60 samples")


def test_each_demo_key_says_what_it_may_do(tmp_path: Path) -> None:
    keys = {k.role: k for k in demo_keys(tmp_path, ["bb-one", "bb-two"], reissue=True)}
    assert keys["admin"].holder.startswith("administers biobank bb-one")
    assert keys["approved"].holder.startswith("researcher approved at 2 biobank(s)")
    assert keys["registered"].holder == "registered researcher"
    assert keys["network_operator"].holder.startswith("network operator")
    again = demo_keys(tmp_path, ["bb-one", "bb-two"], reissue=False)
    assert [k.key for k in again] == [k.key for k in keys.values()]
    assert isinstance(again[0], DemoKey)
    assert (tmp_path / "demo-keys.yaml").stat().st_mode & 0o077 == 0, "keys are private"


def test_demo_data_prints_progress_per_biobank(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["demo-data", "--out", str(tmp_path), "--biobanks", "3", "--samples", "60"]
    )
    assert result.exit_code == 0, result.output
    progress = [line for line in result.output.splitlines() if line.startswith("  [")]
    assert [line.split("]")[0] for line in progress] == ["  [1/3", "  [2/3", "  [3/3"]


@pytest.mark.slow
def test_the_demo_runs_a_sync_worker_so_start_sync_runs(tmp_path: Path) -> None:
    """An admin's "Start sync" on the demo is queued, taken by the demo's worker and run."""
    data, port = tmp_path / "data", free_port()
    command = [
        *(sys.executable, "-m", "federation.cli", "--data-dir", str(data), "demo"),
        *("--biobanks", "2", "--samples", "40", "--port", str(port)),
    ]
    with running(command, {}, port, tmp_path / "demo.log", timeout=240) as url:
        keys = yaml.safe_load((data / "demo" / "demo-keys.yaml").read_text(encoding="utf-8"))
        admin = {"Authorization": f"Bearer {keys['admin']['key']}"}
        [biobank] = keys["admin"]["entry"]["admin_of"]
        start = "mutation($b: ID!) { startSync(biobank: $b) { requestId } }"
        asked = graphql(url, start, {"b": biobank}, admin)
        assert "errors" not in asked, asked
        watch = "{ syncRequests { requestId state run { outcome triggeredBy } } }"
        deadline = time.monotonic() + 120
        states = []
        while time.monotonic() < deadline:
            [request] = graphql(url, watch, headers=admin)["data"]["syncRequests"]
            states.append(request["state"])
            if request["state"] == "FINISHED":
                break
            time.sleep(0.5)
        assert request["requestId"] == asked["data"]["startSync"]["requestId"]
        assert request["state"] == "FINISHED", (states, (tmp_path / "demo.log").read_text())
        assert request["run"] == {
            "outcome": "SUCCEEDED",
            "triggeredBy": f"request:{keys['admin']['entry']['subject']}",
        }
    log = (tmp_path / "demo.log").read_text()
    assert "a sync worker runs beside the server" in log
