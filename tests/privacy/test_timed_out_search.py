"""A search that timed out is not audited as answered (issue 12, item 6).

The gateway runs under gunicorn on the OpenSearch node, reached through a loopback proxy
that can hold the node's answers back: the request's deadline passes while the search
waits for the engine, the client gets TIMEOUT, and the search, which the engine answers
later, must then neither be recorded in the audit log nor charged to anybody's budget.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.faults.harness import FaultNetwork, post_search
from tests.support.server import free_port, running

pytest_plugins = ["tests.engine.fixtures"]

DEADLINE_S = 4.0  # a loaded machine answers in well under this
HELD_S = 8.0  # well past the deadline, well within the engine client's timeout
# Every sample (24), asked with a filter: the unfiltered landing page is answered from the
# warm answer the sync kept (search/warm.py) without asking the engine at all.
EVERY_SAMPLE = {"biobanks": ["bb-a", "bb-b"]}


class HoldingProxy:
    """Forwards every request to the engine; holds `_msearch` answers while `hold` is set."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.hold = threading.Event()
        self.held = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if "_msearch" in self.path and proxy.hold.is_set():
                    proxy.held += 1
                    time.sleep(HELD_S)
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, method=self.command
                )
                for name in ("Content-Type", "Accept"):
                    if self.headers.get(name):
                        request.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, payload = answer.status, answer.read()
                        kind = answer.headers.get("Content-Type", "application/json")
                except urllib.error.HTTPError as err:
                    status, payload = err.code, err.read()
                    kind = err.headers.get("Content-Type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test's output stays readable

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[HoldingProxy]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def audited(network: FaultNetwork) -> int:
    """How many searches the audit log holds."""
    with network.runtime() as runtime:
        return len(runtime.audit.entries(first=100).entries)


def test_a_search_that_timed_out_is_not_audited_as_answered(
    tmp_path: Path, engine_url: str
) -> None:
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b"), engine_url=engine_url)
    try:
        done = network.sync()
        assert done.returncode == 0, done.stderr
        with HoldingProxy(engine_url).running() as proxy:
            port = free_port()
            env = network.env(
                BIOFED_HOST="127.0.0.1",
                BIOFED_PORT=str(port),
                BIOFED_WORKERS="2",
                BIOFED_ENGINE_URLS=proxy.url,
                BIOFED_ENGINE_SEARCH_TIMEOUT="20",
                BIOFED_LIMITS=json.dumps(
                    {"timeout_seconds": DEADLINE_S, "rate_limit": {"enabled": False}}
                ),
            )
            command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
            with running(command, env, port, tmp_path / "gunicorn.log"):
                url = f"http://127.0.0.1:{port}"
                post_search(url, EVERY_SAMPLE)  # a first search warms the worker up (names, tables)
                before = audited(network)
                # Answered in time: audited (the count this test must not see grow later).
                answered = post_search(url, EVERY_SAMPLE)
                assert "errors" not in answered, answered
                assert answered["data"]["search"]["samples"]["value"] == 24
                assert audited(network) == before + 1

                proxy.hold.set()
                started = time.monotonic()
                late = post_search(url, EVERY_SAMPLE)
                took = time.monotonic() - started
                assert late["errors"][0]["extensions"]["code"] == "TIMEOUT", late
                assert late["data"] is None
                assert took < HELD_S, "the client got its TIMEOUT at the deadline"
                assert proxy.held == 1
                # The engine answers the held search now; the worker's thread goes on with
                # it, and must find that nobody is waiting any more.
                time.sleep(HELD_S + 1.5)
                assert audited(network) == before + 1, "a search that timed out was audited"

                proxy.hold.clear()
                assert post_search(url, EVERY_SAMPLE) == answered
                assert audited(network) == before + 2
    finally:
        network.close()
