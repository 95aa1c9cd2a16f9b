"""Beacon v2 against a loopback beacon serving the pi-api test set, dirty records included."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.beacon import BeaconConnector
from federation.sync.connector import SourceError, SourceRecord
from tests.connectors.sources import BEACON_MAPPING, beacon_fixtures
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import BeaconApp, LoopbackServer, Reply, serving


@pytest.fixture
def beacon() -> Iterator[tuple[BeaconApp, LoopbackServer]]:
    app = BeaconApp(*beacon_fixtures())
    with serving(app) as server:
        yield app, server


def options(server: LoopbackServer, **extra: Any) -> dict[str, Any]:
    return {"base_url": f"{server.url}/api", "page_size": 7, **FAST_RETRIES, **extra}


def test_records_map_ncit_sex_icd10_diseases_and_origins(
    beacon: tuple[BeaconApp, LoopbackServer],
) -> None:
    app, server = beacon
    app.data["individuals"][0]["diseases"][0]["diseaseCode"] = {"id": "ICD10:C56"}
    app.data["biosamples"][0]["sampleOriginType"] = {"id": "UBERON:0001969", "label": "plasma"}
    app.data["biosamples"][0]["histologicalDiagnosis"] = {"id": "ICD10:C56", "label": "ovary"}
    connector = BeaconConnector("bb", options(server), base_dir=".")
    donor = next(connector.pull(connector.streams[1], None))
    sample = next(connector.pull(connector.streams[2], None))
    assert isinstance(donor, SourceRecord) and isinstance(sample, SourceRecord)
    assert connector.map(donor) == {
        "biobank_id": "bb",
        "id": "SAMPLE1",
        "sex": "FEMALE",
        "diagnoses": ["ICD10:C56"],
    }
    mapped = connector.map(sample)
    assert mapped["material_type"] == "PLASMA"
    assert (mapped["collection_id"], mapped["donor_id"]) == ("test", "SAMPLE1")
    assert (mapped["age_at_collection"], mapped["collection_date"]) == (32, "2020-09-11")
    assert mapped["diagnoses"] == ["ICD10:C56"]
    requested = server.requests[0]
    assert (requested.path, requested.query["requestedGranularity"]) == (
        "/api/individuals",
        "record",
    )


def test_the_dirty_test_set_is_quarantined_with_reasons_then_fixed_at_the_source(
    tmp_path: Path, beacon: tuple[BeaconApp, LoopbackServer]
) -> None:
    app, server = beacon
    network = HttpNetwork(tmp_path, [entry("bb-beacon", "beacon", options(server))])
    run = network.sync("bb-beacon")
    assert (run.outcome, run.read, run.indexed) == ("succeeded", 41, 0)
    rejected = {
        (q.stream, q.source_id): q.field
        for q in network.runtime.state.quarantine("bb-beacon", limit=100)
    }
    assert rejected[("collections", "test")] == "dataUseConditions.duoDataUse[0].id"
    assert rejected[("donors", "SAMPLE1")] == "diseases[0].diseaseCode"  # MONDO, not ICD-10
    assert "MONDO:0004975 (Cystic fibrosis)" in next(
        q.value for q in network.runtime.state.quarantine("bb-beacon") if q.stream == "donors"
    )
    samples = [q for q in network.runtime.state.quarantine("bb-beacon") if q.stream == "samples"]
    assert len(samples) == 20 and {q.field for q in samples} == {"sampleOriginType"}
    assert '"excluded": "TRUE"' in samples[0].payload  # kept as the beacon sent it

    # The admin maps the terms; the source fixes its dataset's data use.
    network.entries[0]["connector"]["options"].update(BEACON_MAPPING)
    network.write()
    fixed = copy.deepcopy(app.data["datasets"][0])
    fixed["dataUseConditions"]["duoDataUse"] = [{"id": "DUO:0000042"}, {"id": "DUO:0000019"}]
    app.data["datasets"] = [fixed]
    run = network.sync("bb-beacon")
    assert (run.outcome, run.indexed, run.rejected) == ("succeeded", 20, 0)
    assert network.quarantine("bb-beacon") == {}
    assert network.counts() == {"bb-beacon": (20, 20)}
    assert network.counts(materials=["TISSUE_FROZEN"]) == {"bb-beacon": (20, 20)}


def test_records_deleted_at_the_source_leave_on_the_next_run(
    tmp_path: Path, beacon: tuple[BeaconApp, LoopbackServer]
) -> None:
    app, server = beacon
    app.data["datasets"][0]["dataUseConditions"]["duoDataUse"] = [{"id": "DUO:0000042"}]
    network = HttpNetwork(
        tmp_path, [entry("bb-beacon", "beacon", options(server, **BEACON_MAPPING))]
    )
    network.sync("bb-beacon")
    app.data["biosamples"] = app.data["biosamples"][:15]
    app.data["individuals"] = app.data["individuals"][:18]  # SAMPLE19, 20: no samples left
    run = network.sync("bb-beacon")
    assert (run.kind, run.deleted) == ("full", 5)  # Beacon has no change feed: ids compared
    assert network.counts() == {"bb-beacon": (15, 15)}


def test_a_count_only_beacon_cannot_be_synced(beacon: tuple[BeaconApp, LoopbackServer]) -> None:
    _, server = beacon
    server.always = lambda request: Reply.json(
        {"meta": {"returnedGranularity": "count"}, "responseSummary": {"exists": True}}
    )
    connector = BeaconConnector("bb", options(server), base_dir=".")
    with pytest.raises(SourceError, match="record-level access"):
        list(connector.pull(connector.streams[1], None))


def test_a_page_cut_short_is_an_error(beacon: tuple[BeaconApp, LoopbackServer]) -> None:
    _, server = beacon
    real = server.app

    def short(request: Any) -> Reply:
        reply = real(request)
        if request.query.get("skip") == "1":  # the second page (skip counts pages)
            import json

            body = json.loads(reply.body)
            body["response"]["resultSets"][0]["results"] = body["response"]["resultSets"][0][
                "results"
            ][:2]
            return Reply.json(body)
        return reply

    server.app = short
    connector = BeaconConnector("bb", options(server), base_dir=".")
    with pytest.raises(SourceError, match="cut short"):
        list(connector.pull(connector.streams[1], None))
