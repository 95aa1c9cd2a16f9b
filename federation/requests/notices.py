"""What a request's events tell whom: e-mails to the researcher and to the biobank, and
one signed webhook call per configured URL.

Written into the outbox in the transaction of the change (federation/state/
access_requests.py); `deliver.py` sends them. Nothing here talks to the network.
"""

from __future__ import annotations

import json

from federation.requests.config import RequestsSettings
from federation.requests.lifecycle import Actor
from federation.settings import Network
from federation.state.access_requests import Notification, RequestEvent, StoredRequest

EMAIL, WEBHOOK = "email", "webhook"
SUBMITTED_EVENT = "access_request.submitted"
MOVED_EVENT = "access_request.state_changed"
MESSAGE_EVENT = "access_request.message"


def event_name(event: RequestEvent) -> str:
    """The webhook event a log row is told as."""
    if event.from_state is None and event.to_state is not None:
        return SUBMITTED_EVENT
    if event.to_state is not None:
        return MOVED_EVENT
    return MESSAGE_EVENT


class Notices:
    """Notifications for the events of requests in one network."""

    def __init__(self, settings: RequestsSettings, network: Network) -> None:
        self.settings = settings
        self.network = network

    def link(self, request: StoredRequest) -> str:
        """Where the request is read in the web UI."""
        return f"{self.settings.public_url}/requests/{request.id}"

    def _biobank(self, biobank_id: str) -> tuple[str, str | None]:
        for source in self.network.biobanks:
            if source.biobank.id == biobank_id:
                return source.biobank.name, source.biobank.contact_email
        return biobank_id, None

    def for_event(self, request: StoredRequest, event: RequestEvent) -> list[Notification]:
        """E-mails to the other side of the event (both on submission) and webhooks."""
        name, biobank_email = self._biobank(event.biobank_id)
        kind = event_name(event)
        what = {
            SUBMITTED_EVENT: f"submitted to {name}",
            MOVED_EVENT: f"at {name}: {event.from_state} -> {event.to_state}",
            MESSAGE_EVENT: f"new message about {name}",
        }[kind]
        subject = f"[biofed] access request {request.id} {what}"
        lines = [
            f"Access request {request.id}: {request.title}",
            f"Biobank: {name} ({event.biobank_id})",
            f"Question: {request.question}",
        ]
        if event.to_state is not None:
            lines.append(f"State: {event.to_state}")
        if event.message:
            lines += ["", f"Message from {event.actor_role}:", event.message]
        lines += ["", f"Read and answer it at {self.link(request)}"]
        body = "\n".join(lines) + "\n"
        recipients = []
        from_researcher = event.actor_role == Actor.RESEARCHER.value
        if (from_researcher or kind == SUBMITTED_EVENT) and biobank_email:
            recipients.append(biobank_email)
        if (not from_researcher or kind == SUBMITTED_EVENT) and request.researcher_email:
            recipients.append(request.researcher_email)
        notes = []
        if self.settings.email.mode != "off":
            notes = [Notification(EMAIL, to, subject, body) for to in dict.fromkeys(recipients)]
        payload = json.dumps(
            {
                "event": kind,
                "request": request.id,
                "biobank": event.biobank_id,
                "at": event.at,
                "actor_role": event.actor_role,
                "from_state": event.from_state,
                "to_state": event.to_state,
                "title": request.title,
                "url": self.link(request),
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        notes += [Notification(WEBHOOK, url, kind, payload) for url in self.settings.webhooks]
        return notes
