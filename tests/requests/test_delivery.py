"""The outbox deliverer against real receivers on loopback: e-mail through an SMTP server,
webhooks with a valid HMAC signature, retries with exponential back-off, giving up after
the last attempt; and a submission never waits for a mail server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from federation.gateway import create_app
from federation.requests.config import RequestsSettings
from federation.requests.deliver import Deliverer
from federation.settings import Settings
from federation.state.access_requests import Notification
from federation.state.store import StateStore, open_state_store
from tests.gateway.access import headers, with_test_access
from tests.gateway.conftest import graphql
from tests.requests.api import SLOW_MACHINE, SUBMIT, submission
from tests.requests.receivers import loopback_port, smtp_server, webhook_receiver

SECRET = "test-webhook-secret"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = open_state_store("", tmp_path)
    yield store
    store.close()


def settings(**raw: object) -> RequestsSettings:
    return RequestsSettings.parse({"backoff_seconds": 10, **raw}, webhook_secret=SECRET)


def enqueue(store: StateStore, *notes: Notification) -> None:
    with store.write() as db:
        store.outbox.enqueue(db, notes, "2026-12-07T00:00:00+00:00")


def test_mail_and_signed_webhooks_arrive(store: StateStore) -> None:
    with smtp_server() as (port, mailbox), webhook_receiver(SECRET) as (url, hooks):
        deliverer = Deliverer(
            store.outbox,
            settings(
                email={"mode": "smtp", "smtp_port": port, "sender": "net@example.org"},
                webhooks=[url],
            ),
        )
        enqueue(
            store,
            Notification("email", "admin@bb1.example.org", "New request", "Please look.\n"),
            Notification("webhook", url, "access_request.submitted", '{"request": "ar-1"}'),
        )
        assert deliverer.run_once() == 2
        [mail] = mailbox.received()
        assert (mail["To"], mail["From"], mail["Subject"]) == (
            "admin@bb1.example.org",
            "net@example.org",
            "New request",
        )
        assert mail.get_payload().strip() == "Please look."
        [call] = hooks.received()
        assert (call["valid"], call["event"], call["body"]) == (
            True,
            "access_request.submitted",
            {"request": "ar-1"},
        )
    assert [i.delivered_at is not None for i in store.outbox.items()] == [True, True]
    assert deliverer.run_once() == 0  # delivered once, never again


def test_a_wrong_secret_does_not_verify(store: StateStore) -> None:
    with webhook_receiver("another secret") as (url, hooks):
        deliverer = Deliverer(store.outbox, settings(webhooks=[url]))
        enqueue(store, Notification("webhook", url, "access_request.message", "{}"))
        deliverer.run_once()
        assert [c["valid"] for c in hooks.received()] == [False]


def test_failures_are_retried_with_back_off_then_given_up(store: StateStore) -> None:
    with webhook_receiver(SECRET, fail_first=2) as (url, hooks):
        deliverer = Deliverer(store.outbox, settings(webhooks=[url], max_attempts=5))
        enqueue(store, Notification("webhook", url, "access_request.submitted", "{}"))
        start = time.time()
        assert deliverer.run_once(start) == 0
        [item] = store.outbox.items()
        assert (item.attempts, item.due_at) == (1, start + 10)  # first back-off: 10 s
        assert deliverer.run_once(start + 9) == 0  # not due yet: not tried
        assert len(hooks.received()) == 1
        assert deliverer.run_once(start + 10) == 0
        [item] = store.outbox.items()
        assert (item.attempts, item.due_at) == (2, start + 10 + 20)  # doubled
        assert "HTTP 503" in (item.last_error or "")
        assert deliverer.run_once(start + 30) == 1
        assert [c["status"] for c in hooks.received()] == [503, 503, 204]
        assert all(c["valid"] for c in hooks.received())

    closed = f"http://127.0.0.1:{loopback_port()}/gone"  # nothing listens there
    deliverer = Deliverer(store.outbox, settings(webhooks=[closed], max_attempts=2))
    enqueue(store, Notification("webhook", closed, "access_request.submitted", "{}"))
    now = time.time()
    deliverer.run_once(now)
    deliverer.run_once(now + 10)
    gone = store.outbox.items()[-1]
    assert (gone.attempts, gone.delivered_at) == (2, None)
    assert gone.failed_at is not None
    assert deliverer.run_once(now + 10_000) == 0  # given up: never tried again


def test_a_submission_does_not_wait_for_the_mail_server(synced_settings: Settings) -> None:
    # Nothing listens on the SMTP port: the request is stored and answered at once, the
    # mail stays in the outbox to be retried.
    port = loopback_port()
    requests = {"email": {"mode": "smtp", "smtp_port": port}, "poll_seconds": 0.05}
    app: Flask = create_app(
        {
            "settings": with_test_access(
                synced_settings.with_overrides(requests=requests), **SLOW_MACHINE
            ),
            "TESTING": True,
        }
    )
    runtime = app.extensions["biofed"]
    runtime.state_store  # noqa: B018 -- opened before the timed request
    try:
        body = graphql(
            app.test_client(), SUBMIT, {"input": submission()}, headers=headers("researcher")
        )
        assert "errors" not in body, body
        request_id = body["data"]["submitAccessRequest"]["id"]
        deadline = time.monotonic() + 30
        mine: list[object] = []
        while time.monotonic() < deadline:
            mine = [
                i
                for i in runtime.state_store.outbox.items()
                if request_id in i.notification.subject and i.attempts > 0
            ]
            if mine:
                break
            time.sleep(0.1)
        assert mine, "the deliverer never tried"
        assert all(i.delivered_at is None and "SMTP" in (i.last_error or "") for i in mine)
    finally:
        runtime.deliverer.stop()
        runtime.backend.close()


def test_the_demo_prints_mail_to_the_log(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    deliverer = Deliverer(store.outbox, settings(email={"mode": "log"}))
    enqueue(store, Notification("email", "admin@bb1.example.org", "New request", "Look.\n"))
    with caplog.at_level("INFO", logger="biofed.mail"):
        assert deliverer.run_once() == 1
    assert "e-mail to admin@bb1.example.org: New request\nLook." in caplog.text
