"""One code mapping vocabulary for every connector: mappings, unmapped_diseases/materials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.beacon import BeaconConnector
from connectors.directory import DirectoryConnector
from connectors.fhir import FhirConnector
from connectors.rest import RestConnector
from connectors.tabular import TabularConnector
from federation.sync.connector import ConfigError, Connector
from tests.conftest import Federation
from tests.connectors.sources import condition, fhir_store, patient, specimen
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import FhirApp, serving

SNOMED_BREAST_CANCER = "http://snomed.info/sct|254837009"
# The least config each connector accepts, so the mapping options can be tried on all.
BASE_CONFIGS: list[tuple[type[Connector], dict[str, Any]]] = [
    (TabularConnector, {"path": "x"}),
    (FhirConnector, {"base_url": "http://127.0.0.1:9"}),
    (BeaconConnector, {"base_url": "http://127.0.0.1:9"}),
    (
        RestConnector,
        {
            "base_url": "http://127.0.0.1:9",
            "paging": {"style": "page"},
            "streams": {
                name: {"path": name, "fields": {"id": "id"}}
                for name in ("collections", "donors", "samples")
            },
        },
    ),
    (DirectoryConnector, {"base_url": "http://127.0.0.1:9", "biobank": "bbmri-eric:ID:X"}),
]
CONNECTOR_IDS = [cls.name for cls, _ in BASE_CONFIGS]


@pytest.mark.parametrize(("cls", "base"), BASE_CONFIGS, ids=CONNECTOR_IDS)
def test_every_connector_takes_the_same_mapping_options(
    cls: type[Connector], base: dict[str, Any]
) -> None:
    options = {
        "mappings": {
            "diseases": {"F3181": "F31.8"},
            "materials": {"blood-spot": "WHOLE_BLOOD"},
            "sex": {"W": "FEMALE"},
            "consent": {"open": "GRU"},
        },
        "unmapped_diseases": "ignore",
        "unmapped_materials": "OTHER",
    }
    connector = cls("bb", {**base, **options}, base_dir=".")
    assert connector.config["mappings"]["sex"] == {"W": "FEMALE"}
    assert connector.config["unmapped_materials"] == "OTHER"


@pytest.mark.parametrize(("cls", "base"), BASE_CONFIGS, ids=CONNECTOR_IDS)
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mappings": {"diseases": {"X": "C50.99"}}}, r"mappings\.diseases: X -> 'C50\.99'"),
        ({"mappings": {"materials": {"x": "BLOOD"}}}, r"mappings\.materials: x -> 'BLOOD'"),
        ({"mappings": {"sex": {"w": "WOMAN"}}}, r"mappings\.sex: w -> 'WOMAN'"),
        ({"mappings": {"consent": {"o": "GRU;HMB"}}}, r"mappings\.consent: o -> 'GRU;HMB'"),
        ({"unmapped_diseases": "drop"}, "unmapped_diseases"),
        ({"unmapped_materials": "BLOOD"}, r"unmapped_materials: 'BLOOD' is neither reject"),
    ],
)
def test_a_bad_mapping_target_is_a_config_error_naming_it(
    cls: type[Connector], base: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cls("bb", {**base, **options}, base_dir=".")


def test_fhir_codes_are_mapped_and_unknown_ones_handled_as_the_admin_says(
    tmp_path: Path,
) -> None:
    store = fhir_store()
    store.put(patient("p1", "female"))
    store.put(condition("c1", "p1", "254837009", system="http://snomed.info/sct"))
    store.put(condition("c1b", "p1", "C50.99"))  # ICD-10-GM, not WHO: let go (ignore)
    store.put(specimen("s1", "p1", "blood-spot"))  # mapped by the admin
    store.put(patient("p2", "W"))  # a local sex code, mapped
    store.put(specimen("s2", "p2", "plasma-sample-x"))  # unknown: OTHER, as the admin says
    options = {
        "page_size": 4,
        "mappings": {
            "diseases": {SNOMED_BREAST_CANCER: "C50.9"},
            "materials": {"blood-spot": "WHOLE_BLOOD"},
            "sex": {"W": "FEMALE"},
        },
        "unmapped_diseases": "ignore",
        "unmapped_materials": "OTHER",
        **FAST_RETRIES,
    }
    with serving(FhirApp(store)) as server:
        network = HttpNetwork(
            tmp_path, [entry("bb", "fhir", {"base_url": f"{server.url}/fhir", **options})]
        )
        run = network.sync("bb")
    assert (run.outcome, run.rejected, run.partial) == ("succeeded", 0, 0)
    assert network.counts(diseases=["C50"]) == {"bb": (1, 1)}
    assert network.counts(materials=["WHOLE_BLOOD"], diseases=["C50"]) == {"bb": (1, 1)}
    assert network.counts(materials=["OTHER"], sexes=["FEMALE"]) == {"bb": (1, 1)}
    assert network.quarantine("bb") == {}
    network.close()


def test_tabular_codes_are_mapped_before_validation(federation: Federation) -> None:
    bb = federation.biobank("bb1")
    bb.donor("D1", "W", 1970, diagnoses="F3181;E11.9")
    bb.sample("S1", "D1", "Vollblut")
    federation.write()
    path = federation.root / "network.yaml"
    text = path.read_text("utf-8").replace(
        "      path: sources/bb1",
        "      path: sources/bb1\n"
        "      mappings:\n"
        "        sex: {W: FEMALE}\n"
        "        diseases: {F3181: F31.8}\n"
        "        materials: {Vollblut: WHOLE_BLOOD}",
    )
    path.write_text(text, encoding="utf-8")
    from federation.sync.run import sync_biobank

    run = sync_biobank(
        federation.runtime.network().get("bb1"),
        federation.runtime.backend,
        federation.runtime.state,
        locks_dir=federation.settings.locks_dir,
    )
    assert (run.rejected, run.partial) == (0, 0)
    from federation.search.query import SampleQuery

    result = federation.runtime.search.search(
        SampleQuery.parse({"diseases": ["F31"], "sexes": ["FEMALE"], "materials": ["WHOLE_BLOOD"]}),
        facets=(),
    )
    assert [(b.biobank_id, b.samples.value) for b in result.by_biobank] == [("bb1", 1)]
