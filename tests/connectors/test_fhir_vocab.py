"""FHIR: the BBMRI.de IG's specimen types with their sub-types, and exact ages."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from federation import SCHEMA_DIR
from tests.connectors.sources import fhir_store, fixture_json, patient, specimen
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import FhirApp, serving

# How this test reads the IG's top-level specimen types as MIABIS material types; a
# sub-type is what its parent is (the IG's hierarchy, read from the CodeSystem itself).
TOP_LEVEL = {
    "whole-blood": "WHOLE_BLOOD",
    "dried-whole-blood": "WHOLE_BLOOD",
    "bone-marrow": "OTHER",
    "buffy-coat": "BUFFY_COAT",
    "peripheral-blood-cells-vital": "PERIPHERAL_BLOOD_CELLS",
    "blood-plasma": "PLASMA",
    "blood-serum": "SERUM",
    "ascites": "OTHER",
    "csf-liquor": "OTHER",
    "saliva": "SALIVA",
    "stool-faeces": "FECES",
    "urine": "URINE",
    "swab": "OTHER",
    "liquid-other": "OTHER",
    "tissue-ffpe": "TISSUE_PARAFFIN_EMBEDDED",
    "tissue-frozen": "TISSUE_FROZEN",
    "tissue-other": "OTHER",
    "dna": "DNA",
    "rna": "RNA",
    "derivative-other": "OTHER",
}


def concepts(items: list[dict[str, Any]], parent: str = "") -> Iterator[tuple[str, str, str]]:
    """(code, display, parent) of every concept of a CodeSystem, depth first."""
    for concept in items:
        yield concept["code"], concept["display"], parent
        yield from concepts(concept.get("concept", []), concept["code"])


def ig_codes() -> dict[str, str]:
    """IG specimen type -> the MIABIS type this test expects for it."""
    system = fixture_json("fhir", "CodeSystem-SampleMaterialType.json")
    out = {}
    for code, _, parent in concepts(system["concept"]):
        out[code] = TOP_LEVEL[parent or code]
    return out


def test_the_vocabulary_table_holds_every_ig_code_with_its_parent() -> None:
    system = fixture_json("fhir", "CodeSystem-SampleMaterialType.json")
    path = SCHEMA_DIR / "vocab" / "bbmri_de_sample_material_types.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        table = {
            r["code"]: (r["display"], r["parent"], r["material_type"])
            for r in csv.DictReader(handle)
        }
    published = {code: (display, parent) for code, display, parent in concepts(system["concept"])}
    assert {c: row[:2] for c, row in table.items()} == published
    assert {c: row[2] for c, row in table.items()} == ig_codes()
    assert system["url"] in (SCHEMA_DIR / "vocab" / "SOURCES.md").read_text("utf-8")


def test_every_ig_specimen_type_is_indexed_as_its_miabis_material(tmp_path: Path) -> None:
    expected = ig_codes()
    store = fhir_store()
    for n, code in enumerate(expected):
        store.put(patient(f"p{n}"))
        store.put(specimen(f"s{n}", f"p{n}", code))
    with serving(FhirApp(store)) as server:
        options = {"base_url": f"{server.url}/fhir", "page_size": 10, **FAST_RETRIES}
        network = HttpNetwork(tmp_path, [entry("bb", "fhir", options)])
        run = network.sync("bb")
    assert (run.outcome, run.rejected) == ("succeeded", 0)
    # The example Specimen of the Bundle is whole blood too.
    wanted = [*expected.values(), "WHOLE_BLOOD"]
    for material in sorted(set(wanted)):
        count = wanted.count(material)
        assert network.counts(materials=[material]) == {"bb": (count, count)}, material
    network.close()


def test_age_at_collection_is_exact_from_full_dates(tmp_path: Path) -> None:
    # The IG's example: Patient/0 born 1989-11-18, Specimen/0-specimen collected 2005-06-17.
    bundle = fixture_json("fhir", "Bundle-53ef12a3-1e31-4fc1-adf6-9d30dc6c4784.json")
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    born = resources["Patient"]["birthDate"]
    taken = resources["Specimen"]["collection"]["collectedDateTime"]
    assert (born, taken) == ("1989-11-18", "2005-06-17")
    store = fhir_store()
    store.put(patient("year-only", birth="1989"))  # a year only: the years' difference
    store.put(specimen("s-year", "year-only", date="2005-06-17"))
    with serving(FhirApp(store)) as server:
        options = {"base_url": f"{server.url}/fhir", **FAST_RETRIES}
        network = HttpNetwork(tmp_path, [entry("bb", "fhir", options)])
        network.sync("bb")
    assert network.counts(age_min=15, age_max=15) == {"bb": (1, 1)}
    assert network.counts(age_min=16, age_max=16) == {"bb": (1, 1)}  # the year-only donor
    network.close()
