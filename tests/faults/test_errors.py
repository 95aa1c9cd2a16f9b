"""Unclear errors made clear: a body that is not UTF-8 is retried like other transient faults
and, if it persists, the error names the URL; a refused or held lock is recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from federation import PROJECT_ROOT
from federation.sync.state import FAILED, SUCCEEDED
from tests.connectors.sources import fill_rest, rest_options
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import Reply, RestApp, serving

# "Müller" in Latin-1: not UTF-8 (0xfc cannot start a UTF-8 sequence).
LATIN1_BODY = '{"data": [{"id": "D1", "name": "M\u00fcller"}]}'.encode("latin-1")


def sync_cli(network: HttpNetwork, biobank_id: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "federation.cli",
        "--data-dir",
        str(network.settings.data_dir),
        "--network",
        str(network.path),
        "sync",
        "--biobank",
        biobank_id,
        "--no-progress",
    ]
    return subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_body_that_is_not_utf8_once_is_retried(tmp_path: Path) -> None:
    app = RestApp("page")
    fill_rest(app, donors=2)
    with serving(app) as server:
        network = HttpNetwork(
            tmp_path, [entry("bb-rest", "rest", rest_options(server.url, "page", **FAST_RETRIES))]
        )
        server.fail_next(Reply(200, LATIN1_BODY, {"Content-Type": "application/json"}))
        done = sync_cli(network, "bb-rest")
        assert done.returncode == 0, done.stderr
        first, second = server.requests[:2]
        assert (first.path, first.query) == (second.path, second.query)  # asked again
    assert network.runtime.state.runs("bb-rest")[0].outcome == SUCCEEDED
    assert network.counts() == {"bb-rest": (2, 4)}
    network.close()


def test_a_body_that_is_never_utf8_fails_naming_the_url(tmp_path: Path) -> None:
    app = RestApp("page")
    fill_rest(app, donors=2)
    with serving(app) as server:
        network = HttpNetwork(
            tmp_path, [entry("bb-rest", "rest", rest_options(server.url, "page", **FAST_RETRIES))]
        )
        server.always = lambda request: Reply(
            200, LATIN1_BODY, {"Content-Type": "application/json"}
        )
        done = sync_cli(network, "bb-rest")
        url = f"{server.url}/api/collections"
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    run = network.runtime.state.runs("bb-rest")[0]
    assert run.outcome == FAILED
    error = run.error or ""
    assert f"GET {url}" in error
    assert "gave up after 3 attempts: the body is not UTF-8 (byte 0xfc at 33)" in error
    network.close()
