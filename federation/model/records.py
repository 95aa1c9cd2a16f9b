"""Canonical records: what every connector maps its source into, validated by marshmallow.

Validation errors name the field and the value, because a biobank admin reads them in the
quarantine and must be able to find the row at the source.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import iso3166
from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from federation.model import duo, icd10, vocab

# A donor older than this at collection is a data error (the oldest verified human was 122).
MAX_AGE_YEARS = 125
EARLIEST_BIRTH_YEAR = 1880


@dataclass(frozen=True)
class SourceRef:
    """Where a record came from, so a re-sync replaces it instead of duplicating it."""

    biobank_id: str
    connector: str
    stream: str
    source_id: str


@dataclass(frozen=True)
class Biobank:
    id: str
    name: str
    country: str
    name_ja: str | None = None
    url: str | None = None
    contact_email: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Collection:
    id: str
    biobank_id: str
    name: str
    types: tuple[str, ...]
    default_consent: duo.Consent | None = None
    description: str | None = None
    # Collection-level facts (the Directory's): what the collection declares of itself,
    # searched with counts marked as declared, never as sample rows (search/declared.py).
    declared: bool = False
    materials: tuple[str, ...] = ()
    diagnoses: tuple[str, ...] = ()
    orpha: tuple[str, ...] = ()
    sexes: tuple[str, ...] = ()
    data_categories: tuple[str, ...] = ()
    storage_temperatures: tuple[str, ...] = ()
    size: int | None = None  # samples
    donors: int | None = None
    age_low: int | None = None  # years at collection
    age_high: int | None = None
    country: str | None = None


@dataclass(frozen=True)
class Donor:
    id: str
    biobank_id: str
    sex: str
    birth_year: int | None = None
    age_at_recruitment: int | None = None
    diagnoses: tuple[str, ...] = ()
    orpha: tuple[str, ...] = ()
    consent: duo.Consent | None = None
    consent_withdrawn: bool = False
    birth_date: dt.date | None = None  # when the source has the full date: exact ages


@dataclass(frozen=True)
class Sample:
    id: str
    biobank_id: str
    collection_id: str
    donor_id: str
    material_type: str
    collection_date: dt.date | None = None
    age_at_collection: int | None = None
    storage_temperature: str | None = None
    diagnoses: tuple[str, ...] = ()
    availability: str = "available"
    data_categories: tuple[str, ...] = field(default=())
    last_updated: dt.datetime | None = None


# --- fields -------------------------------------------------------------------------------


class VocabularyCode(fields.String):
    """A code from a `schema/vocab` table, accepted in any letter case."""

    def __init__(self, vocabulary_name: str, **kwargs: Any) -> None:
        metadata = {"vocabulary": vocabulary_name, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)
        self.vocabulary_name = vocabulary_name

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        vocabulary = vocab.vocabulary(self.vocabulary_name)
        code = vocabulary.canonical(text)
        if code is None:
            raise ValidationError(vocabulary.rejection(text))
        return code


class Icd10Diagnosis(fields.String):
    """An ICD-10 category or subcategory in any common spelling, stored as the WHO code."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"format": "icd10", **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            code = icd10.normalise(text)
        except icd10.UnknownCode as err:
            raise ValidationError(str(err)) from None
        if icd10.kind(code) not in ("category", "subcategory"):
            raise ValidationError(f"{text!r} is an ICD-10 {icd10.kind(code)}, not a diagnosis")
        return code


