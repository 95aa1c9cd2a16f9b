"""Beacon v2 paging against loopback beacons that count `skip` as the spec says, or not.

The beacons serve the pi-api test set grown 25-fold (500 individuals, 500 biosamples)
from files written here; every count is compared with one computed straight from those
files by `beacon_truth`, which shares no code with the connector.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.sync.run import SyncFailed
from tests.connectors.sources import BEACON_MAPPING, beacon_fixtures
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import BeaconApp, LoopbackServer, serving

GROWTH = 25
PAGE_SIZE = 7
# NCIT sex terms a beacon may send (female, male, unknown twice).
NCIT_SEXES = {"NCIT:C16576", "NCIT:C20197", "NCIT:C124294", "NCIT:C17998"}


def write_grown_beacon(folder: Path) -> Path:
    """The pi-api set copied GROWTH times under new ids, with a usable dataset data use."""
    datasets, individuals, biosamples = beacon_fixtures()
    fixed = copy.deepcopy(datasets[0])
    fixed["dataUseConditions"]["duoDataUse"] = [{"id": "DUO:0000042"}]
    grown_individuals, grown_biosamples = [], []
    for copy_number in range(GROWTH):
        for individual in individuals:
            grown = copy.deepcopy(individual)
            grown["id"] = f"{individual['id']}-{copy_number}"
            grown_individuals.append(grown)
        for biosample in biosamples:
            grown = copy.deepcopy(biosample)
            grown["id"] = f"{biosample['id']}-{copy_number}"
            grown["individualId"] = f"{biosample['individualId']}-{copy_number}"
            grown_biosamples.append(grown)
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in (
        ("datasets", [fixed]),
        ("individuals", grown_individuals),
        ("biosamples", grown_biosamples),
    ):
        folder.joinpath(f"{name}.json").write_text(json.dumps(records), encoding="utf-8")
    return folder


def beacon_truth(folder: Path, material_codes: dict[str, str]) -> dict[str, int]:
    """Records in the files, and the donors and samples a correct sync makes searchable."""
    files = {n: json.loads((folder / f"{n}.json").read_text("utf-8")) for n in ENDPOINTS}
    datasets = {d["id"] for d in files["datasets"]}
    donors = {i["id"] for i in files["individuals"] if (i.get("sex") or {}).get("id") in NCIT_SEXES}
    samples = [
        b
        for b in files["biosamples"]
        if (b.get("sampleOriginType") or {}).get("id") in material_codes
        and b["individualId"] in donors
        and b["datasetId"] in datasets
    ]
    return {
        "read": sum(len(records) for records in files.values()),
        "individuals": len(files["individuals"]),
        "samples": len(samples),
        "donors": len({b["individualId"] for b in samples}),
    }


ENDPOINTS = ("datasets", "individuals", "biosamples")


@pytest.fixture
def grown(tmp_path: Path) -> Path:
    return write_grown_beacon(tmp_path / "beacon-files")


def serve(folder: Path, **behaviour: Any) -> Iterator[LoopbackServer]:
    files = [json.loads((folder / f"{n}.json").read_text("utf-8")) for n in ENDPOINTS]
    return serving(BeaconApp(*files, **behaviour))


def beacon_network(tmp_path: Path, server: LoopbackServer, **extra: Any) -> HttpNetwork:
    options = {
        "base_url": f"{server.url}/api",
        "page_size": PAGE_SIZE,
        **BEACON_MAPPING,
        **FAST_RETRIES,
        **extra,
    }
    return HttpNetwork(tmp_path, [entry("bb", "beacon", options)])


def skips_sent(server: LoopbackServer, endpoint: str) -> list[int]:
    return [int(r.query["skip"]) for r in server.requests if r.path == f"/api/{endpoint}"]


@pytest.mark.parametrize("announce_total", [True, False], ids=["total", "no-total"])
def test_a_spec_beacon_is_read_whole_with_page_counted_skip(
    tmp_path: Path, grown: Path, announce_total: bool
) -> None:
    truth = beacon_truth(grown, BEACON_MAPPING["material_codes"])
    with serve(grown, skip_counts="pages", announce_total=announce_total) as server:
        network = beacon_network(tmp_path, server)
        run = network.sync("bb")
    assert (run.outcome, run.read, run.rejected) == ("succeeded", truth["read"], 0)
    assert network.counts() == {"bb": (truth["donors"], truth["samples"])}
    pages = -(-truth["individuals"] // PAGE_SIZE)  # the last page is short: it ends the read
    assert skips_sent(server, "individuals") == list(range(pages))
    assert run.notes is not None
    assert "counts `skip` in pages, as the Beacon v2 spec says (detected)" in run.notes
    assert ("does not announce numTotalResults" in run.notes) is not announce_total
    network.close()


def test_a_record_offset_beacon_is_detected_said_and_read_whole(
    tmp_path: Path, grown: Path
) -> None:
    truth = beacon_truth(grown, BEACON_MAPPING["material_codes"])
    with serve(grown, skip_counts="records", announce_total=False) as server:
        network = beacon_network(tmp_path, server)
        run = network.sync("bb")
    assert (run.outcome, run.read) == ("succeeded", truth["read"])
    assert network.counts() == {"bb": (truth["donors"], truth["samples"])}
    assert run.notes is not None and "counts `skip` in records" in run.notes
    sent = skips_sent(server, "individuals")
    assert sent[:2] == [0, 1]  # the first page, then the probe
    assert sent[2:] == list(range(PAGE_SIZE, truth["individuals"], PAGE_SIZE))
    network.close()


@pytest.mark.parametrize(
    ("served", "configured"), [("records", "pages"), ("pages", "records")], ids=str
)
def test_a_wrong_skip_setting_fails_the_run_instead_of_losing_records(
    tmp_path: Path, grown: Path, served: str, configured: str
) -> None:
    # No numTotalResults: nothing but the paging itself can tell the read was incomplete.
    with serve(grown, skip_counts=served, announce_total=False) as server:
        network = beacon_network(tmp_path, server, skip_counts=configured)
        with pytest.raises(SyncFailed, match=f"counts `skip` in {served}") as failure:
            network.sync("bb")
    run = failure.value.run
    assert run.outcome == "failed"
    assert f"set skip_counts: {served}" in run.error
    assert network.counts() == {}
    network.close()


def test_a_beacon_serving_fewer_records_than_it_announces_fails_the_run(
    tmp_path: Path, grown: Path
) -> None:
    served = len(json.loads((grown / "biosamples.json").read_text("utf-8")))
    with serve(grown) as server:
        real = server.app

        def overstated(request: Any) -> Any:
            reply = real(request)
            body = json.loads(reply.body)
            if request.path.endswith("/biosamples"):
                body["responseSummary"]["numTotalResults"] += 3
            reply.body = json.dumps(body).encode()
            return reply

        server.app = overstated
        network = beacon_network(tmp_path, server)
        with pytest.raises(SyncFailed, match="more are announced") as failure:
            network.sync("bb")
    assert failure.value.run.outcome == "failed"
    # The short last page came where 3 more records were announced.
    assert f"{served % PAGE_SIZE} records where {PAGE_SIZE} were asked and 3 more" in str(
        failure.value
    )
    network.close()


def test_a_beacon_that_ignores_skip_fails_the_run(tmp_path: Path, grown: Path) -> None:
    with serve(grown, announce_total=False) as server:
        real = server.app

        def first_page_always(request: Any) -> Any:
            request.query["skip"] = "0"
            return real(request)

        server.app = first_page_always
        network = beacon_network(tmp_path, server, skip_counts="pages")
        with pytest.raises(SyncFailed, match="repeats 7 record"):
            network.sync("bb")
    network.close()
