"""The access request tables on both engines: a move is a compare-and-set, the log is
append-only, the outbox hands a notification to one claimant at a time, and a saved
search's check is recorded once."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from federation.state.access_requests import (
    Notification,
    RequestEvent,
    StoredPart,
    StoredRequest,
)
from federation.state.saved_searches import Alert, SavedSearch
from federation.state.store import StateStore

AT = "2026-12-07T06:00:00.000+00:00"


def request(request_id: str = "ar-1") -> StoredRequest:
    parts = tuple(
        StoredPart(request_id, b, "submitted", {"role": "registered"}, AT) for b in ("bb1", "bb2")
    )
    return StoredRequest(
        request_id,
        "api_key:r@x.org",
        "r@x.org",
        "ja",
        "題名",
        "説明",
        {"diseases": ["C50"]},
        "質問",
        {"kind": "disease"},
        AT,
        None,
        parts,
    )


def submitted(part: StoredPart) -> RequestEvent:
    return RequestEvent(
        part.request_id, part.biobank_id, AT, "api_key:r@x.org", "researcher", None, "submitted"
    )


def test_a_request_round_trips_and_moves_once(store: StateStore) -> None:
    records = store.access_requests
    new = request()
    mail = Notification("email", "a@bb1.org", "new", "body")
    records.create(new, [submitted(p) for p in new.parts], [mail])
    assert records.get("ar-1") == new
    assert [r.id for r in records.by_researcher("api_key:r@x.org")] == ["ar-1"]
    assert [r.id for r in records.for_biobanks(["bb2"])] == ["ar-1"]
    assert records.for_biobanks(["bb9"]) == []
    move = RequestEvent(
        "ar-1", "bb1", AT, "api_key:a@bb1", "biobank_admin", "submitted", "under_review"
    )
    assert records.move(move, []) is True
    assert records.move(move, []) is False  # no longer submitted: nothing written
    stored = records.get("ar-1")
    assert stored is not None
    assert [(p.biobank_id, p.state) for p in stored.parts] == [
        ("bb1", "under_review"),
        ("bb2", "submitted"),
    ]
    assert len(records.events("ar-1")) == 3
    with pytest.raises(DBAPIError, match="append-only"), store.write() as db:
        db.execute(text("DELETE FROM access_request_events"))
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), store.write() as db:
            db.execute(text("TRUNCATE access_request_events"))


def test_the_outbox_hands_each_notification_to_one_claimant(store: StateStore) -> None:
    with store.write() as db:
        store.outbox.enqueue(db, [Notification("webhook", "http://h/x", "e", "{}")], AT)
    first = store.outbox.claim(100.0, 60.0, 10)
    assert len(first) == 1
    assert store.outbox.claim(120.0, 60.0, 10) == []  # leased to the first claimant
    assert len(store.outbox.claim(161.0, 60.0, 10)) == 1  # the lease ran out
    store.outbox.retry(first[0].id, "HTTP 503", 500.0, failed_at=None)
    assert store.outbox.claim(499.0, 60.0, 10) == []
    [again] = store.outbox.claim(500.0, 60.0, 10)
    store.outbox.delivered(again.id, AT)
    assert store.outbox.claim(10_000.0, 60.0, 10) == []
    [item] = store.outbox.items()
    assert (item.attempts, item.delivered_at, item.last_error) == (2, AT, "HTTP 503")


def test_a_saved_search_check_is_recorded_once(store: StateStore) -> None:
    saved = SavedSearch(
        "ss-1",
        "api_key:r@x.org",
        "r@x.org",
        {"subject": "r@x.org"},
        "C50",
        {"diseases": ["C50"]},
        None,
        "en",
        AT,
        {"bb1": "g1"},
        {"bb1": {"samples": {"value": 4}}},
    )
    store.saved_searches.save(saved)
    assert store.saved_searches.of_owner("api_key:r@x.org") == [saved]
    alert = Alert("ss-1", saved.owner, AT, "bb1", "g2", {"samples": {"value": 5}})
    checked = ({"bb1": "g2"}, {"bb1": {"samples": {"value": 5}}})
    assert store.saved_searches.advance(saved, checked, [alert], []) is True
    assert store.saved_searches.advance(saved, checked, [alert], []) is False  # already moved
    assert [a.released for a in store.saved_searches.alerts(saved.owner, 10)] == [
        {"samples": {"value": 5}}
    ]
    assert store.saved_searches.delete("api_key:someone-else", "ss-1") is False
    assert store.saved_searches.delete(saved.owner, "ss-1") is True
    assert store.saved_searches.alerts(saved.owner, 10) == []
