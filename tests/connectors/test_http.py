"""The HTTP layer every network connector shares: retries, backoff, fatal errors, secrets."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from connectors.http import HttpSource, RecordedSource, recorded_name, scrub
from federation.sync.connector import SourceError
from tests.support.loopback import (
    LoopbackServer,
    Reply,
    cut_short,
    malformed_json,
    server_error,
    serving,
    too_many_requests,
)

FAST = {"retries": 2, "backoff": 0.01, "max_backoff": 0.02, "read_timeout": 5}
SECRET = "s3cr3t-t0ken-value"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serving(lambda request: Reply.json({"ok": True, "path": request.path})) as running:
        yield running


def source(server: LoopbackServer, **options: object) -> HttpSource:
    return HttpSource(server.url, {**FAST, **options}, secrets=[SECRET])


def test_429_waits_as_long_as_retry_after_says(server: LoopbackServer) -> None:
    server.fail_next(too_many_requests("1"))
    started = time.monotonic()
    page = source(server).get("things", {"page": 1})
    assert page.body["ok"] is True
    assert time.monotonic() - started >= 0.95
    assert len(server.requests) == 2


def test_a_retry_after_beyond_the_limit_fails_at_once(server: LoopbackServer) -> None:
    server.fail_next(too_many_requests("3600"))
    with pytest.raises(SourceError, match="Retry-After 3600s") as err:
        source(server).get("things")
    assert err.value.retriable and len(server.requests) == 1


def test_5xx_and_cut_pages_are_retried(server: LoopbackServer) -> None:
    server.fail_next(server_error())
    server.faults.append(lambda request: cut_short(server.app(request)))
    assert source(server).get("things").body["ok"] is True
    assert len(server.requests) == 3


def test_a_500_storm_exhausts_the_retries(server: LoopbackServer) -> None:
    server.always = lambda request: server_error()
    with pytest.raises(SourceError, match=r"gave up after 3 attempts: HTTP 500") as err:
        source(server).get("things")
    assert err.value.retriable


def test_malformed_json_is_an_error_of_the_run_not_a_crash(server: LoopbackServer) -> None:
    server.always = lambda request: malformed_json()
    with pytest.raises(SourceError, match="the body is not JSON"):
        source(server).get("things")


def test_a_connection_refused_is_retried_then_fails() -> None:
    with serving(lambda request: Reply.json({})) as gone:
        url = gone.url
    with pytest.raises(SourceError, match=r"connection failed \(ConnectionError\)"):
        HttpSource(url, FAST, secrets=[]).get("things")


@pytest.mark.parametrize("status", [401, 403])
def test_authentication_errors_are_fatal_at_once(server: LoopbackServer, status: int) -> None:
    server.always = lambda request: Reply.json({"error": "no"}, status)
    with pytest.raises(SourceError, match=f"HTTP {status}") as err:
        source(server).get("things")
    assert not err.value.retriable and len(server.requests) == 1


def test_secrets_never_reach_messages_or_logs(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The server echoes what it was sent, as some do in their error bodies.
    server.always = lambda request: Reply.json(
        {"error": f"bad request from {request.headers.get('Authorization')}"}, 400
    )
    caplog.set_level(logging.DEBUG)
    http = source(server, token=SECRET)
    with pytest.raises(SourceError) as err:
        http.get("things", {"q": SECRET})
    assert server.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(err.value)
    assert "***" in str(err.value)
    assert SECRET not in caplog.text
    http.close()


def test_scrub_catches_encoded_secrets() -> None:
    assert scrub("token=a%2Fb and a/b", ["a/b"]) == "token=*** and ***"


def test_recorded_pages_are_files_named_after_the_request(tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = recorded_name("Specimen?_sort=_lastUpdated&_count=50")
    assert name == "Specimen/_count=50&_sort=_lastUpdated.json"
    (tmp_path / "Specimen").mkdir()
    (tmp_path / name).write_text('{"resourceType": "Bundle"}')
    recording = RecordedSource(tmp_path)
    assert recording.get("Specimen", {"_count": 50, "_sort": "_lastUpdated"}).body == {
        "resourceType": "Bundle"
    }
    with pytest.raises(SourceError, match="no recorded page for Specimen\\?_count=10"):
        recording.get("Specimen", {"_count": 10})
