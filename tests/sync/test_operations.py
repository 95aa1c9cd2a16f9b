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
    # When the run started nothing is due (not "a second later": a quarter hour may begin
    # within it); at the next quarter hour the incremental one is, once, however many
    # quarters a stopped worker missed.
    assert due(schedules, state, started) == {}
    later = started + dt.timedelta(hours=5)
    assert due(schedules, state, later).get("bb1") in ("incremental", "full")
    assert Schedule("bb1", "full", "0 3 * * *").last_tick(at) == dt.datetime(
        2026, 5, 1, 3, 0, tzinfo=dt.UTC
    )


@pytest.mark.parametrize(
    ("at", "last", "next_"),
    [
        ("10:59:59.500000", "10:00:00", "11:00:00"),  # the last second before a tick
        ("10:59:59", "10:00:00", "11:00:00"),
        ("11:00:00", "11:00:00", "12:00:00"),  # a tick is its own latest
        ("11:00:00.250000", "11:00:00", "12:00:00"),
    ],
)
def test_the_latest_tick_is_never_after_the_moment_asked(at: str, last: str, next_: str) -> None:
    hourly = Schedule("bb1", "auto", "0 * * * *")
    moment = dt.datetime.fromisoformat(f"2026-12-07T{at}+00:00")
    assert hourly.last_tick(moment) == dt.datetime.fromisoformat(f"2026-12-07T{last}+00:00")
    assert hourly.next_tick(moment) == dt.datetime.fromisoformat(f"2026-12-07T{next_}+00:00")
    assert hourly.last_tick(moment) <= moment < hourly.next_tick(moment)


def test_a_bad_cron_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump({"biobanks": [{"id": "bb1", "schedule": "every day"}]}))
    with pytest.raises(ScheduleError, match=r"bb1: schedule\.auto: 'every day'"):
        read_schedules(path)


REQUESTS = """
query($biobank: ID) {
  syncRequests(biobank: $biobank) {
    requestId biobankId state takenAt run { outcome triggeredBy }
  }
  syncSchedules(biobank: $biobank) { biobankId mode cron nextAt lastAt }
}"""


def requested(client: Any, who: str, biobank: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = client.post(
        "/graphql",
        json={"query": REQUESTS, "variables": {"biobank": biobank}},
        headers=headers(who),
    ).get_json()
    return body


def test_requested_syncs_move_from_queued_to_running_to_finished_and_schedules_show(
    federation: Federation,
) -> None:
    federation.biobank("bb1").donor("D1").sample("S1", "D1")
    federation.biobank("bb2").donor("D1").sample("S1", "D1")
    path = federation.write()
    document = yaml.safe_load(path.read_text())
    document["biobanks"][0]["schedule"] = {"incremental": "*/15 * * * *", "full": "0 3 * * 0"}
    document["biobanks"][1]["schedule"] = "0 * * * *"
    path.write_text(yaml.safe_dump(document))
    app = create_app({"settings": with_test_access(federation.settings), "TESTING": True})
    client = app.test_client()
    queued = post(client, {"biobank": "bb1"}, "bb1_admin")["data"]["startSync"]

    answer = requested(client, "bb1_admin")["data"]
    assert [
        (r["requestId"], r["state"], r["takenAt"], r["run"]) for r in answer["syncRequests"]
    ] == [(queued["requestId"], "QUEUED", None, None)]
    # An admin sees their own biobanks' schedules only; an operator sees every one.
    assert [(s["biobankId"], s["mode"], s["cron"]) for s in answer["syncSchedules"]] == [
        ("bb1", "full", "0 3 * * 0"),  # as in the file (safe_dump sorts the keys)
        ("bb1", "incremental", "*/15 * * * *"),
    ]
    for schedule in answer["syncSchedules"]:
        assert schedule["lastAt"] < schedule["nextAt"]
    everyone = requested(client, "operator")["data"]
    assert {s["biobankId"] for s in everyone["syncSchedules"]} == {"bb1", "bb2"}
    assert len(everyone["syncRequests"]) == 1
    other = requested(client, "bb2_admin")["data"]
    assert other["syncRequests"] == [] and [s["biobankId"] for s in other["syncSchedules"]] == [
        "bb2"
    ]
    refused = requested(client, "bb2_admin", "bb1")
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    # The worker takes it and runs it: finished, with the run's outcome.
    SyncWorker(federation.settings, Runtime).run(poll=0.1, once=True)
    [done] = requested(client, "bb1_admin")["data"]["syncRequests"]
    assert (done["requestId"], done["state"], done["run"]) == (
        queued["requestId"],
        "FINISHED",
        {"outcome": "SUCCEEDED", "triggeredBy": "request:admin@bb1.example"},
    )
    # Asked again and taken by a worker that has not recorded its run yet: running.
    again = post(client, {"biobank": "bb1"}, "bb1_admin")["data"]["startSync"]
    assert not again["alreadyQueued"]
    assert [r.id for r in SyncQueue(federation.runtime.state).claim()] == [int(again["requestId"])]
    latest = requested(client, "bb1_admin")["data"]["syncRequests"]
    assert [(r["state"], r["run"]) for r in latest] == [
        ("RUNNING", None),
        ("FINISHED", done["run"]),
    ]
