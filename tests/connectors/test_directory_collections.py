"""The Directory's collection-level facts: read from EMX2 GraphQL and from the CSV export
(current column names, and the labels older exports wrote as headers), checked against
figures computed from the fixture file with nothing but the csv module."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from federation.search.query import SampleQuery
from federation.search.result import Precision
from federation.sync.run import SyncFailed
from tests.connectors.sources import FIXTURES
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import DirectoryApp, serving

BIOBANK = "bbmri-eric:ID:DE_BCB"
FIXTURE = FIXTURES / "bbmri-directory" / "collection-level-Collections.csv"
# Column name -> label, from the EMX2 Directory schema (molgenis.csv), and the older
# export's singular `Collection Type`: the headers of an export written with labels.
LABELS = {
    "id": "ID",
    "name": "Name",
    "description": "Description",
    "biobank": "Biobank",
    "type": "Collection Type",
    "data_categories": "Data Categories",
    "size": "Size",
    "number_of_donors": "Number of Donors",
    "sex": "Sex Types",
    "diagnosis_available": "Available Diagnoses",
    "age_low": "Age Low",
    "age_high": "Age High",
    "age_unit": "Age Unit",
    "materials": "Materials",
    "storage_temperatures": "Storage Temperatures",
    "data_use": "Data Use Ontologies",
    "withdrawn": "Withdrawn",
    "country": "Country",
}


def fixture_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(FIXTURE.read_text("utf-8"))))


def expected(disease_prefix: str, material: str) -> tuple[int, int, int]:
    """(donors, samples, collections) of the biobank's live collections that list a code
    starting with the prefix and the material: what the Directory declares for them."""
    donors = samples = found = 0
    for row in fixture_rows():
        codes = [c.removeprefix("urn:miriam:icd:") for c in row["diagnosis_available"].split(",")]
        if row["biobank"] != BIOBANK or row["withdrawn"] == "true":
            continue
        if any(c.startswith(disease_prefix) for c in codes) and material in row["materials"]:
            donors += int(row["number_of_donors"] or 0)
            samples += int(row["size"] or 0)
            found += 1
    return donors, samples, found


def labelled(app: DirectoryApp) -> None:
    """Rename the app's columns to the labels an older export headed them with."""
    app.rows = [{LABELS.get(k, k): v for k, v in row.items()} for row in app.rows]


def synced(tmp_path: Path, app: DirectoryApp, api: str) -> HttpNetwork:
    with serving(app) as server:
        options: dict[str, Any] = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": BIOBANK,
            "api": api,
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("de-bcb", "directory", options)])
        run = network.sync("de-bcb")
    assert run.outcome == "succeeded"
    return network


@pytest.mark.parametrize("source", ["graphql", "csv", "csv-labels"])
def test_declared_facts_are_read_whole(tmp_path: Path, source: str) -> None:
    app = DirectoryApp(FIXTURE.read_text("utf-8"))
    if source == "csv-labels":
        labelled(app)
    network = synced(tmp_path, app, "graphql" if source == "graphql" else "csv")
    live = [r for r in fixture_rows() if r["biobank"] == BIOBANK and r["withdrawn"] != "true"]
    published = network.runtime.backend.published()["de-bcb"].metadata["collections"]
    by_id = {c["id"]: c for c in published}
    assert sorted(by_id) == sorted(r["id"] for r in live)
    for row in live:
        facts = by_id[row["id"]]["declared"]
        assert facts["size"] == int(row["size"])
        assert facts["donors"] == (
            int(row["number_of_donors"]) if row["number_of_donors"] else None
        )
        assert facts["country"] == row["country"]
    plasma = by_id[f"{BIOBANK}:collection:plasma"]["declared"]
    assert plasma["materials"] == ["PLASMA", "SERUM"]
    assert plasma["diagnoses"] == ["C50", "C50.9"]
    assert plasma["sexes"] == ["FEMALE"]
    assert (plasma["age_low"], plasma["age_high"]) == (18, 90)
    assert plasma["storage_temperatures"] == ["temperature-60to-85"]
    tissue = by_id[f"{BIOBANK}:collection:tissue"]["declared"]
    assert tissue["orpha"] == ["ORPHA:180250"]
    # 6 to 216 months: 0 to 18 years.
    child = by_id[f"{BIOBANK}:collection:paediatric"]["declared"]
    assert (child["age_low"], child["age_high"]) == (0, 18)
    # Values outside the vocabularies leave the collection, each with its reason.
    assert child["diagnoses"] == ["C50", "C71"]
    assert child["materials"] == ["PLASMA"]
    assert child["sexes"] == ["FEMALE", "MALE"]
    (row,) = network.runtime.state.quarantine("de-bcb")
    assert row.kept
    for value in ("F3181", "BLOOD_SMEAR", "NEUTERED_MALE"):
        assert value in str(row.value)
    network.close()


