"""Access requests in the store: requests, their parts per biobank, the log of every state
change and message, and the outbox of notifications.

The store knows rows, not permissions: federation/requests/ decides who may read or move
what. A state change is a compare-and-set on the part's state, written in one transaction
with its log row and the notifications it causes, so two admins clicking at once cannot
both move a part, and no change goes out untold or is told without having happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, insert, or_, select, update

from federation.state.database import reading, stored_json, writing
from federation.state.schema import (
    access_request_events,
    access_request_parts,
    access_requests,
    notification_outbox,
)


@dataclass(frozen=True)
class StoredPart:
    """One biobank's part of a request: its state and the consent check at submission."""

    request_id: str
    biobank_id: str
    state: str
    consent: dict[str, Any]
    updated_at: str


@dataclass(frozen=True)
class StoredRequest:
    """A request as stored, with all its parts."""

    id: str
    researcher: str
    researcher_email: str | None
    language: str
    title: str
    description: str
    query: dict[str, Any]
    question: str
    purpose: dict[str, Any]
    created_at: str
    negotiator_link: str | None = None
    parts: tuple[StoredPart, ...] = ()


@dataclass(frozen=True)
class RequestEvent:
    """One line of a part's log: a state change (from, to), a message, or both."""

    request_id: str
    biobank_id: str
    at: str
    actor: str
    actor_role: str
    from_state: str | None = None
    to_state: str | None = None
    message: str | None = None
    id: int = field(default=0)


@dataclass(frozen=True)
class Notification:
    """A message to send: `email` to an address or `webhook` to a URL."""

    channel: str
    target: str
    subject: str
    body: str


@dataclass(frozen=True)
class OutboxItem:
    """A notification in the outbox and how often it was tried."""

    id: int
    notification: Notification
    attempts: int
    created_at: str
    delivered_at: str | None = None
    failed_at: str | None = None
    last_error: str | None = None
    due_at: float = 0.0  # epoch seconds of the next attempt


def _part(row: Row[Any]) -> StoredPart:
    values = row._asdict()
    values["consent"] = json.loads(values["consent"])
    return StoredPart(**values)


def _request(row: Row[Any], parts: Iterable[StoredPart]) -> StoredRequest:
    values = row._asdict()
    for name in ("query", "purpose"):
        values[name] = json.loads(values[name])
    return StoredRequest(**values, parts=tuple(p for p in parts if p.request_id == row.id))


def _event_values(event: RequestEvent) -> dict[str, Any]:
    return {
        "request_id": event.request_id,
        "biobank_id": event.biobank_id,
        "at": event.at,
        "actor": event.actor,
        "actor_role": event.actor_role,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "message": event.message,
    }


def _item(row: Row[Any]) -> OutboxItem:
    return OutboxItem(
        row.id,
        Notification(row.channel, row.target, row.subject, row.body),
        row.attempts,
        row.created_at,
        row.delivered_at,
        row.failed_at,
        row.last_error,
        row.due_at,
    )


