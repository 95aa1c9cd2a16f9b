"""Network sources that fail: a run killed with SIGKILL resumes, a 500 storm fails only its
biobank, and a secret never reaches a log, an error or the CLI's output."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from federation import PROJECT_ROOT
from tests.connectors.sources import fill_rest, rest_options
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import Reply, Request, RestApp, server_error, serving
from tests.support.network import TabularBiobank

SECRET = "tok-9f8e7d6c5b4a"


def cli(network: HttpNetwork, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "federation.cli",
        "--data-dir",
        str(network.settings.data_dir),
        "--network",
        str(network.path),
        *args,
    ]


def test_a_sync_killed_mid_way_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    app = RestApp("offset", size_param="limit")
    fill_rest(app, donors=10, samples_per_donor=3)  # 30 samples, 10 pages of 3
    gate, blocked = threading.Event(), tmp_path / "blocked"

    def stalling(request: Request) -> Reply:
        late_page = int(request.query.get("offset", 0)) >= 12
        if request.path.endswith("/samples") and late_page and not gate.is_set():
            blocked.write_text("stalled")
            gate.wait(60)
        return app(request)

    with serving(stalling) as server:
        options = rest_options(server.url, "offset", **FAST_RETRIES)
        network = HttpNetwork(tmp_path, [entry("bb-rest", "rest", options)])
        process = subprocess.Popen(
            cli(network, "sync", "--biobank", "bb-rest", "--no-progress"),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not blocked.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        gate.set()
        assert network.runtime.state.runs("bb-rest")[0].outcome == "running"
        assert "bb-rest" not in network.runtime.backend.published()  # nothing half-published

        before = len(server.requests)
        run = network.sync("bb-rest")
        resumed = server.requests[before:]
    assert (run.kind, run.outcome) == ("full", "succeeded")
    assert network.runtime.state.runs("bb-rest")[1].outcome == "interrupted"
    # Collections and donors were done; samples pick up at the page the killed run was on.
    assert (resumed[0].path, resumed[0].query["offset"]) == ("/api/samples", "12")
    ids = network.sample_ids()
    assert len(ids) == len(set(ids)) == 30
    assert network.counts() == {"bb-rest": (10, 30)}
    network.close()


def test_a_500_storm_fails_only_its_biobanks_run(tmp_path: Path) -> None:
    tabular = TabularBiobank(tmp_path, "bb-files")
    tabular.donor("D1").sample("S1", "D1").sample("S2", "D1")
    tabular.write()
    app = RestApp("page")
    fill_rest(app, donors=2)
    with serving(app) as server:
        network = HttpNetwork(
            tmp_path,
            [
                tabular.network_entry(),
                entry("bb-rest", "rest", rest_options(server.url, "page", **FAST_RETRIES)),
            ],
        )
        first = subprocess.run(
            cli(network, "sync", "--all", "--no-progress"),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr
        server.always = lambda request: server_error()
        storm = subprocess.run(
            cli(network, "sync", "--all", "--no-progress"),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert storm.returncode == 1
    assert "bb-files: succeeded" in storm.stdout
    assert "bb-rest: FAILED" in storm.stderr
    assert "gave up after 3 attempts: HTTP 500" in storm.stderr
    failed = network.runtime.state.runs("bb-rest")[0]
    assert (failed.outcome, failed.kind) == ("failed", "incremental")
    # The search still answers, the failed biobank from its previous generation.
    assert network.counts() == {"bb-files": (1, 2), "bb-rest": (2, 4)}
    network.close()


def _secret_network(tmp_path: Path, url: str) -> HttpNetwork:
    options: dict[str, Any] = rest_options(url, "cursor", **FAST_RETRIES)
    options["token"] = "${BIOFED_TEST_REST_TOKEN}"
    return HttpNetwork(tmp_path, [entry("bb-rest", "rest", options)])


def test_a_secret_never_appears_in_logs_errors_or_cli_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = RestApp("cursor")
    fill_rest(app, donors=2)
    with serving(app) as server:
        network = _secret_network(tmp_path, server.url)
        monkeypatch.setenv("BIOFED_TEST_REST_TOKEN", SECRET)
        server.required_token = SECRET
        caplog.set_level(logging.DEBUG)
        assert network.sync("bb-rest").outcome == "succeeded"
        assert server.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"
        # The source stops accepting the token and echoes it back in its error body.
        server.required_token = "rotated"
        env = {**os.environ, "BIOFED_TEST_REST_TOKEN": SECRET}
        failed = subprocess.run(
            cli(network, "sync", "--biobank", "bb-rest", "--no-progress"),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        runs = subprocess.run(
            cli(network, "runs"), cwd=PROJECT_ROOT, capture_output=True, text=True, env=env
        )
    assert failed.returncode == 1 and "HTTP 401" in failed.stderr
    assert SECRET not in failed.stderr + failed.stdout + runs.stdout
    assert SECRET not in caplog.text
    assert all(SECRET not in (r.error or "") for r in network.runtime.state.runs("bb-rest"))
    assert SECRET not in str(network.runtime.state.quarantine("bb-rest"))
    network.close()
