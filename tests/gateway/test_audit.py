"""The audit log: one row per answered search, never the records or the numbers; readable
by network operators only; append-only; and a search that cannot be audited is not answered."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from federation.cli import main
from federation.consent.purpose import ResearchPurpose
from federation.disclosure.roles import Identity
from federation.gateway.context import GatewayContext
from federation.runtime import Runtime
from federation.search.audit import AuditLog, AuditUnavailable
from federation.search.query import PageRequest, SampleQuery
from federation.settings import Settings
from federation.state.database import STATE_FILE
from federation.state.store import open_state_store
from tests.gateway.access import KEYS, headers
from tests.gateway.conftest import graphql, only_error

APPROVED = Identity(
    subject="carol@university.example",
    authenticated=True,
    approved_for=frozenset({"bb1"}),
    via="oidc",
)
AUDIT = """query($first: Int, $after: String, $subject: String) {
  auditLog(first: $first, after: $after, subject: $subject) {
    nodes { id at subject via roles adminOf approvedFor clientIp filters purpose
            released { biobankId donors samples generation } recordsReturned recordCount }
    pageInfo { endCursor hasNextPage }
  }
}"""


def store_log(data_dir: Path) -> AuditLog:
    """An audit log in the embedded state store of `data_dir` (state.db)."""
    return AuditLog(open_state_store(None, data_dir).audit)


def searched(runtime: Runtime, log: AuditLog, identity: Identity = APPROVED) -> int:
    """Answer one real search through the search service, audited into `log` the way every
    entry point's search is; the new row's id."""
    query = SampleQuery.parse({"diseases": ["C50"], "sexes": ["FEMALE", "FEMALE"]})
    purpose = ResearchPurpose.parse({"kind": "disease", "diseases": ["C50.9"]})
    runtime.search.audited(log, "192.0.2.7").search(
        query, identity=identity, purpose=purpose, facets=(), page=PageRequest(3)
    )
    return log.entries(first=1).entries[0].id


def test_a_search_is_recorded_without_records_or_numbers(runtime: Runtime, tmp_path: Path) -> None:
    log = store_log(tmp_path)
    searched(runtime, log)
    (entry,) = log.entries().entries
    assert (entry.subject, entry.via, entry.client_ip) == (
        "carol@university.example",
        "oidc",
        "192.0.2.7",
    )
    assert entry.roles == ("registered", "approved") and entry.approved_for == ("bb1",)
    assert entry.filters == {"diseases": ["C50"], "sexes": ["FEMALE"]}  # normalised
    assert entry.purpose is not None and entry.purpose["kind"] == "disease"
    assert entry.purpose["diseases"] == ["C50.9"]
    assert {r.biobank_id for r in entry.released} == {"bb1", "bb2"}
    for released in entry.released:
        assert released.donors in ("exact", "rounded", "noised", "below_threshold", "hidden")
        assert released.generation
    assert entry.records_returned and entry.record_count == 3
    at = dt.datetime.fromisoformat(entry.at)
    assert abs((dt.datetime.now(dt.UTC) - at).total_seconds()) < 60
    # The row holds no sample, donor or count: only what was asked and how it was released.
    row = sqlite3.connect(tmp_path / STATE_FILE).execute("SELECT * FROM audit_searches").fetchone()
    text = json.dumps(row)
    for forbidden in ("S1", "S3", "S8", "T1", "D1", "E1", "PLASMA"):
        # As a whole word: "T1" is inside every timestamp from 10:00 to 19:59.
        assert not re.search(rf"\b{forbidden}\b", text), forbidden


def test_the_log_is_append_only(runtime: Runtime, tmp_path: Path) -> None:
    log = store_log(tmp_path)
    searched(runtime, log)
    db = sqlite3.connect(tmp_path / STATE_FILE)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit_searches SET subject = 'someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit_searches")
    assert db.execute("SELECT count(*) FROM audit_searches").fetchone() == (1,)


def test_a_lone_surrogate_is_recorded_escaped(runtime: Runtime, tmp_path: Path) -> None:
    # A subject from a token claim is not checked like a query argument; it must not make
    # the insert fail (an encoding error there would refuse the search as an outage).
    log = store_log(tmp_path)
    who = Identity(subject="mallory\ud800@example.org", authenticated=True, via="oidc")
    searched(runtime, log, who)
    (entry,) = log.entries().entries
    assert entry.subject == "mallory\\ud800@example.org"


def test_an_unwritable_log_fails_the_search_closed(runtime: Runtime, tmp_path: Path) -> None:
    log = store_log(tmp_path)
    log.trail.engine.dispose()
    for path in tmp_path.glob(f"{STATE_FILE}*"):
        path.unlink()
    (tmp_path / STATE_FILE).mkdir()  # a folder where the database should be
    with pytest.raises(AuditUnavailable):
        searched(runtime, log)
    with pytest.raises(AuditUnavailable):
        # A gateway request without an audit log at all answers no search.
        GatewayContext(runtime).search.search(SampleQuery.parse({}), facets=())


# --- reading it ---------------------------------------------------------------------------


def audit_page(client: FlaskClient, who: dict[str, str], **variables: Any) -> dict[str, Any]:
    body = graphql(client, AUDIT, variables, headers=who)
    assert "errors" not in body, body
    page = body["data"]["auditLog"]
    assert isinstance(page, dict)
    return page


def test_only_operators_read_the_log(client: FlaskClient) -> None:
    assert only_error(graphql(client, AUDIT))["extensions"]["code"] == "UNAUTHENTICATED"
    for name in ("researcher", "bb1_approved", "bb1_admin"):
        error = only_error(graphql(client, AUDIT, headers=headers(name)))
        assert error["extensions"]["code"] == "FORBIDDEN", name
    audit_page(client, headers("operator"))


def test_operators_page_and_filter_the_log(app: Flask, client: FlaskClient) -> None:
    runtime = app.extensions["biofed"]
    log = app.extensions["biofed.audit"]
    subject = f"pager-{dt.datetime.now().timestamp()}@example.org"
    who = Identity(subject=subject, authenticated=True, via="api_key")
    ids = [searched(runtime, log, who) for _ in range(3)]
    first = audit_page(client, headers("operator"), first=2, subject=subject)
    assert [int(n["id"]) for n in first["nodes"]] == ids[::-1][:2]
    assert first["pageInfo"]["hasNextPage"] is True
    node = first["nodes"][0]
    assert json.loads(node["filters"]) == {"diseases": ["C50"], "sexes": ["FEMALE"]}
    assert json.loads(node["purpose"])["kind"] == "disease"
    assert node["roles"] == ["registered"] and node["recordCount"] == 3
    rest = audit_page(
        client, headers("operator"), first=2, subject=subject, after=first["pageInfo"]["endCursor"]
    )
    assert [int(n["id"]) for n in rest["nodes"]] == [ids[0]]
    assert rest["pageInfo"]["hasNextPage"] is False
    error = only_error(graphql(client, AUDIT, {"after": "nonsense"}, headers=headers("operator")))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "after"


def test_cli_prints_the_log(synced_settings: Settings, tmp_path: Path) -> None:
    runtime = Runtime(synced_settings)
    log = store_log(tmp_path)
    searched(runtime, log)
    runner = CliRunner()
    result = runner.invoke(main, ["--data-dir", str(tmp_path), "audit", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert "carol@university.example (oidc; registered,approved) from 192.0.2.7" in result.stdout
    assert '"diseases": ["C50"]' in result.stdout and "records=3" in result.stdout
    as_json = runner.invoke(main, ["--data-dir", str(tmp_path), "audit", "--json"])
    assert json.loads(as_json.stdout.splitlines()[0])["subject"] == "carol@university.example"
    empty = runner.invoke(main, ["--data-dir", str(tmp_path / "elsewhere"), "audit"])
    assert empty.exit_code == 0 and "no audit log" in empty.stderr
    assert not (tmp_path / "elsewhere" / STATE_FILE).exists()


# --- through the API, once the search resolver records (see docs/access.md) ---------------


def test_every_answered_search_is_audited(app: Flask, client: FlaskClient) -> None:
    log = app.extensions["biofed.audit"]
    before = {e.id for e in log.entries(first=100).entries}
    query = '{ search(query: {diseases: ["C50"]}) { donors { value } } }'
    assert "errors" not in graphql(client, query, headers=headers("bb1_approved"))
    assert "errors" not in graphql(client, query)
    new = [e for e in log.entries(first=100).entries if e.id not in before]
    assert [e.subject for e in new] == ["anonymous", KEYS["bb1_approved"].entry["subject"]]
    assert all(e.filters == {"diseases": ["C50"]} and not e.records_returned for e in new)


def test_an_unauditable_search_is_not_answered(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    log = store_log(tmp_path)
    log.trail.engine.dispose()
    for path in tmp_path.glob(f"{STATE_FILE}*"):
        path.unlink()
    (tmp_path / STATE_FILE).mkdir()  # a folder where the database should be
    app.extensions["biofed.audit"] = log
    body = graphql(client, "{ search(query: {}) { donors { value } } }")
    assert body["data"] is None
    assert only_error(body)["extensions"]["code"] == "BACKEND_UNAVAILABLE"
