"""Staged syncs of network sources: incremental changes, deletions, fixes, idempotence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.connectors.sources import condition, grown_fhir_store, specimen
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import FhirApp, FhirStore, LoopbackServer, serving


@pytest.fixture
def fhir() -> Iterator[tuple[FhirStore, LoopbackServer]]:
    store = grown_fhir_store()
    with serving(FhirApp(store)) as server:
        yield store, server


@pytest.fixture
def network(tmp_path: Path, fhir: tuple[FhirStore, LoopbackServer]) -> Iterator[HttpNetwork]:
    _, server = fhir
    options = {"base_url": f"{server.url}/fhir", "page_size": 5, **FAST_RETRIES}
    net = HttpNetwork(tmp_path, [entry("bb-fhir", "fhir", options)])
    yield net
    net.close()


def test_a_first_sync_is_full_and_quarantines_dirty_resources(network: HttpNetwork) -> None:
    run = network.sync("bb-fhir")
    assert (run.kind, run.outcome) == ("full", "succeeded")
    # 7 patients with their specimens: p2 keeps I10 and loses its non-WHO C50.99 only.
    assert network.counts() == {"bb-fhir": (7, 13)}
    assert network.counts(diseases=["I10"]) == {"bb-fhir": (3, 6)}  # p0, p2, p4
    assert network.counts(diseases=["C50.9"]) == {"bb-fhir": (3, 6)}  # p1, p3, p5; not p2
    rejected = network.quarantine("bb-fhir")
    assert rejected["bad-sex"] == (
        "sex",
        "sex: 'X' is not in the sex vocabulary; allowed: FEMALE, MALE, NASK, NAV, "
        "UNDIFFERENTIAL, UNKNOWN",
    )
    assert rejected["bad-material"][0] == "material_type"
    assert rejected["bad-date"] == ("collection_date", "collection_date: Not a valid date.")
    assert rejected["no-donor"] == ("donor_id", "no such donor at the source")
    field, reason = rejected["p2"]
    assert field == "Condition/bad-icd.code"  # where the admin finds it at the source
    assert "'C50.99' is not a WHO ICD-10 code" in reason
    assert reason.endswith("(the record is kept without it)")
    (kept,) = [q for q in network.runtime.state.quarantine("bb-fhir") if q.kept]
    assert (kept.source_id, kept.value) == ("p2", "C50.99")
    assert "s2a" not in rejected and "s2b" not in rejected
    assert (run.rejected, run.partial, len(rejected)) == (4, 1, 5)
    assert run.accepted == run.read - 5
    payload = next(
        q for q in network.runtime.state.quarantine("bb-fhir") if q.source_id == "no-donor"
    )
    assert '"reference": "Patient/p404"' in payload.payload  # what the source sent


def test_incremental_runs_pick_up_changes_deletions_and_fixes(
    network: HttpNetwork, fhir: tuple[FhirStore, LoopbackServer]
) -> None:
    store, server = fhir
    network.sync("bb-fhir")
    before = len(server.requests)
    store.put(specimen("s0a", "p0", "tissue-frozen"))  # changed
    store.delete("Specimen", "s1b")  # deleted: a DELETE in the history
    store.put(specimen("bad-material", "p0", "blood-plasma"))  # fixed at the source
    store.put(condition("bad-icd", "p2", "C50.9"))  # p2 fixed: its specimens join again
    run = network.sync("bb-fhir")
    assert (run.kind, run.outcome, run.deleted) == ("incremental", "succeeded", 1)
    assert network.counts(materials=["TISSUE_FROZEN"]) == {"bb-fhir": (1, 1)}
    assert "s1b" not in network.sample_ids()
    assert network.counts() == {"bb-fhir": (7, 13)}
    quarantined = network.quarantine("bb-fhir")
    assert not {"bad-material", "p2", "s2a", "s2b"} & set(quarantined)
    assert {"bad-sex", "bad-date", "no-donor"} <= set(quarantined)
    asked = [r for r in server.requests[before:] if r.path == "/fhir/Specimen"]
    assert asked and all(r.query["_lastUpdated"].startswith("ge") for r in asked)


def test_re_running_changes_nothing(network: HttpNetwork) -> None:
    network.sync("bb-fhir")
    counts, ids = network.counts(), sorted(network.sample_ids())
    again = network.sync("bb-fhir")
    assert (again.kind, again.indexed, again.deleted) == ("incremental", 0, 0)
    assert (network.counts(), sorted(network.sample_ids())) == (counts, ids)
    full = network.sync("bb-fhir", mode="full")
    assert (full.kind, full.deleted) == ("full", 0)
    assert (network.counts(), sorted(network.sample_ids())) == (counts, ids)


def test_a_full_run_finds_deletions_by_comparing_ids(
    network: HttpNetwork, fhir: tuple[FhirStore, LoopbackServer]
) -> None:
    store, _ = fhir
    network.sync("bb-fhir")
    # Gone without a trace in the history (a server that keeps none): only a full pass sees it.
    del store.resources["Specimen"]["s3a"]
    del store.resources["Patient"]["p5"]
    run = network.sync("bb-fhir", mode="full")
    # s3a is deleted; p5's two specimens lost their donor: rejected, and out of the index.
    assert (run.deleted, run.indexed) == (1, 13 - 3)
    assert not {"s3a", "s5a", "s5b"} & set(network.sample_ids())
    assert network.quarantine("bb-fhir")["s5a"] == ("donor_id", "no such donor at the source")


def test_a_changed_condition_reaches_its_patient(
    network: HttpNetwork, fhir: tuple[FhirStore, LoopbackServer]
) -> None:
    store, _ = fhir
    network.sync("bb-fhir")
    assert network.counts(diseases=["E11"]) == {}
    store.put(condition("c4", "p4", "E11.9"))  # p4 itself is not touched
    network.sync("bb-fhir")
    assert network.counts(diseases=["E11"]) == {"bb-fhir": (1, 2)}
