"""Saved-search alerts: a publish that adds matching samples raises one alert, one that
adds none raises none, and an alert for a role with a threshold never states a count a
fresh search would withhold.

The network is the shared test data (tests/gateway/conftest.py) under a policy with a
minimum of 3 donors for signed-in researchers; `bb1_approved` is approved at bb1 and sees
exact counts there. C50 in female donors: bb1 D1 (S1, S2), D2 (S3, S8) = 2 donors, 4
samples; bb2 E1 (T1, T2) = 1 donor, 2 samples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from federation.gateway import create_app
from federation.runtime import Runtime
from federation.sync.run import sync_biobank
from tests.gateway.access import headers, with_test_access
from tests.gateway.conftest import graphql, make_settings, only_error, write_network
from tests.requests.api import SLOW_MACHINE

POLICY = {
    "anonymous": {"granularity": "count", "min_count": 3, "rounding": 1, "noise": 0},
    "registered": {"granularity": "count", "min_count": 3, "rounding": 1, "noise": 0},
    "approved": {"granularity": "record", "min_count": 1, "rounding": 1, "noise": 0},
}
QUESTION = {"diseases": ["C50"], "sexes": ["FEMALE"]}
SAVE = """
mutation($q: SampleQuery!) { saveSearch(name: "C50 women", query: $q) { id name query } }"""
ALERTS = """
{ savedSearchAlerts { savedSearchId biobank { id } generation
  donors { value precision } samples { value precision } } }"""
SEARCH = """
query($q: SampleQuery!) {
  search(query: $q) { byBiobank { biobank { id } donors { value precision }
  samples { value precision } } }
}"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    network = write_network(tmp_path)
    document = yaml.safe_load(network.read_text())
    document["default_disclosure"] = POLICY
    network.write_text(yaml.safe_dump(document, allow_unicode=True))
    settings = make_settings(tmp_path, network)
    app = create_app({"settings": with_test_access(settings, **SLOW_MACHINE), "TESTING": True})
    runtime = app.extensions["biofed"]
    for source in runtime.network().biobanks:
        publish(runtime, source.biobank.id)
    runtime.store  # noqa: B018 -- opened before the first request
    yield app
    runtime.deliverer.stop()
    runtime.backend.close()


def publish(runtime: Runtime, biobank_id: str) -> None:
    source = runtime.network().get(biobank_id)
    sync_biobank(source, runtime.backend, runtime.state, locks_dir=runtime.settings.locks_dir)


def add_rows(root: Path, table: str, *rows: str) -> None:
    path = root / table
    path.write_text(path.read_text(encoding="utf-8") + "".join(f"{r}\n" for r in rows))


def alerts(client: FlaskClient, who: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = graphql(client, ALERTS, headers=headers(who))["data"][
        "savedSearchAlerts"
    ]
    return found


def test_alerts_follow_what_a_fresh_search_releases(app: Flask) -> None:
    client = app.test_client()
    runtime: Runtime = app.extensions["biofed"]
    bb1 = runtime.network().get("bb1").base_dir / "bb1"
    bb2 = runtime.network().get("bb2").base_dir / "bb2"
    saved = {}
    for who in ("researcher", "bb1_approved"):
        body = graphql(client, SAVE, {"q": QUESTION}, headers=headers(who))
        assert "errors" not in body, body
        saved[who] = body["data"]["saveSearch"]
    stored = json.loads(saved["researcher"]["query"])
    assert (stored["diseases"], stored["sexes"]) == (["C50"], ["FEMALE"])
    assert only_error(graphql(client, SAVE, {"q": QUESTION}))["extensions"]["code"] == (
        "UNAUTHENTICATED"
    )
    # Saving started this process's deliverer, which checks saved searches every few
    # seconds: stopped here so that each publish below is checked by the test's own call
    # (racing it, the deliverer recorded the alerts first on a loaded machine).
    runtime.deliverer.stop()

    # A publish that adds no matching sample: no alert.
    add_rows(bb1, "samples.csv", "S20,C2,D3,PLASMA,2023-01-01,,2026-02-01T00:00:00+00:00")
    publish(runtime, "bb1")
    assert runtime.saved_searches.check_all() == 0

    # A matching sample for an existing donor: the approved researcher sees 5 samples and
    # gets one alert; the registered one still sees 2 donors withheld, so none.
    add_rows(bb1, "samples.csv", "S10,C1,D1,PLASMA,2023-01-01,,2026-02-01T00:00:00+00:00")
    publish(runtime, "bb1")
    assert runtime.saved_searches.check_all() == 1
    assert alerts(client, "researcher") == []
    [alert] = alerts(client, "bb1_approved")
    assert (alert["biobank"]["id"], alert["samples"]) == ("bb1", {"value": 5, "precision": "EXACT"})
    assert alert["savedSearchId"] == saved["bb1_approved"]["id"]
    assert runtime.saved_searches.check_all() == 0  # the same publish never alerts twice

    # A third donor: now 3 donors, released to the registered researcher too.
    add_rows(bb1, "donors.csv", "D8,FEMALE,1985,C50.2,,false")
    add_rows(bb1, "samples.csv", "S11,C1,D8,SERUM,2023-02-01,,2026-02-01T00:00:00+00:00")
    publish(runtime, "bb1")
    assert runtime.saved_searches.check_all() == 2
    [alert] = alerts(client, "researcher")
    fresh = graphql(client, SEARCH, {"q": QUESTION}, headers=headers("researcher"))
    [row] = [r for r in fresh["data"]["search"]["byBiobank"] if r["biobank"]["id"] == "bb1"]
    assert (alert["donors"], alert["samples"]) == (row["donors"], row["samples"])
    assert alert["samples"] == {"value": 6, "precision": "EXACT"}

    # bb2 gains a sample of its single donor: below the threshold for both, so no alert,
    # and nothing about bb2 is stated anywhere.
    add_rows(bb2, "samples.csv", "T5,R1,E1,PLASMA,2023-01-01,,2026-02-01T00:00:00+00:00")
    publish(runtime, "bb2")
    assert runtime.saved_searches.check_all() == 0
    for who in ("researcher", "bb1_approved"):
        assert "bb2" not in [a["biobank"]["id"] for a in alerts(client, who)]

    # Each alert was also queued as an e-mail to its owner.
    mails = [
        i.notification.target
        for i in runtime.store.outbox.items()
        if i.notification.subject == "[biofed] new samples for 'C50 women'"
    ]
    assert sorted(mails) == [
        "approved@university.example",
        "approved@university.example",
        "researcher@university.example",
    ]
