"""FHIR paging against a loopback server with `next` links and `Bundle.total`.

The server holds the BBMRI.de example resources and a grown set of patients, conditions
and specimens written to a file first; `fhir_truth` counts from that file with its own
rules (it shares no code with the connector).
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from federation.sync.run import SyncFailed
from tests.connectors.sources import condition, fhir_store, patient, specimen
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import FhirApp, LoopbackServer, Reply, Request, serving

PATIENTS = 40
PAGE_SIZE = 6
# BBMRI.de SampleMaterialType codes this test writes, and the MIABIS types they are.
MATERIALS = {"blood-serum": "SERUM", "dna": "DNA", "whole-blood": "WHOLE_BLOOD"}
GENDERS = {"female", "male", "other", "unknown"}


def write_resources(path: Path) -> Path:
    """The BBMRI.de examples plus PATIENTS patients with a condition and two specimens."""
    store = fhir_store()
    resources = [r for by_id in store.resources.values() for r in by_id.values()]
    for n in range(PATIENTS):
        resources.append(patient(f"p{n}", "female" if n % 2 else "male"))
        resources.append(condition(f"c{n}", f"p{n}", "C50.9" if n % 3 else "E11.9"))
        resources.append(specimen(f"s{n}a", f"p{n}", "blood-serum"))
        resources.append(specimen(f"s{n}b", f"p{n}", "dna"))
    path.write_text(json.dumps(resources), encoding="utf-8")
    return path


def fhir_truth(path: Path) -> dict[str, int]:
    """Matches per search, and the donors and samples a correct sync makes searchable."""
    resources = json.loads(path.read_text("utf-8"))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    patients = {p["id"] for p in by_type["Patient"] if p.get("gender") in GENDERS}
    collections = {
        o["id"]
        for o in by_type.get("Organization", [])
        if "https://fhir.bbmri.de/StructureDefinition/Collection" in o["meta"]["profile"]
    }
    samples = []
    for s in by_type["Specimen"]:
        code = s["type"]["coding"][0]["code"]
        donor = s["subject"]["reference"].split("/")[-1]
        custodian = [e for e in s.get("extension", []) if e["url"].endswith("/Custodian")]
        collection = custodian[0]["valueReference"]["reference"].split("/")[-1]
        if code in MATERIALS and donor in patients and collection in collections:
            samples.append(donor)
    return {
        "read": len(collections) + len(by_type["Patient"]) + len(by_type["Specimen"]),
        "patients": len(by_type["Patient"]),
        "samples": len(samples),
        "donors": len(set(samples)),
    }


def serve_file(path: Path) -> tuple[FhirApp, Any]:
    app = FhirApp(fhir_store())
    app.store.resources.clear()
    for resource in json.loads(path.read_text("utf-8")):
        app.store.put(resource)
    return app, serving(app)


def fhir_network(tmp_path: Path, server: LoopbackServer) -> HttpNetwork:
    options = {"base_url": f"{server.url}/fhir", "page_size": PAGE_SIZE, **FAST_RETRIES}
    return HttpNetwork(tmp_path, [entry("bb-fhir", "fhir", options)])


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    return write_resources(tmp_path / "resources.json")


def test_pages_are_followed_by_next_links_and_checked_against_the_total(
    tmp_path: Path, resources: Path
) -> None:
    truth = fhir_truth(resources)
    _, context = serve_file(resources)
    with context as server:
        network = fhir_network(tmp_path, server)
        run = network.sync("bb-fhir")
    assert (run.outcome, run.read, run.rejected) == ("succeeded", truth["read"], 0)
    assert network.counts() == {"bb-fhir": (truth["donors"], truth["samples"])}
    offsets = [int(r.query.get("_offset", 0)) for r in server.requests if r.path == "/fhir/Patient"]
    assert offsets == list(range(0, truth["patients"], PAGE_SIZE))
    assert run.notes is None  # the server reports every total
    network.close()


def test_a_next_link_that_skips_a_page_fails_the_run(tmp_path: Path, resources: Path) -> None:
    truth = fhir_truth(resources)
    app, context = serve_file(resources)

    def skipping(request: Request) -> Reply:
        reply = app(request)
        body = json.loads(reply.body)
        for link in body.get("link", []):
            if link["relation"] == "next" and request.path.endswith("/Specimen"):
                url = urllib.parse.urlsplit(link["url"])
                query = dict(urllib.parse.parse_qsl(url.query))
                if query["_offset"] == str(2 * PAGE_SIZE):  # the third page is never asked for
                    query["_offset"] = str(3 * PAGE_SIZE)
                    link["url"] = f"{url.path}?{urllib.parse.urlencode(query)}"
        return Reply.json(body)

    with context as server:
        server.app = skipping
        network = fhir_network(tmp_path, server)
        with pytest.raises(SyncFailed) as failure:
            network.sync("bb-fhir")
    specimens = truth["read"] - truth["patients"] - 1  # one collection
    assert failure.value.run.outcome == "failed"
    assert (
        f"/Specimen: read {specimens - PAGE_SIZE} records where the source announces "
        f"{specimens} ({PAGE_SIZE} lost)" in str(failure.value.run.error)
    )
    assert network.counts() == {}
    network.close()


def test_a_server_without_totals_is_read_and_said_in_the_run_record(
    tmp_path: Path, resources: Path
) -> None:
    truth = fhir_truth(resources)
    app, context = serve_file(resources)

    def without_total(request: Request) -> Reply:
        body = json.loads(app(request).body)
        body.pop("total", None)
        return Reply.json(body)

    with context as server:
        server.app = without_total
        network = fhir_network(tmp_path, server)
        run = network.sync("bb-fhir")
    assert (run.outcome, run.read) == ("succeeded", truth["read"])
    assert network.counts() == {"bb-fhir": (truth["donors"], truth["samples"])}
    assert run.notes is not None
    assert "Patient: the server does not report Bundle.total" in run.notes
    network.close()
