"""Beacon v2 default-model documents built from what a role may see of our records.

Biosamples and individuals are made only from `record_view` rows (the public shape of a
sample record, federation/search/documents.py), so a Beacon record never carries a field
GraphQL would not show the same role. Datasets are collections, made from the collection
facts a biobank's published generation carries (the same GraphQL's `collections` shows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from federation.beacon.filters import SEX_CURIES, SEX_LABELS, material_curie
from federation.model import duo, icd10

# DUO as copied into schema/vocab/duo.csv carries no release number; this says where the
# terms come from instead of inventing one.
DUO_VERSION = "EBISPOT/DUO duo.csv (schema/vocab/duo.csv)"
UNKNOWN = ("NCIT:C17998", "unknown")


def _disease_term(code: str) -> dict[str, Any]:
    return {"id": f"ICD10:{code}", "label": icd10.name(code) if icd10.is_code(code) else code}


def biosample(view: Mapping[str, Any]) -> dict[str, Any]:
    """A `biosample` record of one sample view."""
    material = view.get("material_type")
    origin_id, origin_label = material_curie(material) if material else UNKNOWN
    record: dict[str, Any] = {
        "id": view["sample_id"],
        "individualId": view["donor_id"],
        # Samples are not classified reference / abnormal here, and the model requires
        # `biosampleStatus`: "unknown" is the truth.
        "biosampleStatus": {"id": UNKNOWN[0], "label": UNKNOWN[1]},
        "sampleOriginType": {"id": origin_id, "label": origin_label},
        "info": {
            key: value
            for key, value in (
                ("biobankId", view["biobank_id"]),
                ("collectionId", view["collection_id"]),
                ("materialType", material),
                ("diagnoses", [f"ICD10:{c}" for c in view.get("diagnoses") or ()]),
                ("storageTemperature", view.get("storage_temperature")),
                ("availability", view.get("availability")),
                ("dataCategories", list(view.get("data_categories") or ())),
                ("dataUse", view.get("consent")),
                ("lastUpdated", view.get("last_updated")),
            )
            if value is not None
        },
    }
    if view.get("collection_date"):
        record["collectionDate"] = view["collection_date"]
    if view.get("age") is not None:
        record["collectionMoment"] = f"P{int(view['age'])}Y"
    return record


def individual(views: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An `individual` record from the sample views of one donor (all of them)."""
    first = views[0]
    sex = str(first.get("sex") or "")
    curie = SEX_CURIES.get(sex)
    sex_id, sex_label = (curie, SEX_LABELS[curie]) if curie else UNKNOWN
    # Sample rows carry the donor's diagnoses plus the sample's own: what every one of the
    # donor's samples shares is the donor's (sample-only codes stay on the biosample).
    shared = set(first.get("diagnoses") or ())
    for view in views[1:]:
        shared &= set(view.get("diagnoses") or ())
    ordered = [c for c in first.get("diagnoses") or () if c in shared]
    info: dict[str, Any] = {
        "biobankId": first["biobank_id"],
        # Withdrawn donors are never in an answer, so every individual here is consented.
        "consentWithdrawn": False,
    }
    if first.get("consent"):
        info["dataUse"] = first["consent"]
    return {
        "id": first["donor_id"],
        "sex": {"id": sex_id, "label": sex_label},
        "diseases": [{"diseaseCode": _disease_term(c)} for c in ordered],
        "info": info,
    }


def individuals(views: Iterable[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(collection id, individual) per donor, in the order the donors first appear."""
    by_donor: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for view in views:
        by_donor.setdefault((view["biobank_id"], view["donor_id"]), []).append(view)
    return [(rows[0]["collection_id"], individual(rows)) for rows in by_donor.values()]


def dataset(biobank_id: str, collection: Mapping[str, Any]) -> dict[str, Any]:
    """A `dataset` record of one collection."""
    record: dict[str, Any] = {
        "id": collection["id"],
        "name": collection.get("name") or collection["id"],
        "info": {"biobankId": biobank_id, "collectionTypes": list(collection.get("types") or ())},
    }
    if collection.get("description"):
        record["description"] = collection["description"]
    terms = collection.get("default_consent")
    if terms:
        record["dataUseConditions"] = {"duoDataUse": data_use(terms)}
    return record


def data_use(terms: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A collection's default consent (published as `{code, diseases}` terms) as Beacon
    `duoDataUse`, diseases as ICD-10 modifiers."""
    definitions = duo.definitions()
    out = []
    for term in terms:
        definition = definitions[str(term["code"])]
        use: dict[str, Any] = {
            "id": definition.id,
            "label": definition.label,
            "version": DUO_VERSION,
        }
        if term.get("diseases"):
            use["modifiers"] = [_disease_term(str(c)) for c in term["diseases"]]
        out.append(use)
    return out
