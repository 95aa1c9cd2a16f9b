"""Run the app under gunicorn on a free loopback port for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from federation import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    base_url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not up after {timeout}s:\n{log.read_text()[-4000:]}")


@contextmanager
def running(
    command: Sequence[str], env: Mapping[str, str], port: int, log: Path, timeout: float = 120
) -> Iterator[str]:
    """Start `command` (which serves on `port`), yield its base URL, stop it afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url, process, log, timeout)
        yield base_url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def gunicorn(data_dir: Path, network: Path, log: Path, workers: int = 2) -> Iterator[str]:
    """The gateway under gunicorn with the repository's gunicorn.conf.py."""
    port = free_port()
    env = {
        "BIOFED_DATA_DIR": str(data_dir),
        "BIOFED_NETWORK": str(network),
        "BIOFED_HOST": "127.0.0.1",
        "BIOFED_PORT": str(port),
        "BIOFED_WORKERS": str(workers),
    }
    command = [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py")]
    with running(command, env, port, log) as url:
        yield url


def graphql(
    base_url: str,
    query: str,
    variables: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result
