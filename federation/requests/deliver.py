"""Delivering the outbox: e-mail through SMTP (or to the log) and HMAC-signed webhooks,
retried with exponential back-off, in a background thread that never holds up a request.

Each gateway process runs one deliverer; the outbox hands each notification to one of
them at a time (a claim with a lease), so several processes and hosts share the work.

Webhook signature: `X-Biofed-Timestamp: <unix seconds>` and
`X-Biofed-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>`.
A receiver recomputes it and refuses an old timestamp (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import Any

from federation.requests.config import RequestsSettings
from federation.requests.notices import EMAIL, WEBHOOK
from federation.state.access_requests import Notification, NotificationOutbox, OutboxItem

log = logging.getLogger(__name__)
# E-mail in `log` mode (the demo) goes here, at INFO, to stderr unless the host application
# configured this logger: gunicorn leaves the root logger without handlers, where INFO
# lines would vanish.
mail_log = logging.getLogger("biofed.mail")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (a test's capture comes and goes)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """Ignored: StreamHandler.__init__ assigns the stream it was given once, but this
        handler always writes to the sys.stderr of the moment."""


SIGNATURE_HEADER = "X-Biofed-Signature"
TIMESTAMP_HEADER = "X-Biofed-Timestamp"
EVENT_HEADER = "X-Biofed-Event"
# A claim outlives any one delivery attempt (SMTP and HTTP time out well before).
CLAIM_LEASE_SECONDS = 120.0
BATCH = 20
MAX_BACKOFF_SECONDS = 3600.0


class DeliveryFailed(Exception):
    """One attempt did not deliver; the outbox retries it later."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for a webhook body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def backoff(settings: RequestsSettings, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1, 2, ...)."""
    return float(min(MAX_BACKOFF_SECONDS, settings.backoff_seconds * 2 ** (attempts - 1)))


class Deliverer:
    """Sends due notifications from the outbox; `start` runs it in a daemon thread."""

    def __init__(
        self,
        outbox: NotificationOutbox,
        settings: RequestsSettings,
        tasks: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        # Other background work of the same rhythm (checking saved searches after a
        # publish, which fills the outbox).
        self.tasks = tuple(tasks)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if settings.email.mode == "log" and not mail_log.handlers:
            mail_log.addHandler(_Stderr())
            mail_log.setLevel(logging.INFO)

    def send(self, note: Notification) -> None:
        """Deliver one notification or raise DeliveryFailed."""
        if note.channel == EMAIL:
            self._email(note)
        elif note.channel == WEBHOOK:
            self._webhook(note)
        else:
            raise DeliveryFailed(f"unknown channel {note.channel!r}")

    def _email(self, note: Notification) -> None:
        email = self.settings.email
        if email.mode == "log":
            mail_log.info("e-mail to %s: %s\n%s", note.target, note.subject, note.body)
            return
        message = EmailMessage()
        message["From"] = email.sender
        message["To"] = note.target
        message["Subject"] = note.subject
        message.set_content(note.body)
        try:
            with smtplib.SMTP(
                email.smtp_host, email.smtp_port, timeout=self.settings.http_timeout
            ) as smtp:
                if email.starttls:
                    smtp.starttls()
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as err:
            raise DeliveryFailed(f"SMTP {email.smtp_host}:{email.smtp_port}: {err}") from None

    def _webhook(self, note: Notification) -> None:
        body = note.body.encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            note.target,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self.settings.webhook_secret, timestamp, body),
                EVENT_HEADER: note.subject,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.http_timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as err:
            raise DeliveryFailed(f"webhook {note.target}: HTTP {err.code}") from None
        except (OSError, ValueError) as err:
            raise DeliveryFailed(f"webhook {note.target}: {err}") from None

    def run_once(self, now: float | None = None) -> int:
        """Try every due notification once; how many were delivered."""
        now = time.time() if now is None else now
        delivered = 0
        for item in self.outbox.claim(now, CLAIM_LEASE_SECONDS, BATCH):
            delivered += self._attempt(item, now)
        return delivered

    def _attempt(self, item: OutboxItem, now: float) -> int:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self.send(item.notification)
        except DeliveryFailed as err:
            attempts = item.attempts + 1
            gave_up = attempts >= self.settings.max_attempts
            log.warning(
                "notification %s to %s failed (attempt %d of %d): %s",
                item.id,
                item.notification.target,
                attempts,
                self.settings.max_attempts,
                err,
            )
            self.outbox.retry(
                item.id,
                str(err),
                now + backoff(self.settings, attempts),
                failed_at=at if gave_up else None,
            )
            return 0
        self.outbox.delivered(item.id, at)
        return 1

    def start(self) -> None:
        """Deliver in a daemon thread until `stop` (or the process ends)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="biofed-deliverer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for task in (*self.tasks, self.run_once):
                try:
                    task()
                except Exception:  # a store outage must not end the thread
                    log.exception("background task %s failed; trying again", task)
            self._stop.wait(self.settings.poll_seconds)

    def stop(self) -> None:
        """Stop the thread after its current round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
