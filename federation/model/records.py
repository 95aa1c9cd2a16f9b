"""Canonical records: what every connector maps its source into, validated by marshmallow.

Validation errors name the field and the value, because a biobank admin reads them in the
quarantine and must be able to find the row at the source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
        code = vocab.vocabulary(self.vocabulary_name).canonical(text)
        if code is None:
            raise ValidationError(f"{text!r} is not in the {self.vocabulary_name} vocabulary")
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


# --- schemas ------------------------------------------------------------------------------


class _Canonical(Schema):
    class Meta:
        unknown = EXCLUDE  # connectors may pass extra source columns; they are not ours


class BiobankSchema(_Canonical):
    id = _identifier()
    name = fields.String(required=True, validate=validate.Length(min=1))
    name_ja = fields.String(load_default=None, allow_none=True)
    country = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Z]{2}$", error="{input!r} is not ISO 3166")
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

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Collection:
        return Collection(**{**data, "types": tuple(data["types"])})


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
