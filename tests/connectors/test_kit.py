"""The connector test kit, run for every built-in connector against a real-format source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.beacon import BeaconConnector
from connectors.directory import DirectoryConnector
from connectors.fhir import FhirConnector
from connectors.rest import RestConnector
from connectors.tabular import TabularConnector
from federation.sync.testkit import connector_test_suite
from tests.connectors.sources import (
    BEACON_MAPPING,
    beacon_fixtures,
    directory_csv,
    fill_rest,
    grown_fhir_store,
    rest_options,
)
from tests.support.http_network import FAST_RETRIES
from tests.support.loopback import BeaconApp, DirectoryApp, FhirApp, RestApp, serving
from tests.support.network import TabularBiobank


def tabular_source(tmp_path: Path) -> dict[str, Any]:
    bb = TabularBiobank(tmp_path, "kit")
    bb.donor("D1").donor("D2", sex="ALIEN").sample("S1", "D1").sample("S2", "D1", material="X")
    bb.write()
    return {"path": "sources/kit"}


def fhir_source(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with serving(FhirApp(grown_fhir_store())) as server:
        yield {"base_url": f"{server.url}/fhir", "page_size": 4, **FAST_RETRIES}


def beacon_source(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with serving(BeaconApp(*beacon_fixtures())) as server:
        yield {"base_url": f"{server.url}/api", "page_size": 6, **BEACON_MAPPING, **FAST_RETRIES}


def rest_source(tmp_path: Path) -> Iterator[dict[str, Any]]:
    app = RestApp("cursor")
    fill_rest(app)
    with serving(app) as server:
        yield rest_options(server.url, "cursor", **FAST_RETRIES)


def directory_source(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with serving(DirectoryApp(directory_csv())) as server:
        yield {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": "bbmri-eric:ID:NL_biobank2",
            "page_size": 1,
            **FAST_RETRIES,
        }


TestTabularKit = connector_test_suite(TabularConnector, tabular_source)
TestFhirKit = connector_test_suite(FhirConnector, fhir_source)
TestBeaconKit = connector_test_suite(BeaconConnector, beacon_source)
TestRestKit = connector_test_suite(RestConnector, rest_source)
TestDirectoryKit = connector_test_suite(DirectoryConnector, directory_source)
