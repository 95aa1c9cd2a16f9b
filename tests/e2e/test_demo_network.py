"""End to end: generate a network, sync it with the CLI, serve it under gunicorn, query over
HTTP, and check every count against counts computed independently from the source files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation import PROJECT_ROOT
from federation.demo.generator import generate_network
from tests.support.network import OPEN_DISCLOSURE
from tests.support.server import free_port, graphql, gunicorn, running
from tests.support.source_truth import SourceTruth

pytestmark = pytest.mark.slow

SEARCH = """
query($q: SampleQuery!) {
  search(query: $q) {
    donors { value precision }
    samples { value precision }
    byBiobank { biobank { id } donors { value precision } samples { value precision } }
  }
}"""

EXPLAINED = """
query($q: SampleQuery!) {
  search(query: $q) {
    byBiobank {
      biobank { id }
      donors { value precision reason }
      samples { value precision reason }
      access { role granularity explanation }
    }
  }
}"""

QUERIES: list[dict[str, Any]] = [
    {},
    {"diseases": ["C50"], "sexes": ["FEMALE"]},
    {"diseases": ["II"]},
    {"diseases": ["C00-C97"], "materials": ["PLASMA", "SERUM"]},
    {"diseases": ["E11.9", "I10"]},
    {"sexes": ["MALE"], "ageMin": 40, "ageMax": 70},
    {"materials": ["DNA"], "ageMax": 30},
]
TRUTH_KEYS = {
    "diseases": "diseases",
    "sexes": "sexes",
    "materials": "materials",
    "ageMin": "age_min",
    "ageMax": "age_max",
    "biobanks": "biobanks",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    # A mixed network: table exports, and FHIR, Beacon v2 and REST sources (recorded pages).
    generate_network(root / "demo", biobanks=7, samples=30_000, seed=20261126, sources="mixed")
    network = root / "demo" / "network.yaml"
    # This test checks the counting pipeline end to end, so every figure must be exact:
    # the network opens its disclosure (the privacy layer has its own tests).
    document = yaml.safe_load(network.read_text(encoding="utf-8"))
    assert {e["connector"]["type"] for e in document["biobanks"]} == {
        "tabular",
        "fhir",
        "beacon",
        "rest",
    }
    document["default_disclosure"] = OPEN_DISCLOSURE
    for entry in document["biobanks"]:
        entry.pop("disclosure", None)
    network.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "federation.cli",
            "--data-dir",
            str(root / "data"),
            "--network",
            str(network),
            "sync",
            "--all",
            "--no-progress",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    return root, network


def test_every_count_matches_the_sources(demo: tuple[Path, Path]) -> None:
    root, network = demo
    truth = SourceTruth(network.parent)
    with gunicorn(root / "data", network, root / "gunicorn.log") as url:
        for query in QUERIES:
            answer = graphql(url, SEARCH, {"q": query})
            assert "errors" not in answer, answer
            search = answer["data"]["search"]
            got = {
                row["biobank"]["id"]: (row["donors"]["value"], row["samples"]["value"])
                for row in search["byBiobank"]
            }
            expected = truth.counts(**{TRUTH_KEYS[k]: v for k, v in query.items()})
            assert got == expected, query
            assert search["samples"]["value"] == sum(s for _, s in expected.values())
            assert {row["samples"]["precision"] for row in search["byBiobank"]} <= {"EXACT"}
    assert expected, "the last query matched nothing: the check would be empty"


def test_every_rejected_row_is_in_the_quarantine(demo: tuple[Path, Path]) -> None:
    root, network = demo
    truth = SourceTruth(network.parent)
    from federation.settings import load_network
    from federation.state import open_state_store
    from federation.sync.state import SyncState

    state = SyncState(open_state_store(None, root / "data"))
    for source in load_network(network).biobanks:
        biobank_id = source.biobank.id
        rejected = truth.rejected(biobank_id)
        assert rejected, f"{biobank_id}: the generator wrote no dirty rows"
        rows = state.quarantine(biobank_id, limit=10_000)
        quarantined = {q.source_id or q.position for q in rows if not q.kept}
        assert set(rejected) == quarantined, biobank_id
        # Rows kept without a bad value are in the quarantine too, marked kept, unless the
        # admin chose to let unmapped diseases go (`unmapped_diseases: ignore`).
        kept = {q.source_id for q in rows if q.kept}
        ignoring = source.options.get("unmapped_diseases") == "ignore"
        assert kept == (set() if ignoring else set(truth.partial(biobank_id))), biobank_id
        runs = state.runs(biobank_id)
        assert runs[0].outcome == "succeeded"
        assert (runs[0].rejected, runs[0].partial) == (len(quarantined), len(kept))


def test_biofed_demo_serves_the_demo_network(tmp_path: Path) -> None:
    """The README's first command: generate, sync and serve in one go."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "federation.cli",
        "--data-dir",
        str(tmp_path / "data"),
        "demo",
        "--biobanks",
        "4",
        "--samples",
        "4000",
        "--port",
        str(port),
    ]
    question = {"q": {"diseases": ["C50"], "sexes": ["FEMALE"]}}
    with running(command, {}, port, tmp_path / "demo.log", timeout=300) as url:
        answer = graphql(url, EXPLAINED, question)
        keys = yaml.safe_load((tmp_path / "data" / "demo" / "demo-keys.yaml").read_text())
        approved = graphql(
            url, EXPLAINED, question, headers={"Authorization": f"Bearer {keys['approved']['key']}"}
        )
    log = (tmp_path / "demo.log").read_text()
    assert "approved" in log, "the demo prints its keys"
    assert "  [4/4] " in log, "the demo shows progress while it generates the network"
    first = keys["admin"]["entry"]["admin_of"][0]
    assert f"administers biobank {first}" in log, "the admin key says which biobank"
    rows = answer["data"]["search"]["byBiobank"]
    truth = SourceTruth(tmp_path / "data" / "demo").counts(diseases=["C50"], sexes=["FEMALE"])
    assert rows and set(truth) >= {r["biobank"]["id"] for r in rows}, answer
    # Anonymous callers get counts released under each biobank's policy: each one is
    # either withheld or within the rounding and noise of the true count, and says so.
    for row in rows:
        true_donors, _ = truth[row["biobank"]["id"]]
        released = row["donors"]
        assert row["access"]["role"] == "anonymous"
        if released["precision"] == "EXACT":
            assert released["value"] == true_donors
        else:
            assert released["reason"] and row["access"]["explanation"]
            if released["value"] is not None:
                assert abs(released["value"] - true_donors) <= max(10, true_donors // 5), row
    # The approved researcher asking the same question gets the exact truth, and the
    # response says why the two answers differ.
    exact = {
        r["biobank"]["id"]: (r["donors"]["value"], r["samples"]["value"])
        for r in approved["data"]["search"]["byBiobank"]
    }
    assert exact == truth
    assert {r["access"]["explanation"] for r in approved["data"]["search"]["byBiobank"]} == {
        "counts are exact; sample records are available"
    }
    assert any(r["donors"]["precision"] != "EXACT" for r in rows), "anonymous sees less"
