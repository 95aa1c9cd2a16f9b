"""Operations: an admin's startSync request, schedules, and the worker that runs both."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.gateway import create_app
from federation.runtime import Runtime
from federation.sync.schedule import Schedule, ScheduleError, SyncQueue, due, read_schedules
from federation.sync.worker import SyncWorker
from tests.conftest import Federation
from tests.gateway.access import headers, with_test_access

START = """
mutation($biobank: ID!) {
  startSync(biobank: $biobank) { requestId biobankId mode requestedBy alreadyQueued }
}"""


def post(client: Any, variables: dict[str, Any], who: str | None) -> dict[str, Any]:
    response = client.post(
        "/graphql",
        json={"query": START, "variables": variables},
        headers=headers(who) if who else None,
    )
    body: dict[str, Any] = response.get_json()
    return body


def test_a_biobank_admin_queues_a_sync_that_the_worker_runs(federation: Federation) -> None:
    federation.biobank("bb1").donor("D1").sample("S1", "D1")
    federation.biobank("bb2").donor("D1").sample("S1", "D1")
    federation.write()
    app = create_app({"settings": with_test_access(federation.settings), "TESTING": True})
    client = app.test_client()

    denied = post(client, {"biobank": "bb1"}, "bb2_admin")
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert denied["data"]["startSync"] is None
    anonymous = post(client, {"biobank": "bb1"}, None)
    assert anonymous["errors"][0]["extensions"]["code"] in ("UNAUTHENTICATED", "FORBIDDEN")

    first = post(client, {"biobank": "bb1"}, "bb1_admin")["data"]["startSync"]
    again = post(client, {"biobank": "bb1"}, "bb1_admin")["data"]["startSync"]
    assert first["biobankId"] == "bb1" and first["requestedBy"] == "admin@bb1.example"
    assert (again["requestId"], again["alreadyQueued"]) == (first["requestId"], True)

    SyncWorker(federation.settings, Runtime).run(poll=0.1, once=True)
    runs = federation.runtime.state.runs()
    assert [(r.biobank_id, r.outcome, r.triggered_by) for r in runs] == [
        ("bb1", "succeeded", "request:admin@bb1.example")
    ]
    assert SyncQueue(federation.runtime.state).pending() == []


def test_schedules_run_once_per_tick_even_after_missed_ones(federation: Federation) -> None:
    federation.biobank("bb1").donor("D1").sample("S1", "D1")
    path = federation.write()
    document = yaml.safe_load(path.read_text())
    document["biobanks"][0]["schedule"] = {"incremental": "*/15 * * * *", "full": "0 3 * * *"}
    path.write_text(yaml.safe_dump(document))
    schedules = read_schedules(path)
    state = federation.runtime.state
    at = dt.datetime(2026, 5, 1, 12, 7, tzinfo=dt.UTC)
    assert due(schedules, state, at) == {"bb1": "full"}  # never synced: everything is due
    run = federation.sync("bb1")
    started = dt.datetime.fromisoformat(run.started_at)
    # Just after the run nothing is due; at the next quarter hour the incremental one is,
    # once, however many quarters a stopped worker missed.
    assert due(schedules, state, started + dt.timedelta(seconds=1)) == {}
    later = started + dt.timedelta(hours=5)
    assert due(schedules, state, later).get("bb1") in ("incremental", "full")
    assert Schedule("bb1", "full", "0 3 * * *").last_tick(at) == dt.datetime(
        2026, 5, 1, 3, 0, tzinfo=dt.UTC
    )


def test_a_bad_cron_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump({"biobanks": [{"id": "bb1", "schedule": "every day"}]}))
    with pytest.raises(ScheduleError, match=r"bb1: schedule\.auto: 'every day'"):
        read_schedules(path)
