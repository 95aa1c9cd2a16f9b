"""Collection-level biobanks beside sample-level ones, on the embedded backend and on both
engines: a GraphQL search for a disease and a material returns both kinds, each count with
its precision; declared counts stay apart from counted ones, in totals and in facets.

The sample-level biobanks are the gateway tests' tables (tests/gateway/conftest.py); the
collection-level one is the Directory fixture served by a loopback EMX2 server. Every
expected figure is computed from those files here, with the csv module only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from federation.gateway import create_app
from federation.model.disease_names import default_names
from federation.runtime import Runtime
from federation.search.query import SampleQuery
from federation.search.result import Precision
from federation.settings import Settings
from federation.sync.run import sync_biobank
from tests.connectors.test_directory_collections import BIOBANK, FIXTURE, expected
from tests.engine.node import RunningNode, drop_prefix, engine_settings, unique_prefix
from tests.gateway.conftest import BB1, BB2, graphql, make_settings
from tests.support.http_network import FAST_RETRIES
from tests.support.loopback import DirectoryApp, serving
from tests.support.network import OPEN_DISCLOSURE

pytest_plugins = ["tests.engine.fixtures"]

SEARCH = """
query Declared($q: SampleQuery!) {
  search(query: $q) {
    donors { value precision }
    samples { value precision }
    declared { donors { value precision reason } samples { value precision } collections }
    byBiobank {
      biobank { id }
      donors { value precision reason }
      samples { value precision reason }
      declared { donors { value precision } samples { value precision } collections }
    }
    facets(names: ["material_type", "sex"]) {
      name
      buckets { key samples { value precision } declared { samples { value precision } } }
    }
  }
}
"""
C50_PLASMA = {"diseases": ["C50"], "materials": ["PLASMA"]}


def write_network(root: Path, directory_url: str, disclosure: dict[str, Any] | None = None) -> Path:
    for folder, tables in (("bb1", BB1), ("bb2", BB2)):
        (root / folder).mkdir(parents=True)
        for name, text in tables.items():
            (root / folder / name).write_text(dedent(text), encoding="utf-8")
    tabular = [(bb, {"type": "tabular", "options": {"path": bb}}) for bb in ("bb1", "bb2")]
    biobanks: list[dict[str, Any]] = [
        {"id": bb, "name": bb, "country": "JP", "connector": connector} for bb, connector in tabular
    ]
    options = {"base_url": directory_url, "biobank": BIOBANK, "api": "csv", **FAST_RETRIES}
    biobanks.append(
        {"id": "de-bcb", "name": "Breast Cancer Biobank", "country": "DE",
         "connector": {"type": "directory", "options": options}}
    )  # fmt: skip
    path = root / "network.yaml"
    document = {"default_disclosure": disclosure or OPEN_DISCLOSURE, "biobanks": biobanks}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def sample_level_expected(tables: dict[str, str], disease: str, material: str) -> tuple[int, int]:
    """(donors, samples) of a tabular biobank: live donors with the disease and a known sex,
    their samples of the material in a collection that exists."""

    def rows(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(dedent(tables[name]))))

    collections = {r["id"] for r in rows("collections.csv")}
    donors = {
        r["id"]
        for r in rows("donors.csv")
        if r["consent_withdrawn"] != "true"
        and r["sex"] in ("FEMALE", "MALE")
        and any(d.startswith(disease) for d in r["diagnoses"].split(";") if d)
    }
    samples = [
        r
        for r in rows("samples.csv")
        if r["donor_id"] in donors
        and r["material_type"] == material
        and r["collection_id"] in collections
    ]
    return len({r["donor_id"] for r in samples}), len(samples)


def synced(
    root: Path, engine: RunningNode | None, disclosure: dict[str, Any] | None = None
) -> Settings:
    with serving(DirectoryApp(FIXTURE.read_text("utf-8"))) as server:
        network = write_network(root, f"{server.url}/ERIC/directory", disclosure)
        settings = make_settings(root, network)
        if engine is not None:
            settings = engine_settings(settings, engine, unique_prefix())
        runtime = Runtime(settings)
        for source in runtime.network().biobanks:
            run = sync_biobank(source, runtime.backend, runtime.state, locks_dir=settings.locks_dir)
            assert run.outcome == "succeeded", run
        runtime.backend.close()
    # The disease names load once per process (seconds under load), before the request's
    # deadline starts, as a server's first request would not.
    default_names()
    return settings


@pytest.fixture
def embedded_client(tmp_path: Path) -> Iterator[FlaskClient]:
    app = create_app({"settings": synced(tmp_path, None), "TESTING": True})
    yield app.test_client()
    app.extensions["biofed"].backend.close()


@pytest.fixture
def engine_client(tmp_path: Path, engine_node: RunningNode) -> Iterator[FlaskClient]:
    settings = synced(tmp_path, engine_node)
    app = create_app({"settings": settings, "TESTING": True})
    yield app.test_client()
    app.extensions["biofed"].backend.close()
    drop_prefix(engine_node.url, settings.engine.index_prefix)


def check_sample_and_collection_level_together(client: FlaskClient) -> None:
    body = graphql(client, SEARCH, {"q": C50_PLASMA})
    assert "errors" not in body, body
    search = body["data"]["search"]
    rows = {row["biobank"]["id"]: row for row in search["byBiobank"]}
    assert sorted(rows) == ["bb1", "bb2", "de-bcb"]
    for bb, tables in (("bb1", BB1), ("bb2", BB2)):
        figures = (rows[bb]["donors"]["value"], rows[bb]["samples"]["value"])
        assert figures == sample_level_expected(tables, "C50", "PLASMA")
        assert rows[bb]["donors"]["precision"] == rows[bb]["samples"]["precision"] == "EXACT"
        assert rows[bb]["declared"] is None
    donors, samples, found = expected("C50", "PLASMA")
    bcb = rows["de-bcb"]
    assert (bcb["donors"]["value"], bcb["samples"]["value"]) == (donors, samples)
    assert bcb["donors"]["precision"] == bcb["samples"]["precision"] == "DECLARED"
    assert f"declared by {found} collection(s)" in bcb["samples"]["reason"]
    assert len(bcb["declared"]["collections"]) == found
    # The network total counts sample rows only; the declared sum is its own figure.
    counted = [sample_level_expected(t, "C50", "PLASMA") for t in (BB1, BB2)]
    assert search["samples"] == {"value": sum(s for _, s in counted), "precision": "EXACT"}
    assert search["donors"]["value"] == sum(d for d, _ in counted)
    assert search["declared"]["samples"] == {"value": samples, "precision": "DECLARED"}
    assert search["declared"]["donors"]["value"] == donors
    assert "kept apart from the sample-level total" in search["declared"]["donors"]["reason"]
    # Facets: the PLASMA bucket holds counted samples and, apart, the declared ones.
    facets = {f["name"]: {b["key"]: b for b in f["buckets"]} for f in search["facets"]}
    plasma = facets["material_type"]["PLASMA"]
    assert plasma["samples"]["value"] == sum(s for _, s in counted)
    assert plasma["declared"]["samples"] == {"value": samples, "precision": "DECLARED"}
    # Without the material filter the facet shows what else the C50 collections hold.
    _, c50_any, _ = expected("C50", "")
    serum = facets["material_type"]["SERUM"]["declared"]["samples"]["value"]
    assert serum == next(
        int(r["size"]) for r in csv.DictReader(io.StringIO(FIXTURE.read_text("utf-8")))
        if r["id"] == f"{BIOBANK}:collection:plasma"
    )  # fmt: skip
    assert serum < c50_any


def test_embedded_answers_sample_and_collection_level_biobanks_together(
    embedded_client: FlaskClient,
) -> None:
    check_sample_and_collection_level_together(embedded_client)


@pytest.mark.engine
def test_engines_answer_sample_and_collection_level_biobanks_together(
    engine_client: FlaskClient,
) -> None:
    check_sample_and_collection_level_together(engine_client)


def test_age_filters_match_declared_ranges_by_overlap(embedded_client: FlaskClient) -> None:
    """Ages 40-70 meet the 18-90 plasma collection and the 40-70 diabetes cohort, not the
    0-18 paediatric one; ages 91-99 meet none of them."""
    query = """query($q: SampleQuery!) { search(query: $q) {
        byBiobank { biobank { id } declared { collections } } } }"""
    body = graphql(
        embedded_client, query, {"q": {"materials": ["PLASMA"], "ageMin": 40, "ageMax": 70}}
    )
    (bcb,) = [r for r in body["data"]["search"]["byBiobank"] if r["biobank"]["id"] == "de-bcb"]
    found = {c.rsplit(":", 1)[1] for c in bcb["declared"]["collections"]}
    assert found == {"plasma", "diabetes"}
    body = graphql(
        embedded_client, query, {"q": {"materials": ["PLASMA"], "ageMin": 91, "ageMax": 99}}
    )
    assert [r["biobank"]["id"] for r in body["data"]["search"]["byBiobank"]] == []


def test_disclosure_rules_apply_to_declared_counts(tmp_path: Path) -> None:
    """Threshold and rounding apply to what collections declare as to counted rows; the
    precision stays DECLARED where a number is released, and the reason says both."""
    rule = {"granularity": "count", "min_count": 500, "rounding": 100, "noise": 0}
    runtime = Runtime(synced(tmp_path, None, {"anonymous": rule}))
    plasma = runtime.search.search(SampleQuery.parse({"materials": ["PLASMA"]}), facets=())
    (bcb,) = [r for r in plasma.by_biobank if r.biobank_id == "de-bcb"]
    donors, samples, _ = expected("", "PLASMA")
    assert bcb.samples.value == 100 * round(samples / 100) != samples
    assert bcb.samples.precision is Precision.DECLARED
    assert "rounded to the nearest 100" in str(bcb.samples.reason)
    assert bcb.donors.value == 100 * round(donors / 100)
    # C50 plasma: fewer declared donors than the minimum count: withheld, said why.
    c50 = runtime.search.search(SampleQuery.parse(C50_PLASMA), facets=())
    (bcb,) = [r for r in c50.by_biobank if r.biobank_id == "de-bcb"]
    assert expected("C50", "PLASMA")[0] < rule["min_count"]
    assert (bcb.donors.value, bcb.donors.precision) == (None, Precision.BELOW_THRESHOLD)
    assert bcb.samples.value is None
    assert "declared by 2 collection(s)" in str(bcb.donors.reason)
    runtime.backend.close()


def test_noise_on_declared_counts_is_fixed_by_the_collections(tmp_path: Path) -> None:
    rule = {"granularity": "count", "min_count": 1, "rounding": 1, "noise": 3}
    runtime = Runtime(synced(tmp_path, None, {"anonymous": rule}))
    figures = set()
    for query in ({"materials": ["PLASMA"]}, {"materials": ["plasma"], "sexes": ["FEMALE"]}):
        result = runtime.search.search(SampleQuery.parse(query), facets=())
        (bcb,) = [r for r in result.by_biobank if r.biobank_id == "de-bcb"]
        assert bcb.samples.precision is Precision.DECLARED
        assert "noise" in str(bcb.samples.reason)
        figures.add(bcb.samples.value)
    # Both questions match the same collections, so they are told the same figure.
    assert len(figures) == 1
    runtime.backend.close()


@pytest.mark.parametrize("granularity", ["count", "record"])
def test_beacon_counts_leave_declared_collections_out(
    embedded_client: FlaskClient, granularity: str
) -> None:
    """A Beacon count is a count of records: collection-level biobanks, which have none,
    add nothing to it and are not listed among the biobanks that answered."""
    query = {
        "filters": [{"id": "ICD10:C50"}, {"id": "material_type:PLASMA"}],
        "requestedGranularity": granularity,
    }
    response = embedded_client.post(
        "/beacon/biosamples", json={"meta": {"apiVersion": "v2.0.1"}, "query": query}
    )
    body = response.get_json()
    counted = [sample_level_expected(t, "C50", "PLASMA")[1] for t in (BB1, BB2)]
    assert body["responseSummary"]["numTotalResults"] == sum(counted)
    assert body["responseSummary"]["countPrecision"] == "exact"
    assert {b["id"] for b in body["info"]["biobanks"]} == {"bb1", "bb2"}
