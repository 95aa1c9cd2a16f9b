"""Real receivers on loopback for notification and hand-off tests: an SMTP server
(aiosmtpd), a webhook receiver that checks the HMAC signature, and a stand-in for the
BBMRI-ERIC Negotiator's request endpoint that answers as its API documents.

Ports: the OS picks a free one, or one from BIOFED_TEST_PORT_RANGE (`18400-18499`) when a
machine hands each test run its own range.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def loopback_port() -> int:
    """A free loopback port (from BIOFED_TEST_PORT_RANGE when set)."""
    span = os.environ.get("BIOFED_TEST_PORT_RANGE")
    candidates = [0]
    if span:
        low, high = (int(p) for p in span.split("-"))
        candidates = list(range(low, high + 1))
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free port in {span}")


@dataclass
class Mailbox:
    """What the SMTP server received."""

    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(message_from_bytes(content, policy=policy.default))
        return "250 Message accepted for delivery"

    def received(self) -> list[Message]:
        with self.lock:
            return list(self.messages)


@contextmanager
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server on loopback; yields its port and what it received."""
    mailbox = Mailbox()
    port = loopback_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


@dataclass
class Webhooks:
    """Calls the webhook receiver got, whether each signature verified, and how many of
    the first calls it answers with 503 (to exercise retries)."""

    secret: str
    fail_first: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, timestamp: str, body: bytes, signature: str) -> bool:
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        fresh = abs(time.time() - int(timestamp)) < 300
        return fresh and hmac.compare_digest(signature, f"sha256={expected}")

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.calls)


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on loopback in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", loopback_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def webhook_receiver(secret: str, fail_first: int = 0) -> Iterator[tuple[str, Webhooks]]:
    """A webhook endpoint on loopback that records each call and checks its HMAC."""
    hooks = Webhooks(secret, fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hooks.lock:
                answered = 503 if len(hooks.calls) < hooks.fail_first else 204
                hooks.calls.append(
                    {
                        "status": answered,
                        "event": self.headers.get("X-Biofed-Event"),
                        "valid": hooks.verify(
                            self.headers.get("X-Biofed-Timestamp", "0"),
                            body,
                            self.headers.get("X-Biofed-Signature", ""),
                        ),
                        "body": json.loads(body),
                    }
                )
            self.send_response(answered)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read what arrived, not the server's access log."""

    with http_server(Handler) as url:
        yield f"{url}/hooks/biofed", hooks


@dataclass
class NegotiatorInbox:
    """Requests the Negotiator stand-in received."""

    requests: list[dict[str, Any]] = field(default_factory=list)


# The fields the Negotiator's POST /api/v3/requests documents (its RequestCreateDTO):
# `url` and `humanReadable` not null, `resources` not empty, each resource with an `id`.
REQUIRED_FIELDS = ("url", "humanReadable", "resources")


def negotiator_errors(payload: Any) -> list[str]:
    """Why the Negotiator would refuse a payload (empty: it would take it)."""
    if not isinstance(payload, dict):
        return ["the payload is not a JSON object"]
    errors = [f"{name} is missing" for name in REQUIRED_FIELDS if payload.get(name) in (None, "")]
    for name in ("url", "humanReadable"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"{name} is not a string")
    resources = payload.get("resources")
    if not isinstance(resources, list) or not resources:
        errors.append("resources must be a non-empty list")
    else:
        for n, resource in enumerate(resources):
            if not isinstance(resource, dict) or not isinstance(resource.get("id"), str):
                errors.append(f"resources[{n}] has no string id")
            elif not isinstance(resource.get("name"), str):
                errors.append(f"resources[{n}] has no string name")
        ids = [r.get("id") for r in resources if isinstance(r, dict)]
        if len(ids) != len(set(ids)):
            errors.append("resources repeat an id (the Negotiator takes a set)")
    return errors


@contextmanager
def negotiator() -> Iterator[tuple[str, NegotiatorInbox]]:
    """POST /api/v3/requests: 400 with the reasons for a payload the Negotiator would
    refuse, else 201 with the request, its id and a `redirectUrl`."""
    inbox = NegotiatorInbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            errors = negotiator_errors(body) if self.path == "/api/v3/requests" else ["no route"]
            if errors:
                status, answer = 400, {"title": "Bad Request", "detail": "; ".join(errors)}
            else:
                inbox.requests.append(body)
                number = len(inbox.requests)
                host = self.headers.get("Host")
                status, answer = (
                    201,
                    {
                        **body,
                        "id": f"neg-{number}",
                        "redirectUrl": f"http://{host}/requests/neg-{number}",
                    },
                )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read what arrived, not the server's access log."""

    with http_server(Handler) as url:
        yield f"{url}/api/v3/requests", inbox