class ConsentField(fields.Field):  # type: ignore[type-arg]
    """DUO consent as text (`DS(C50);NCU`) or as a list of `{code, diseases, countries, date}`."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> duo.Consent | None:
        try:
            if isinstance(value, str):
                return duo.parse(value) if value.strip() else None
            if isinstance(value, list):
                return duo.from_terms([_term_from_mapping(t) for t in value])
        except duo.InvalidConsent as err:
            raise ValidationError(f"{err} in {value!r}") from None
        raise ValidationError(f"{value!r} is not a DUO consent")

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else consent_to_json(value)


def _term_from_mapping(item: Any) -> duo.DuoTerm:
    if not isinstance(item, Mapping) or "code" not in item:
        raise duo.InvalidConsent(f"{item!r} is not a DUO term object")
    params = [*item.get("diseases", ()), *item.get("countries", ())]
    if item.get("date"):
        params.append(str(item["date"]))
    return duo.term(str(item["code"]), [str(p) for p in params])


def consent_to_json(consent: duo.Consent) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in consent.terms:
        item: dict[str, Any] = {"code": t.code}
        if t.diseases:
            item["diseases"] = list(t.diseases)
        if t.countries:
            item["countries"] = list(t.countries)
        if t.date:
            item["date"] = t.date.isoformat()
        out.append(item)
    return out


def _identifier(**kwargs: Any) -> fields.String:
    return fields.String(
        required=True,
        validate=validate.Length(min=1, max=200, error="must be 1 to 200 characters"),
        **kwargs,
    )


# Codes ISO 3166 reserves for other uses that people write for a country, and its code.
RESERVED_COUNTRY_CODES = {"UK": ("GB", "the United Kingdom"), "EL": ("GR", "Greece")}


def _iso_country(code: str) -> bool:
    """An ISO 3166-1 alpha-2 country code, or a ValidationError saying which one was meant."""
    if not re.fullmatch(r"[A-Z]{2}", code):
        return True  # not shaped like a code: the pattern says so
    if code in RESERVED_COUNTRY_CODES:
        meant, name = RESERVED_COUNTRY_CODES[code]
        raise ValidationError(
            f"{code!r} is not ISO 3166-1 alpha-2: ISO 3166 says {meant} for {name}"
        )
    if code not in iso3166.countries_by_alpha2:
        raise ValidationError(f"{code!r} is not ISO 3166-1 alpha-2 (a country code such as DE, JP)")
    return True


# An ORPHA code as the Directory and Beacons write it.
ORPHA_CODE = r"^ORPHA:\d+$"
_PLAUSIBLE_AGE = validate.Range(0, MAX_AGE_YEARS, error="{input} is not a plausible age")


# --- schemas ------------------------------------------------------------------------------


class _Canonical(Schema):
    class Meta:
        unknown = EXCLUDE  # connectors may pass extra source columns; they are not ours


class BiobankSchema(_Canonical):
    id = _identifier()
    name = fields.String(required=True, validate=validate.Length(min=1))
    name_ja = fields.String(load_default=None, allow_none=True)
    country = fields.String(
        required=True,
        validate=[
            validate.Regexp(
                r"^[A-Z]{2}$",
                error="{input!r} is not ISO 3166-1 alpha-2 (a country code such as DE, JP)",
            ),
            lambda code: _iso_country(code),
        ],
    )
    url = fields.Url(load_default=None, allow_none=True)
    contact_email = fields.Email(load_default=None, allow_none=True)
    description = fields.String(load_default=None, allow_none=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Biobank:
        return Biobank(**data)


class CollectionSchema(_Canonical):
    id = _identifier()
    biobank_id = _identifier()
    name = fields.String(required=True, validate=validate.Length(min=1))
    types = fields.List(VocabularyCode("collection_types"), required=True)
    default_consent = ConsentField(load_default=None, allow_none=True)
    description = fields.String(load_default=None, allow_none=True)
    declared = fields.Boolean(load_default=False)
    materials = fields.List(VocabularyCode("material_types"), load_default=list)
    diagnoses = fields.List(Icd10Diagnosis(), load_default=list)
    orpha = fields.List(fields.String(validate=validate.Regexp(ORPHA_CODE)), load_default=list)
    sexes = fields.List(VocabularyCode("sex"), load_default=list)
    data_categories = fields.List(VocabularyCode("data_categories"), load_default=list)
    storage_temperatures = fields.List(VocabularyCode("storage_temperatures"), load_default=list)
    size = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0))
    donors = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0))
    age_low = fields.Integer(load_default=None, allow_none=True, validate=_PLAUSIBLE_AGE)
    age_high = fields.Integer(load_default=None, allow_none=True, validate=_PLAUSIBLE_AGE)
    country = fields.String(load_default=None, allow_none=True, validate=_iso_country)

    @validates_schema
    def _age_range(self, data: dict[str, Any], **_: Any) -> None:
        low, high = data.get("age_low"), data.get("age_high")
        if low is not None and high is not None and low > high:
            raise ValidationError(f"{high} is below age_low {low}", "age_high")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Collection:
        lists = ("types", "materials", "diagnoses", "orpha", "sexes", "data_categories")
        tuples = {name: tuple(dict.fromkeys(data[name])) for name in lists}
        temperatures = tuple(dict.fromkeys(data["storage_temperatures"]))
        return Collection(**{**data, **tuples, "storage_temperatures": temperatures})


class DonorSchema(_Canonical):
    id = _identifier()
    biobank_id = _identifier()
    sex = VocabularyCode("sex", required=True)
    birth_year = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(
            EARLIEST_BIRTH_YEAR, dt.date.today().year, error="{input} is not a plausible birth year"
        ),
    )
    age_at_recruitment = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, MAX_AGE_YEARS, error="{input} is not a plausible age"),
    )
    diagnoses = fields.List(Icd10Diagnosis(), load_default=list)
    orpha = fields.List(
        fields.String(validate=validate.Regexp(r"^ORPHA:\d+$", error="{input!r} is not ORPHA:<n>")),
        load_default=list,
    )
    consent = ConsentField(load_default=None, allow_none=True)
    consent_withdrawn = fields.Boolean(load_default=False)
    birth_date = fields.Date(load_default=None, allow_none=True)

    @validates_schema
    def _birth_date_agrees(self, data: dict[str, Any], **_: Any) -> None:
        born = data.get("birth_date")
        if born is None:
            return
        if born > dt.date.today():
            raise ValidationError(f"{born.isoformat()!r} is in the future", "birth_date")
        year = data.get("birth_year")
        if year is not None and year != born.year:
            raise ValidationError(
                f"{born.isoformat()!r} is not in the birth year {year}", "birth_date"
            )

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Donor:
        return Donor(
            **{
                **data,
                "diagnoses": tuple(dict.fromkeys(data["diagnoses"])),
                "orpha": tuple(data["orpha"]),
            }
        )


class SampleSchema(_Canonical):
    id = _identifier()
    biobank_id = _identifier()
    collection_id = _identifier()
    donor_id = _identifier()
    material_type = VocabularyCode("material_types", required=True)
    collection_date = fields.Date(load_default=None, allow_none=True)
    age_at_collection = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, MAX_AGE_YEARS, error="{input} is not a plausible age"),
    )
    storage_temperature = VocabularyCode("storage_temperatures", load_default=None, allow_none=True)
    diagnoses = fields.List(Icd10Diagnosis(), load_default=list)
    availability = fields.String(
        load_default="available",
        validate=validate.OneOf(vocab.AVAILABILITY, error="{input!r} is not one of {choices}"),
    )
    data_categories = fields.List(VocabularyCode("data_categories"), load_default=list)
    last_updated = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=dt.UTC)

    @validates_schema
    def _date_not_in_future(self, data: dict[str, Any], **_: Any) -> None:
        when = data.get("collection_date")
        if when and when > dt.date.today():
            raise ValidationError(f"{when.isoformat()!r} is in the future", "collection_date")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Sample:
        return Sample(
            **{
                **data,
                "diagnoses": tuple(dict.fromkeys(data["diagnoses"])),
                "data_categories": tuple(data["data_categories"]),
            }
        )


# --- the common case without marshmallow ------------------------------------------------------

_SAMPLE_IDS = ("id", "biobank_id", "collection_id", "donor_id")
_SAMPLE_FIELDS = frozenset(SampleSchema().fields)


def quick_sample(data: Mapping[str, Any]) -> Sample | None:
    """The Sample `SampleSchema().load(data)` gives for plain valid text, else None.

    A sync validates every row, and most rows are valid text: this builds the same record
    at a fraction of marshmallow's cost. Anything unusual (a non-text value, any value
    marshmallow would reject) returns None, and the caller loads the row with the
    schema, which then gives the record or the exact rejection.
    """
    known = {k: v for k, v in data.items() if k in _SAMPLE_FIELDS}
    for name in _SAMPLE_IDS:
        value = known.get(name)
        if type(value) is not str or not 1 <= len(value) <= 200:
            return None
    material = known.get("material_type")
    if type(material) is not str:
        return None
    material_type = vocab.material_types().canonical(material)
    if material_type is None:
        return None
    last_updated = None
    if "last_updated" in known:
        text = known["last_updated"]
        if type(text) is not str:
            return None
        try:
            last_updated = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if last_updated.tzinfo is None or last_updated.utcoffset() is None:
            last_updated = last_updated.replace(tzinfo=dt.UTC)  # AwareDateTime's default
    collection_date = None
    if "collection_date" in known:
        text = known["collection_date"]
        if type(text) is not str:
            return None
        try:
            collection_date = dt.date.fromisoformat(text)
        except ValueError:
            return None
        if collection_date > dt.date.today():
            return None
    age = None
    if "age_at_collection" in known:
        text = known["age_at_collection"]
        if type(text) is not str:
            return None
        try:
            age = int(text)
        except ValueError:
            return None
        if not 0 <= age <= MAX_AGE_YEARS:
            return None
    storage = None
    if "storage_temperature" in known:
        text = known["storage_temperature"]
        storage = vocab.storage_temperatures().canonical(text) if type(text) is str else None
        if storage is None:
            return None
    availability = known.get("availability", "available")
    if availability not in vocab.AVAILABILITY:
        return None
    diagnoses = _codes(known.get("diagnoses", ()), _diagnosis)
    categories = _codes(known.get("data_categories", ()), vocab.data_categories().canonical)
    if diagnoses is None or categories is None:
        return None
    return Sample(
        id=known["id"],
        biobank_id=known["biobank_id"],
        collection_id=known["collection_id"],
        donor_id=known["donor_id"],
        material_type=material_type,
        collection_date=collection_date,
        age_at_collection=age,
        storage_temperature=storage,
        diagnoses=tuple(dict.fromkeys(diagnoses)),
        availability=availability,
        data_categories=tuple(categories),
        last_updated=last_updated,
    )


_DONOR_FIELDS = frozenset(DonorSchema().fields)
_ORPHA = re.compile(r"^ORPHA:\d+$")


def quick_donor(data: Mapping[str, Any]) -> Donor | None:
    """The Donor `DonorSchema().load(data)` gives for plain valid text, else None.

    As `quick_sample`: None sends the row to the schema for the record or the rejection.
    """
    known = {k: v for k, v in data.items() if k in _DONOR_FIELDS}
    if known.get("birth_date") is not None:
        return None  # a full date: the schema checks it against the birth year
    for name in ("id", "biobank_id"):
        value = known.get(name)
        if type(value) is not str or not 1 <= len(value) <= 200:
            return None
    sex_text = known.get("sex")
    sex = vocab.sexes().canonical(sex_text) if type(sex_text) is str else None
    if sex is None:
        return None
    birth_year = _whole_number(known, "birth_year", EARLIEST_BIRTH_YEAR, dt.date.today().year)
    age = _whole_number(known, "age_at_recruitment", 0, MAX_AGE_YEARS)
    if birth_year is False or age is False:
        return None
    diagnoses = _codes(known.get("diagnoses", ()), _diagnosis)
    orpha = known.get("orpha", ())
    if diagnoses is None or type(orpha) not in (list, tuple):
        return None
    if not all(type(o) is str and _ORPHA.match(o) for o in orpha):
        return None
    consent = None
    if "consent" in known:
        text = known["consent"]
        if type(text) is not str or not text.strip():
            return None
        consent = _consent(text)
        if consent is None:
            return None
    withdrawn = known.get("consent_withdrawn", False)
    if withdrawn is not False:
        if type(withdrawn) is not str:
            return None
        if withdrawn in fields.Boolean.truthy:
            withdrawn = True
        elif withdrawn in fields.Boolean.falsy:
            withdrawn = False
        else:
            return None
    return Donor(
        id=known["id"],
        biobank_id=known["biobank_id"],
        sex=sex,
        birth_year=birth_year,
        age_at_recruitment=age,
        diagnoses=tuple(dict.fromkeys(diagnoses)),
        orpha=tuple(orpha),
        consent=consent,
        consent_withdrawn=withdrawn,
    )


def _whole_number(known: Mapping[str, Any], name: str, low: int, high: int) -> int | bool | None:
    """The field as marshmallow's Integer loads it within [low, high]; False when it would not."""
    if name not in known:
        return None
    text = known[name]
    if type(text) is not str:
        return False
    try:
        number = int(text)
    except ValueError:
        return False
    return number if low <= number <= high else False