@pytest.mark.parametrize("source", ["graphql", "csv", "csv-labels"])
def test_c50_plasma_counts_are_what_the_collections_declare(tmp_path: Path, source: str) -> None:
    app = DirectoryApp(FIXTURE.read_text("utf-8"))
    if source == "csv-labels":
        labelled(app)
    network = synced(tmp_path, app, "graphql" if source == "graphql" else "csv")
    donors, samples, found = expected("C50", "PLASMA")
    assert found == 2  # the fixture's plasma and paediatric collections
    result = network.runtime.search.search(
        SampleQuery.parse({"diseases": ["C50"], "materials": ["PLASMA"]}), facets=()
    )
    (row,) = result.by_biobank
    assert (row.donors.value, row.samples.value) == (donors, samples)
    assert row.donors.precision is Precision.DECLARED
    assert row.samples.precision is Precision.DECLARED
    assert row.declared is not None and len(row.declared.collections) == found
    # One matching collection declares no number of donors: the reason says so.
    assert "1 matching collection(s) declare no such number" in str(row.donors.reason)
    # Kept apart from the sample-level total, which has no sample rows to count.
    assert result.donors.value == 0
    assert result.declared is not None and result.declared.samples.value == samples
    e11 = expected("E11", "PLASMA")
    assert network.counts(diseases=["E11"], materials=["PLASMA"]) == {"de-bcb": e11[:2]}
    network.close()


def test_a_header_the_directory_does_not_have_fails_naming_it(tmp_path: Path) -> None:
    app = DirectoryApp(FIXTURE.read_text("utf-8"))
    app.rows = [{("Diagnoses (ICD)" if k == "diagnosis_available" else k): v for k, v in r.items()}
                for r in app.rows]  # fmt: skip
    with serving(app) as server:
        options = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": BIOBANK,
            "api": "csv",
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("de-bcb", "directory", options)])
        with pytest.raises(
            SyncFailed, match=r"headers this connector does not know: 'Diagnoses \(ICD\)'"
        ):
            network.sync("de-bcb")
    network.close()


def test_the_shared_code_mapping_applies(tmp_path: Path) -> None:
    """mappings.* recode the Directory's values as they do every connector's."""
    with serving(DirectoryApp(FIXTURE.read_text("utf-8"))) as server:
        options = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": BIOBANK,
            "mappings": {
                "diseases": {"urn:miriam:icd:F3181": "F31.8", "F3181": "F31.8"},
                "materials": {"BLOOD_SMEAR": "WHOLE_BLOOD"},
                "sex": {"NEUTERED_MALE": "MALE"},
            },
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("de-bcb", "directory", options)])
        network.sync("de-bcb")
    published = network.runtime.backend.published()["de-bcb"].metadata["collections"]
    child = next(c for c in published if c["id"].endswith(":paediatric"))["declared"]
    assert child["diagnoses"] == ["C50", "F31.8", "C71"]
    assert child["materials"] == ["PLASMA", "WHOLE_BLOOD"]
    assert network.runtime.state.quarantine("de-bcb") == []
    network.close()
