"""Sources for connector tests: the real-format fixtures loaded into loopback servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.loopback import FhirStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FHIR_BUNDLE = FIXTURES / "fhir" / "Bundle-53ef12a3-1e31-4fc1-adf6-9d30dc6c4784.json"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
MATERIAL_SYSTEM = "https://fhir.bbmri.de/CodeSystem/SampleMaterialType"
CUSTODIAN = "https://fhir.bbmri.de/StructureDefinition/Custodian"


def fixture_json(*parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))


def fhir_store() -> FhirStore:
    """The BBMRI.de example Bundle and Collection, as a FHIR server would hold them.

    The example Specimen's Custodian extension points at `Organization/collection-2`, so the
    example Collection is stored under that id.
    """
    store = FhirStore()
    collection = fixture_json("fhir", "exampleCollection.json")
    collection["id"] = "collection-2"
    store.put(collection)
    for entry in json.loads(FHIR_BUNDLE.read_text(encoding="utf-8"))["entry"]:
        store.put(entry["resource"])
    return store


def patient(ident: str, gender: str = "female", birth: str = "1970-03-02") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": ident, "gender": gender, "birthDate": birth}


def condition(ident: str, patient_id: str, code: str, system: str = ICD10) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": ident,
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": system, "code": code}]},
    }


def specimen(
    ident: str,
    patient_id: str,
    material: str = "blood-plasma",
    date: str = "2020-05-01",
    collection: str = "collection-2",
) -> dict[str, Any]:
    return {
        "resourceType": "Specimen",
        "id": ident,
        "subject": {"reference": f"Patient/{patient_id}"},
        "type": {"coding": [{"system": MATERIAL_SYSTEM, "code": material}]},
        "collection": {"collectedDateTime": date},
        "extension": [
            {"url": CUSTODIAN, "valueReference": {"reference": f"Organization/{collection}"}}
        ],
    }


def grown_fhir_store(patients: int = 6) -> FhirStore:
    """The fixtures plus a few patients with conditions and specimens, one of each dirty."""
    store = fhir_store()
    for n in range(patients):
        store.put(patient(f"p{n}", "female" if n % 2 else "male"))
        store.put(condition(f"c{n}", f"p{n}", "C50.9" if n % 2 else "I10"))
        store.put(specimen(f"s{n}a", f"p{n}", "blood-serum"))
        store.put(specimen(f"s{n}b", f"p{n}", "dna"))
    store.put(patient("bad-sex", "X"))  # unknown gender code
    store.put(specimen("bad-material", "p0", "blood-spot"))
    store.put(specimen("bad-date", "p1", date="2019-13-45"))
    store.put(specimen("no-donor", "p404"))
    store.put(condition("bad-icd", "p2", "C50.99"))  # not WHO ICD-10: p2 is rejected
    return store


def beacon_fixtures() -> tuple[list[Any], list[Any], list[Any]]:
    """The pi-api test set: datasets, individuals, biosamples (dirty, as published)."""
    return (
        fixture_json("beacon-v2", "datasets.json"),
        fixture_json("beacon-v2", "individuals.json"),
        fixture_json("beacon-v2", "biosamples.json"),
    )


# What a biobank admin sets to read the pi-api set: its sample origin (ovary, frozen) has no
# MIABIS material of its own, and its diseases are MONDO terms, not ICD-10.
BEACON_MAPPING = {
    "material_codes": {"UBERON:0000992": "TISSUE_FROZEN"},
    "unmapped_diseases": "ignore",
    "collection_types": ["DISEASE_SPECIFIC"],
}


def directory_csv() -> str:
    return FIXTURES.joinpath("bbmri-directory", "demo-Collections.csv").read_text("utf-8")


def rest_options(url: str, style: str, **extra: Any) -> dict[str, Any]:
    """A REST connector config for tests.support.loopback.RestApp."""
    paging: dict[str, Any] = {"style": style, "size": 3, "total_field": "meta.total"}
    if style == "cursor":
        paging["cursor_field"] = "meta.next"
    return {
        "base_url": f"{url}/api",
        "paging": paging,
        "records": "data",
        "streams": {
            "collections": {
                "path": "collections",
                "fields": {"id": "id", "name": "title", "types": "kinds"},
            },
            "donors": {
                "path": "donors",
                "fields": {"id": "id", "sex": "gender", "diagnoses": "conditions[].icd10"},
                "values": {"sex": {"f": "FEMALE", "m": "MALE"}},
                "replication_key": "updated_at",
                "since_param": "updated_since",
                "deleted_field": "deleted",
            },
            "samples": {
                "path": "samples",
                "fields": {
                    "id": "id",
                    "donor_id": "donor.id",
                    "collection_id": "study",
                    "material_type": "material",
                    "collection_date": "drawn",
                },
                "replication_key": "updated_at",
                "since_param": "updated_since",
                "deleted_field": "deleted",
            },
        },
        **extra,
    }


def fill_rest(app: Any, donors: int = 4, samples_per_donor: int = 2) -> None:
    app.put("collections", {"id": "C1", "title": "Main", "kinds": ["HOSPITAL"]})
    for n in range(donors):
        app.put(
            "donors",
            {"id": f"D{n}", "gender": "f" if n % 2 else "m", "conditions": [{"icd10": "C50.9"}]},
        )
        for k in range(samples_per_donor):
            app.put(
                "samples",
                {
                    "id": f"S{n}-{k}",
                    "donor": {"id": f"D{n}"},
                    "study": "C1",
                    "material": "PLASMA" if k else "DNA",
                    "drawn": "2021-04-05",
                },
            )