@functools.lru_cache(maxsize=4096)
def _consent(text: str) -> duo.Consent | None:
    """`ConsentField`'s reading of a consent text, or None where it would reject it."""
    try:
        return duo.parse(text)
    except duo.InvalidConsent:
        return None


def _codes(values: Any, canonical: Any) -> list[str] | None:
    if type(values) not in (list, tuple):
        return None
    out = []
    for value in values:
        code = canonical(value) if type(value) is str else None
        if code is None:
            return None
        out.append(code)
    return out


@functools.lru_cache(maxsize=65_536)
def _diagnosis(text: str) -> str | None:
    """The WHO code `Icd10Diagnosis` loads `text` as, or None where it would reject it."""
    try:
        code = icd10.normalise(text)
    except icd10.UnknownCode:
        return None
    return code if icd10.kind(code) in ("category", "subcategory") else None


# Schema -> a loader of the common case that returns None when the schema must decide.
QUICK_LOADERS: dict[type[Schema], Callable[[Mapping[str, Any]], Any]] = {
    SampleSchema: quick_sample,
    DonorSchema: quick_donor,
}

SCHEMAS: dict[str, type[Schema]] = {
    "biobank": BiobankSchema,
    "collection": CollectionSchema,
    "donor": DonorSchema,
    "sample": SampleSchema,
}


def describe_errors(messages: Any, prefix: str = "") -> list[str]:
    """Flatten marshmallow's nested error dict into `field: message` lines."""
    if isinstance(messages, Mapping):
        lines: list[str] = []
        for key, value in messages.items():
            name = (
                key
                if not prefix
                else f"{prefix}[{key}]"
                if isinstance(key, int)
                else f"{prefix}.{key}"
            )
            lines.extend(describe_errors(value, str(name)))
        return lines
    if isinstance(messages, list):
        return [f"{prefix}: {m}" if prefix else str(m) for m in messages if isinstance(m, str)] + [
            line for m in messages if not isinstance(m, str) for line in describe_errors(m, prefix)
        ]
    return [f"{prefix}: {messages}"]