class AccessRequestRecords:
    """Requests, parts and their append-only log."""

    def __init__(self, engine: Engine, outbox: NotificationOutbox) -> None:
        self.engine = engine
        self.outbox = outbox

    def create(
        self, request: StoredRequest, events: Sequence[RequestEvent], notes: Sequence[Notification]
    ) -> None:
        """Write a new request with its parts, their first log rows and notifications."""
        with writing(self.engine) as db:
            db.execute(
                insert(access_requests).values(
                    id=request.id,
                    researcher=request.researcher,
                    researcher_email=request.researcher_email,
                    language=request.language,
                    title=request.title,
                    description=request.description,
                    query=stored_json(request.query),
                    question=request.question,
                    purpose=stored_json(request.purpose),
                    created_at=request.created_at,
                    negotiator_link=request.negotiator_link,
                )
            )
            for part in request.parts:
                db.execute(
                    insert(access_request_parts).values(
                        request_id=request.id,
                        biobank_id=part.biobank_id,
                        state=part.state,
                        consent=stored_json(part.consent),
                        updated_at=part.updated_at,
                    )
                )
            for event in events:
                db.execute(insert(access_request_events).values(**_event_values(event)))
            self.outbox.enqueue(db, notes, request.created_at)

    def get(self, request_id: str) -> StoredRequest | None:
        """A request with its parts, or None."""
        with reading(self.engine) as db:
            row = db.execute(
                select(access_requests).where(access_requests.c.id == request_id)
            ).first()
            if row is None:
                return None
            parts = db.execute(
                select(access_request_parts)
                .where(access_request_parts.c.request_id == request_id)
                .order_by(access_request_parts.c.biobank_id)
            ).all()
        return _request(row, (_part(p) for p in parts))

    def by_researcher(self, researcher: str) -> list[StoredRequest]:
        """A researcher's requests, newest first."""
        query = (
            select(access_requests)
            .where(access_requests.c.researcher == researcher)
            .order_by(access_requests.c.created_at.desc(), access_requests.c.id)
        )
        return self._with_parts(query)

    def for_biobanks(self, biobank_ids: Iterable[str]) -> list[StoredRequest]:
        """Requests with a part at any of the biobanks, newest first (all their parts)."""
        ids = sorted(set(biobank_ids))
        if not ids:
            return []
        having = select(access_request_parts.c.request_id).where(
            access_request_parts.c.biobank_id.in_(ids)
        )
        query = (
            select(access_requests)
            .where(access_requests.c.id.in_(having))
            .order_by(access_requests.c.created_at.desc(), access_requests.c.id)
        )
        return self._with_parts(query)

    def _with_parts(self, query: Any) -> list[StoredRequest]:
        with reading(self.engine) as db:
            rows = db.execute(query).all()
            if not rows:
                return []
            parts = [
                _part(p)
                for p in db.execute(
                    select(access_request_parts)
                    .where(access_request_parts.c.request_id.in_([r.id for r in rows]))
                    .order_by(access_request_parts.c.biobank_id)
                ).all()
            ]
        return [_request(row, parts) for row in rows]

    def move(self, event: RequestEvent, notes: Sequence[Notification]) -> bool:
        """Move a part from `event.from_state` to `event.to_state` with its log row and
        notifications; False (nothing written) when the part is no longer in `from_state`."""
        with writing(self.engine) as db:
            moved = db.execute(
                update(access_request_parts)
                .where(
                    access_request_parts.c.request_id == event.request_id,
                    access_request_parts.c.biobank_id == event.biobank_id,
                    access_request_parts.c.state == event.from_state,
                )
                .values(state=event.to_state, updated_at=event.at)
            ).rowcount
            if moved != 1:
                return False
            db.execute(insert(access_request_events).values(**_event_values(event)))
            self.outbox.enqueue(db, notes, event.at)
        return True

    def post(self, event: RequestEvent, notes: Sequence[Notification]) -> int:
        """Append a message to a part's thread (no state change); its log row's id."""
        with writing(self.engine) as db:
            row_id = db.execute(
                insert(access_request_events)
                .values(**_event_values(event))
                .returning(access_request_events.c.id)
            ).scalar_one()
            self.outbox.enqueue(db, notes, event.at)
        return int(row_id)

    def events(self, request_id: str) -> list[RequestEvent]:
        """Every log row of a request, oldest first."""
        with reading(self.engine) as db:
            rows = db.execute(
                select(access_request_events)
                .where(access_request_events.c.request_id == request_id)
                .order_by(access_request_events.c.id)
            ).all()
        return [RequestEvent(**row._asdict()) for row in rows]

    def set_negotiator_link(self, request_id: str, link: str) -> None:
        """Record where the Negotiator took the request over."""
        with writing(self.engine) as db:
            db.execute(
                update(access_requests)
                .where(access_requests.c.id == request_id)
                .values(negotiator_link=link)
            )


class NotificationOutbox:
    """Notifications waiting to be delivered, claimed by one deliverer at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def enqueue(self, db: Connection, notes: Sequence[Notification], at: str) -> None:
        """Add notifications inside the caller's transaction, due at once."""
        for note in notes:
            db.execute(
                insert(notification_outbox).values(
                    channel=note.channel,
                    target=note.target,
                    subject=note.subject,
                    body=note.body,
                    created_at=at,
                    attempts=0,
                    due_at=0.0,
                )
            )

    def claim(self, now: float, lease: float, limit: int) -> list[OutboxItem]:
        """Up to `limit` due notifications, each claimed for `lease` seconds by this caller
        only (a deliverer that dies lets its claims run out; another takes them then)."""
        open_rows = and_(
            notification_outbox.c.delivered_at.is_(None),
            notification_outbox.c.failed_at.is_(None),
            notification_outbox.c.due_at <= now,
            or_(
                notification_outbox.c.claimed_until.is_(None),
                notification_outbox.c.claimed_until < now,
            ),
        )
        claimed = []
        with writing(self.engine) as db:
            rows = db.execute(
                select(notification_outbox)
                .where(open_rows)
                .order_by(notification_outbox.c.id)
                .limit(limit)
            ).all()
            for row in rows:
                taken = db.execute(
                    update(notification_outbox)
                    .where(notification_outbox.c.id == row.id, open_rows)
                    .values(claimed_until=now + lease)
                ).rowcount
                if taken == 1:
                    claimed.append(_item(row))
        return claimed

    def delivered(self, item_id: int, at: str) -> None:
        """Mark a notification sent."""
        self._finish(item_id, delivered_at=at, claimed_until=None)

    def retry(self, item_id: int, error: str, due_at: float, *, failed_at: str | None) -> None:
        """Count a failed attempt: due again at `due_at`, or given up when `failed_at`."""
        with writing(self.engine) as db:
            db.execute(
                update(notification_outbox)
                .where(notification_outbox.c.id == item_id)
                .values(
                    attempts=notification_outbox.c.attempts + 1,
                    last_error=error[:500],
                    due_at=due_at,
                    claimed_until=None,
                    failed_at=failed_at,
                )
            )

    def _finish(self, item_id: int, **values: Any) -> None:
        with writing(self.engine) as db:
            db.execute(
                update(notification_outbox)
                .where(notification_outbox.c.id == item_id)
                .values(attempts=notification_outbox.c.attempts + 1, **values)
            )

    def items(self) -> list[OutboxItem]:
        """Every notification, oldest first (for operators and tests)."""
        with reading(self.engine) as db:
            rows = db.execute(select(notification_outbox).order_by(notification_outbox.c.id))
            return [_item(row) for row in rows]
