"""Saved searches and their alerts in the store.

A check after a publish is a compare-and-set on the generations a saved search was last
checked against: when several processes notice the same publish, exactly one records its
alerts (and their e-mails), the others find the row already moved on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row, delete, insert, select, update

from federation.state.access_requests import Notification, NotificationOutbox
from federation.state.database import reading, stored_json, writing
from federation.state.schema import saved_search_alerts, saved_searches


@dataclass(frozen=True)
class SavedSearch:
    """A saved question, whose it is, and what it was last checked against."""

    id: str
    owner: str
    owner_email: str | None
    identity: dict[str, Any]
    name: str
    query: dict[str, Any]
    purpose: dict[str, Any] | None
    language: str
    created_at: str
    generations: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    """New matching samples at a biobank after a publish, as a fresh search released them."""

    search_id: str
    owner: str
    at: str
    biobank_id: str
    generation: str
    released: dict[str, Any]
    id: int = 0


def _search(row: Row[Any]) -> SavedSearch:
    values = row._asdict()
    for name in ("identity", "query", "purpose", "generations", "baseline"):
        if values[name] is not None:
            values[name] = json.loads(values[name])
    return SavedSearch(**values)


def _alert(row: Row[Any]) -> Alert:
    values = row._asdict()
    values["released"] = json.loads(values["released"])
    return Alert(**values)


class SavedSearches:
    """Saved searches by owner, and the alerts their checks recorded."""

    def __init__(self, engine: Engine, outbox: NotificationOutbox) -> None:
        self.engine = engine
        self.outbox = outbox

    def save(self, search: SavedSearch) -> None:
        """Store a new saved search."""
        with writing(self.engine) as db:
            db.execute(
                insert(saved_searches).values(
                    id=search.id,
                    owner=search.owner,
                    owner_email=search.owner_email,
                    identity=stored_json(search.identity),
                    name=search.name,
                    query=stored_json(search.query),
                    purpose=None if search.purpose is None else stored_json(search.purpose),
                    language=search.language,
                    created_at=search.created_at,
                    generations=stored_json(search.generations),
                    baseline=stored_json(search.baseline),
                )
            )

    def of_owner(self, owner: str) -> list[SavedSearch]:
        """An owner's saved searches, newest first."""
        with reading(self.engine) as db:
            rows = db.execute(
                select(saved_searches)
                .where(saved_searches.c.owner == owner)
                .order_by(saved_searches.c.created_at.desc(), saved_searches.c.id)
            ).all()
        return [_search(r) for r in rows]

    def all(self) -> list[SavedSearch]:
        """Every saved search (for the checks after a publish)."""
        with reading(self.engine) as db:
            rows = db.execute(select(saved_searches).order_by(saved_searches.c.id)).all()
        return [_search(r) for r in rows]

    def delete(self, owner: str, search_id: str) -> bool:
        """Delete an owner's saved search and its alerts; False when they have none by id."""
        with writing(self.engine) as db:
            gone = db.execute(
                delete(saved_searches).where(
                    saved_searches.c.id == search_id, saved_searches.c.owner == owner
                )
            ).rowcount
            if gone:
                db.execute(
                    delete(saved_search_alerts).where(saved_search_alerts.c.search_id == search_id)
                )
        return bool(gone)

    def advance(
        self,
        search: SavedSearch,
        checked: tuple[dict[str, str], dict[str, Any]],
        alerts: Sequence[Alert],
        notes: Sequence[Notification],
    ) -> bool:
        """Move a search from the generations it was checked against to `checked`
        (generations, baseline) with its alerts and notifications; False when another
        process did first."""
        generations, baseline = checked
        with writing(self.engine) as db:
            moved = db.execute(
                update(saved_searches)
                .where(
                    saved_searches.c.id == search.id,
                    saved_searches.c.generations == stored_json(search.generations),
                )
                .values(generations=stored_json(generations), baseline=stored_json(baseline))
            ).rowcount
            if moved != 1:
                return False
            for alert in alerts:
                db.execute(
                    insert(saved_search_alerts).values(
                        search_id=alert.search_id,
                        owner=alert.owner,
                        at=alert.at,
                        biobank_id=alert.biobank_id,
                        generation=alert.generation,
                        released=stored_json(alert.released),
                    )
                )
            if alerts:
                self.outbox.enqueue(db, notes, alerts[0].at)
        return True

    def alerts(self, owner: str, first: int) -> list[Alert]:
        """An owner's most recent alerts, newest first."""
        with reading(self.engine) as db:
            rows = db.execute(
                select(saved_search_alerts)
                .where(saved_search_alerts.c.owner == owner)
                .order_by(saved_search_alerts.c.id.desc())
                .limit(first)
            ).all()
        return [_alert(r) for r in rows]
