"""Beacon filters to the query model, and `/filtering_terms` from the same tables.

What maps to what (docs/beacon.md has the full table):

- ICD-10: ontology filters `ICD10:<code>` (chapter, block, category or subcategory). With
  `includeDescendantTerms` true (the spec's default) a code matches everything under it,
  as a GraphQL `diseases` search does; false matches the code only as recorded.
- Sex: NCIT (`NCIT:C16576` female, `NCIT:C20197` male, `NCIT:C17998` unknown) or PATO.
- Material: UBERON / OBI / CL / EFO terms for the MIABIS material types that have one
  (`MATERIAL_TERMS`), and `material_type:<MIABIS code>` for every MIABIS material type.
- Collection type: `collection_type:<MIABIS code>` (custom filters: Beacon has no term).
- Age at collection: the alphanumeric filter `{"id": "age", "operator": ">=", "value":
  "P40Y"}`; values are ISO 8601 durations in whole years (or plain years).

Beacon ANDs its filters. The query model ORs values within a field, so two filters on one
field are intersected where that is exact (sex, material, age) and refused where it is not
(two disease terms, two collection types); nothing is ever dropped or widened silently.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.beacon import BeaconRequestError
from federation.model import icd10, vocab

SCOPES = ("individual", "biosample")
# Scope spellings clients send: the entry type names, singular or plural.
_KNOWN_SCOPES = {"individual", "individuals", "biosample", "biosamples"}
AGE_FILTER = "age"
MAX_AGE_YEARS = 150

SEX_TERMS: dict[str, tuple[str, ...]] = {
    "NCIT:C16576": ("FEMALE",),
    "NCIT:C20197": ("MALE",),
    "NCIT:C17998": ("UNKNOWN", "NAV", "NASK"),
    "PATO:0000383": ("FEMALE",),
    "PATO:0000384": ("MALE",),
    "PATO:0001340": ("UNDIFFERENTIAL",),
}
SEX_LABELS = {
    "NCIT:C16576": "female",
    "NCIT:C20197": "male",
    "NCIT:C17998": "unknown",
    "PATO:0000383": "female",
    "PATO:0000384": "male",
    "PATO:0001340": "undifferentiated",
}
# The term a record's sex is written with (the first term above that names it).
SEX_CURIES = {code: curie for curie, codes in reversed(SEX_TERMS.items()) for code in codes}

# MIABIS material type -> the ontology term records carry in `sampleOriginType`. UBERON
# for body fluids, OBI for specimens and extracts, CL and EFO for cells: the terms the
# project's Beacon connector reads back (connectors/beacon.py ORIGINS), so a harvest of
# this node maps them to the same material types. Types without a term here are written
# and filtered as `material_type:<code>`.
MATERIAL_TERMS: dict[str, tuple[str, str]] = {
    "WHOLE_BLOOD": ("UBERON:0000178", "blood"),
    "PLASMA": ("UBERON:0001969", "blood plasma"),
    "SERUM": ("UBERON:0001977", "blood serum"),
    "URINE": ("UBERON:0001088", "urine"),
    "SALIVA": ("UBERON:0001836", "saliva"),
    "FECES": ("UBERON:0001988", "feces"),
    "TISSUE_FROZEN": ("OBI:0000922", "frozen specimen"),
    "DNA": ("OBI:0001051", "DNA extract"),
    "RNA": ("OBI:0000880", "RNA extract"),
    "PERIPHERAL_BLOOD_CELLS": ("CL:2000001", "peripheral blood mononuclear cell"),
    "CELL_LINES": ("EFO:0000322", "cell line"),
}
MATERIAL_PREFIX = "material_type:"
COLLECTION_TYPE_PREFIX = "collection_type:"

ONTOLOGIES: dict[str, tuple[str, str]] = {
    "ICD10": ("International Classification of Diseases, 10th revision (WHO 2019)", ""),
    "NCIT": ("NCI Thesaurus", "http://purl.obolibrary.org/obo/NCIT_"),
    "PATO": ("Phenotype And Trait Ontology", "http://purl.obolibrary.org/obo/PATO_"),
    "UBERON": ("Uber-anatomy ontology", "http://purl.obolibrary.org/obo/UBERON_"),
    "OBI": ("Ontology for Biomedical Investigations", "http://purl.obolibrary.org/obo/OBI_"),
    "CL": ("Cell Ontology", "http://purl.obolibrary.org/obo/CL_"),
    "EFO": ("Experimental Factor Ontology", "http://www.ebi.ac.uk/efo/EFO_"),
}

_ICD10_ID = re.compile(r"^(?:ICD-?10(?:CM|WHO)?|icd10):", re.IGNORECASE)
_YEARS = re.compile(r"^P(\d+)Y$")
_OPERATORS = (">=", "<=", ">", "<", "=")


@functools.cache
def material_terms() -> dict[str, str]:
    """Every filter id that names a material, to its MIABIS code."""
    out = {curie: code for code, (curie, _) in MATERIAL_TERMS.items()}
    for term in vocab.material_types().terms:
        out[f"{MATERIAL_PREFIX}{term.code}"] = term.code
        # The OBI terms the MIABIS table itself gives (e.g. OBI:0100016 for plasma).
        if term.ontology_uri:
            local = term.ontology_uri.rsplit("/", 1)[-1]
            out.setdefault(local.replace("_", ":", 1), term.code)
    return out


def material_curie(code: str) -> tuple[str, str]:
    """The term (id, label) a record of this material carries."""
    if code in MATERIAL_TERMS:
        return MATERIAL_TERMS[code]
    return f"{MATERIAL_PREFIX}{code}", vocab.material_types().label(code)


@dataclass
class _Fields:
    """Filters gathered per query-model field, ANDed as Beacon means them."""

    diseases: list[tuple[str, str, bool]] = field(default_factory=list)  # (id, code, subtree)
    sexes: set[str] | None = None
    materials: set[str] | None = None
    collection_types: list[tuple[str, str]] = field(default_factory=list)
    age_min: int | None = None
    age_max: int | None = None

    def narrow(self, name: str, filter_id: str, allowed: Sequence[str]) -> None:
        current: set[str] | None = getattr(self, name)
        narrowed = set(allowed) if current is None else current & set(allowed)
        if not narrowed:
            raise BeaconRequestError(
                "filters",
                filter_id,
                f"excludes the other {name} filters: a record has one {name[:-1]}, so no "
                "record can match them all",
            )
        setattr(self, name, narrowed)


def query_fields(filters: Sequence[Any]) -> dict[str, Any]:
    """The query-model arguments (for `SampleQuery.parse`) of a list of Beacon filters."""
    gathered = _Fields()
    for n, item in enumerate(filters):
        where = f"filters[{n}]"
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, Mapping):
            raise BeaconRequestError(where, item, "a filter is an object with an `id`")
        filter_id = item.get("id")
        if not isinstance(filter_id, str) or not filter_id.strip():
            raise BeaconRequestError(f"{where}.id", filter_id, "needs a filter id")
        scope = item.get("scope")
        if scope is not None and scope not in _KNOWN_SCOPES:
            raise BeaconRequestError(
                f"{where}.scope", scope, f"not an entry type these filters apply to {SCOPES}"
            )
        _one(gathered, item, filter_id.strip(), where)
    return _as_query(gathered)


def _one(gathered: _Fields, item: Mapping[str, Any], filter_id: str, where: str) -> None:
    if "operator" in item or "value" in item:
        _alphanumeric(gathered, item, filter_id, where)
        return
    if _ICD10_ID.match(filter_id):
        subtree = item.get("includeDescendantTerms", True)
        if not isinstance(subtree, bool):
            raise BeaconRequestError(f"{where}.includeDescendantTerms", subtree, "must be boolean")
        try:
            code = icd10.normalise(filter_id)
        except icd10.UnknownCode as err:
            raise BeaconRequestError(f"{where}.id", filter_id, str(err)) from None
        gathered.diseases.append((filter_id, code, subtree))
    elif filter_id.upper() in SEX_TERMS:
        gathered.narrow("sexes", filter_id, SEX_TERMS[filter_id.upper()])
    elif filter_id in material_terms():
        gathered.narrow("materials", filter_id, [material_terms()[filter_id]])
    elif filter_id.startswith(COLLECTION_TYPE_PREFIX):
        kind = vocab.collection_types().canonical(filter_id[len(COLLECTION_TYPE_PREFIX) :])
        if kind is None:
            raise BeaconRequestError(
                f"{where}.id", filter_id, "not a MIABIS collection type (see /filtering_terms)"
            )
        gathered.collection_types.append((filter_id, kind))
    else:
        raise BeaconRequestError(
            f"{where}.id",
            filter_id,
            "not a filter this beacon knows; /filtering_terms lists them (ICD10:, NCIT sex, "
            "material and collection type terms, and `age`)",
        )


def _alphanumeric(gathered: _Fields, item: Mapping[str, Any], filter_id: str, where: str) -> None:
    if filter_id != AGE_FILTER:
        raise BeaconRequestError(
            f"{where}.id", filter_id, f"the only alphanumeric filter here is {AGE_FILTER!r}"
        )
    operator = item.get("operator", "=")
    if operator not in _OPERATORS:
        raise BeaconRequestError(
            f"{where}.operator", operator, f"age takes one of {', '.join(_OPERATORS)}"
        )
    years = _years(item.get("value"), f"{where}.value")
    low, high = {
        ">=": (years, None),
        ">": (years + 1, None),
        "<=": (None, years),
        "<": (None, years - 1),
        "=": (years, years),
    }[operator]
    if low is not None:
        gathered.age_min = low if gathered.age_min is None else max(gathered.age_min, low)
    if high is not None:
        gathered.age_max = high if gathered.age_max is None else min(gathered.age_max, high)
    low_end, high_end = gathered.age_min or 0, gathered.age_max
    if low_end > MAX_AGE_YEARS or (high_end is not None and (high_end < 0 or low_end > high_end)):
        raise BeaconRequestError(
            where,
            f"age {operator} {item.get('value')}",
            f"leaves no age between 0 and {MAX_AGE_YEARS}: the age filters exclude each other",
        )


def _years(value: Any, where: str) -> int:
    text = str(value).strip() if isinstance(value, str | int) else ""
    match = _YEARS.match(text.upper())
    if match:
        years = int(match.group(1))
    elif text.isdigit():
        years = int(text)
    else:
        raise BeaconRequestError(
            where, value, "an age is an ISO 8601 duration in whole years (P40Y) or a number"
        )
    if years > MAX_AGE_YEARS:
        raise BeaconRequestError(where, value, f"ages go up to {MAX_AGE_YEARS} years")
    return years


def _as_query(gathered: _Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if len(gathered.diseases) > 1:
        raise BeaconRequestError(
            "filters",
            [d[0] for d in gathered.diseases],
            "one ICD-10 filter per request: Beacon ANDs filters and a search here takes one "
            "disease term (with its subtree)",
        )
    if gathered.diseases:
        _, code, subtree = gathered.diseases[0]
        out["diseases" if subtree else "exact_diseases"] = [code]
    if len({code for _, code in gathered.collection_types}) > 1:
        raise BeaconRequestError(
            "filters",
            [f for f, _ in gathered.collection_types],
            "one collection type per request: Beacon ANDs filters and a search here takes "
            "one collection type",
        )
    if gathered.collection_types:
        out["collection_types"] = [gathered.collection_types[0][1]]
    if gathered.sexes is not None:
        out["sexes"] = sorted(gathered.sexes)
    if gathered.materials is not None:
        out["materials"] = sorted(gathered.materials)
    if gathered.age_min is not None:
        out["age_min"] = max(0, gathered.age_min)
    if gathered.age_max is not None:
        out["age_max"] = min(MAX_AGE_YEARS, gathered.age_max)
    return out


@functools.cache
def filtering_terms() -> tuple[dict[str, Any], ...]:
    """Every filter this beacon accepts, from the ICD-10 and MIABIS tables the search uses."""
    terms: list[dict[str, Any]] = [
        {
            "type": "alphanumeric",
            "id": AGE_FILTER,
            "label": "age at collection, ISO 8601 duration in years (P40Y); =, <, >, <=, >=",
            "scopes": list(SCOPES),
        }
    ]
    for curie in SEX_TERMS:
        prefix = curie.split(":", 1)[0]
        terms.append(_term(ONTOLOGIES[prefix][0], curie, SEX_LABELS[curie]))
    for filter_id, code in material_terms().items():
        prefix = filter_id.split(":", 1)[0]
        kind = "custom" if filter_id.startswith(MATERIAL_PREFIX) else ONTOLOGIES[prefix][0]
        label = vocab.material_types().label(code)
        terms.append(_term(kind, filter_id, f"material type: {label}", ["biosample"]))
    for term in vocab.collection_types().terms:
        terms.append(
            _term("custom", f"{COLLECTION_TYPE_PREFIX}{term.code}", f"collection: {term.label}")
        )
    for code in icd10.all_codes():
        terms.append(_term(ONTOLOGIES["ICD10"][0], f"ICD10:{code}", icd10.name(code)))
    return tuple(terms)


def _term(kind: str, ident: str, label: str, scopes: Sequence[str] = SCOPES) -> dict[str, Any]:
    return {"type": kind, "id": ident, "label": label, "scopes": list(scopes)}


def resources() -> list[dict[str, Any]]:
    """The ontologies the filtering terms come from."""
    out = []
    for prefix, (name, iri) in ONTOLOGIES.items():
        resource = {"id": prefix.lower(), "name": name, "nameSpacePrefix": prefix}
        if iri:
            resource["iriPrefix"] = iri
        out.append(resource)
    return out
