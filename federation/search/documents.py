"""Index documents: one flat row per sample with its donor, collection and consent folded in.

Every backend indexes these rows (the engine groups them under their donor). Disease codes
are stored with all their ancestors so any level of the ICD-10 hierarchy matches by one
membership test, and consent is stored as columns a compiled purpose can test.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federation.model import icd10
from federation.model.duo import Consent
from federation.model.records import Collection, Donor, Sample, consent_to_json

if TYPE_CHECKING:
    import pyarrow as pa

# Column name -> type; the embedded backend builds its Arrow schema from this and the
# engine mapping in schema/ is checked against it.
COLUMNS: dict[str, str] = {
    "biobank_id": "string",
    "sample_id": "string",
    "collection_id": "string",
    "collection_types": "string[]",
    "donor_id": "string",
    "donor_ord": "int",
    "sex": "string",
    "birth_year": "int",
    "age": "int",
    "material_type": "string",
    "collection_date": "date",
    "storage_temperature": "string",
    "availability": "string",
    "data_categories": "string[]",
    "diagnoses": "string[]",
    "disease_terms": "string[]",
    "chapters": "string[]",
    "blocks": "string[]",
    "orpha": "string[]",
    "consent": "string",
    "duo_permission": "string",
    "duo_modifiers": "string[]",
    "duo_diseases": "string[]",
    "duo_countries": "string[]",
    "duo_ts_date": "date",
    "duo_mor_date": "date",
    "withdrawn": "bool",
    "last_updated": "timestamp",
}


@functools.cache
def arrow_schema() -> pa.Schema:
    """The rows as Arrow/Parquet hold them: the embedded store's files and the engine's spool.

    Built on first use: pyarrow (some 60 MB of memory per process) is imported only by the
    processes that write or read Parquet files (sync, publish), not by every server process.
    """
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "string[]": pa.list_(pa.string()),
        "int": pa.int32(),
        "bool": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS.items()])


def __getattr__(name: str) -> pa.Schema:
    """`ARROW_SCHEMA`, the same as `arrow_schema()`, built when first named (PEP 562)."""
    if name == "ARROW_SCHEMA":
        return arrow_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A sample's DUO consent terms (`consent.matching` reads these and `consent`, nothing else).
DUO_COLUMNS = (
    "duo_permission",
    "duo_modifiers",
    "duo_diseases",
    "duo_countries",
    "duo_ts_date",
    "duo_mor_date",
)
CONSENT_COLUMNS = ("consent", *DUO_COLUMNS)

# The columns of a record page, in the order a record shows them.
RECORD_COLUMNS = (
    "biobank_id",
    "sample_id",
    "collection_id",
    "donor_id",
    "sex",
    "age",
    "material_type",
    "collection_date",
    "storage_temperature",
    "availability",
    "diagnoses",
    "data_categories",
    "consent",
    "last_updated",
    # The consent columns let the service explain each record's obligations.
    *DUO_COLUMNS,
)


# The facts a collection-level collection declares of itself (the Directory's), published
# with the generation's metadata beside the collection and matched by search/declared.py.
DECLARED_FIELDS: dict[str, str] = {
    "materials": "string[]",
    "diagnoses": "string[]",
    "disease_terms": "string[]",  # the diagnoses with their ancestors, as for sample rows
    "chapters": "string[]",
    "blocks": "string[]",
    "orpha": "string[]",
    "sexes": "string[]",
    "data_categories": "string[]",
    "storage_temperatures": "string[]",
    "size": "int",  # samples
    "donors": "int",
    "age_low": "int",
    "age_high": "int",
    "country": "string",
}


def collection_json(collection: Collection) -> dict[str, Any]:
    """A collection as published with a generation's metadata; a collection-level one
    carries its declared facts under `declared` (see DECLARED_FIELDS)."""
    published: dict[str, Any] = {
        "id": collection.id,
        "name": collection.name,
        "types": list(collection.types),
        "description": collection.description,
        "default_consent": consent_to_json(collection.default_consent)
        if collection.default_consent
        else None,
    }
    if collection.declared:
        terms, chapters, blocks = _disease_columns(collection.diagnoses)
        facts = {name: getattr(collection, name, None) for name in DECLARED_FIELDS}
        facts.update(disease_terms=terms, chapters=chapters, blocks=blocks)
        published["declared"] = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in facts.items()
        }
    return published


@dataclass(frozen=True)
class Orphan:
    """A sample that cannot be indexed because what it refers to is missing or rejected."""

    sample: Sample
    field: str
    value: str
    reason: str


def effective_consent(donor: Donor, collection: Collection) -> Consent | None:
    """A donor's own consent overrides the collection default; None means unknown."""
    return donor.consent if donor.consent is not None else collection.default_consent


def age_at_collection(sample: Sample, donor: Donor) -> int | None:
    """The sample's stated age, else derived from the donor's birth and the collection date.

    With a full birth date the age is exact (born 1989-11-18, sampled 2005-06-17: 15);
    with a birth year only it is the difference of the years, as close as that allows.
    """
    if sample.age_at_collection is not None:
        return sample.age_at_collection
    collected = sample.collection_date
    if collected is None:
        return None
    born = donor.birth_date
    if born is not None:
        before_birthday = (collected.month, collected.day) < (born.month, born.day)
        return collected.year - born.year - before_birthday
    if donor.birth_year is not None:
        return collected.year - donor.birth_year
    return None


