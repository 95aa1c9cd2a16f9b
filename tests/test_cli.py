"""The `biofed` commands that inspect and operate a network (serve/demo run in tests/e2e)."""

from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner, Result

from federation.cli import main
from federation.search.audit import AuditLog
from federation.state.store import open_state_store
from tests.conftest import Federation
from tests.sync.test_sync import small_biobank


def run(fed: Federation, *args: str, catch_exceptions: bool = True) -> Result:
    """`biofed` with the federation's data folder and network file, whatever its exit."""
    folders = [
        "--data-dir",
        str(fed.settings.data_dir),
        "--network",
        str(fed.root / "network.yaml"),
    ]
    return CliRunner().invoke(main, [*folders, *args], catch_exceptions=catch_exceptions)


def invoke(fed: Federation, *args: str) -> str:
    """`biofed` that must succeed; its output."""
    result = run(fed, *args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_sync_runs_quarantine_and_search(federation: Federation) -> None:
    small_biobank(federation)
    federation.biobank("bb1").sample("S9", "D1", material="BLOOD_SPOT")
    federation.write()
    out = invoke(federation, "sync", "--all", "--no-progress")
    assert "bb1: succeeded" in out
    assert "read 7 (accepted 6, partly accepted 0, rejected 1), indexed 3" in out
    assert "#1 bb1 full succeeded" in invoke(federation, "runs")
    assert "samples S9 (samples.csv line 5): material_type: 'BLOOD_SPOT'" in invoke(
        federation, "quarantine", "--biobank", "bb1"
    )
    line = invoke(federation, "quarantine", "--biobank", "bb1", "--json").strip()
    assert json.loads(line)["payload"].startswith("{")
    answer = json.loads(invoke(federation, "search", "--disease", "C50", "--sex", "female"))
    assert answer == {"donors": 1, "samples": 2, "byBiobank": {"bb1": {"donors": 1, "samples": 2}}}


def test_cli_searches_are_audited_like_api_searches(federation: Federation) -> None:
    small_biobank(federation)
    federation.write()
    invoke(federation, "sync", "--all", "--no-progress")
    invoke(federation, "search", "--disease", "C50", "--sex", "female")
    store = open_state_store(None, federation.settings.data_dir)
    (entry,) = AuditLog(store.audit).entries().entries
    assert (entry.subject, entry.via, entry.client_ip) == ("cli", "cli", None)
    assert entry.roles == ("registered", "network_operator")
    assert entry.filters == {"diseases": ["C50"], "sexes": ["FEMALE"]}
    assert [r.biobank_id for r in entry.released] == ["bb1"]
    assert not entry.records_returned and entry.record_count == 0
    listed = invoke(federation, "audit", "--json")
    assert json.loads(listed.splitlines()[0])["id"] == entry.id
    # Fail-closed on the server too: a search that cannot be audited is not answered.
    # A store that refuses the insert, as a full disk would.
    with sqlite3.connect(federation.settings.state_path) as db:
        db.execute(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_searches "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    refused = run(federation, "search", "--disease", "C50")
    assert refused.exit_code == 1 and "cannot be recorded in the audit log" in refused.output
    assert '"donors"' not in refused.output


def test_bad_input_is_a_usage_error_naming_the_value(federation: Federation) -> None:
    small_biobank(federation)
    federation.write()
    runner = CliRunner()
    base = [
        "--data-dir",
        str(federation.settings.data_dir),
        "--network",
        str(federation.root / "network.yaml"),
    ]
    result = runner.invoke(main, [*base, "search", "--disease", "C50.99"])
    assert result.exit_code == 2
    assert "'C50.99' is not a WHO ICD-10 code" in result.output
    # A biobank id the network does not have is refused with the ids it has.
    result = runner.invoke(main, [*base, "search", "--disease", "C50", "--biobank", "bb9"])
    assert result.exit_code == 2
    assert "biobanks: unknown biobank; known: bb1 (got 'bb9')" in result.output
    result = runner.invoke(main, [*base, "sync", "--biobank", "nope"])
    assert result.exit_code == 2 and "no biobank 'nope'" in result.output
    result = runner.invoke(main, [*base, "sync"])
    assert result.exit_code == 2 and "give --all or --biobank" in result.output


def test_failed_sync_exits_non_zero(federation: Federation) -> None:
    small_biobank(federation)
    federation.write()
    (federation.biobank("bb1").folder / "donors.csv").unlink()
    result = run(federation, "sync", "--all", "--no-progress")
    assert result.exit_code == 1
    assert "bb1: FAILED" in result.output and "donors.csv does not exist" in result.output


def test_connectors_list_shows_the_builtin_through_entry_points() -> None:
    out = CliRunner().invoke(main, ["connectors", "list"]).output
    lines = {line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines()}
    assert lines["tabular"] == "connectors.tabular:TabularConnector"
    assert {"fhir", "beacon", "directory", "rest"} <= set(lines)


def test_parallel_sync_publishes_every_biobank_and_reports_each_failure(
    federation: Federation,
) -> None:
    for biobank_id in ("bb1", "bb2", "bb3"):
        small_biobank(federation, biobank_id)
    federation.write()
    (federation.biobank("bb2").folder / "donors.csv").unlink()
    result = run(federation, "sync", "--all", "--jobs", "2")
    # One biobank failing fails the command, and the others are still published.
    assert result.exit_code == 1
    assert "bb2: FAILED" in result.output and "donors.csv does not exist" in result.output
    assert "bb1: succeeded (full)" in result.output and "bb3: succeeded (full)" in result.output
    answer = json.loads(invoke(federation, "search", "--disease", "C50"))
    assert answer["byBiobank"] == {
        "bb1": {"donors": 1, "samples": 2},
        "bb3": {"donors": 1, "samples": 2},
    }