def donor_ordinals(donors: Mapping[str, Donor]) -> dict[str, int]:
    """Small integers per donor: distinct counts over integers are several times faster."""
    return {donor_id: n for n, donor_id in enumerate(sorted(donors))}


def join_sample(
    sample: Sample,
    donors: Mapping[str, Donor],
    collections: Mapping[str, Collection],
    rejected_donors: Mapping[str, str],
    ordinals: Mapping[str, int],
) -> dict[str, Any] | Orphan:
    """The index row of a sample, or an Orphan when its donor or collection is missing."""
    donor = donors.get(sample.donor_id)
    if donor is None:
        why = rejected_donors.get(sample.donor_id)
        reason = f"donor was rejected: {why}" if why else "no such donor at the source"
        return Orphan(sample, "donor_id", sample.donor_id, reason)
    collection = collections.get(sample.collection_id)
    if collection is None:
        return Orphan(sample, "collection_id", sample.collection_id, "no such collection")
    return document(sample, donor, collection, ordinals[donor.id])


def document(sample: Sample, donor: Donor, collection: Collection, ordinal: int) -> dict[str, Any]:
    """One index row for a sample of a donor in a collection."""
    diagnoses = tuple(dict.fromkeys((*sample.diagnoses, *donor.diagnoses)))
    terms, chapters, blocks = _disease_columns(diagnoses)
    consent = effective_consent(donor, collection)
    return {
        "biobank_id": sample.biobank_id,
        "sample_id": sample.id,
        "collection_id": sample.collection_id,
        "collection_types": list(collection.types),
        "donor_id": donor.id,
        "donor_ord": ordinal,
        "sex": donor.sex,
        "birth_year": donor.birth_year,
        "age": age_at_collection(sample, donor),
        "material_type": sample.material_type,
        "collection_date": sample.collection_date,
        "storage_temperature": sample.storage_temperature,
        "availability": sample.availability,
        "data_categories": list(sample.data_categories),
        "diagnoses": list(diagnoses),
        "disease_terms": list(terms),
        "chapters": list(chapters),
        "blocks": list(blocks),
        "orpha": list(donor.orpha),
        **consent_columns(consent),
        "withdrawn": donor.consent_withdrawn,
        "last_updated": sample.last_updated,
    }


# A network has far fewer distinct diagnosis lists than samples: each list's hierarchy is
# worked out once.
@functools.lru_cache(maxsize=65_536)
def _disease_columns(
    diagnoses: tuple[str, ...],
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Every diagnosis with its ancestors, their chapters and their blocks, in order."""
    terms: dict[str, None] = {}
    chapters: dict[str, None] = {}
    blocks: dict[str, None] = {}
    for code in diagnoses:
        terms.update(dict.fromkeys(icd10.with_ancestors(code)))
        chapters[icd10.chapter(code)] = None
        block = icd10.block(code)
        if block:
            blocks[block] = None
    return tuple(terms), tuple(chapters), tuple(blocks)


def consent_columns(consent: Consent | None) -> dict[str, Any]:
    """Consent as flat columns; `duo_permission` None means unknown, which never permits."""
    if consent is None:
        return {
            "consent": None,
            "duo_permission": None,
            "duo_modifiers": [],
            "duo_diseases": [],
            "duo_countries": [],
            "duo_ts_date": None,
            "duo_mor_date": None,
        }
    text, permission, modifiers, diseases, countries, ts_date, mor_date = _consent_values(consent)
    return {
        "consent": text,
        "duo_permission": permission,
        "duo_modifiers": list(modifiers),
        "duo_diseases": list(diseases),
        "duo_countries": list(countries),
        "duo_ts_date": ts_date,
        "duo_mor_date": mor_date,
    }


# Donors share a handful of consents, and every sample row needs its donor's: computed once
# per distinct consent (immutable values; each row still gets lists of its own).
@functools.lru_cache(maxsize=4096)
def _consent_values(consent: Consent) -> tuple[Any, ...]:
    ts, mor, gs = consent.modifier("TS"), consent.modifier("MOR"), consent.modifier("GS")
    return (
        consent.to_text(),
        consent.permission.code,
        tuple(m.code for m in consent.modifiers),
        consent.permission.diseases,
        gs.countries if gs else (),
        ts.date if ts else None,
        mor.date if mor else None,
    )


def record_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public shape of a sample record: what a role with record access may see."""
    date = row.get("collection_date")
    updated = row.get("last_updated")
    return {
        "biobank_id": row["biobank_id"],
        "sample_id": row["sample_id"],
        "collection_id": row["collection_id"],
        "donor_id": row["donor_id"],
        "sex": row["sex"],
        "age": row["age"],
        "material_type": row["material_type"],
        "collection_date": date.isoformat() if isinstance(date, dt.date) else date,
        "storage_temperature": row["storage_temperature"],
        "availability": row["availability"],
        "diagnoses": list(row["diagnoses"] or ()),
        "data_categories": list(row["data_categories"] or ()),
        "consent": row["consent"],
        "last_updated": updated.isoformat() if isinstance(updated, dt.datetime) else updated,
    }
