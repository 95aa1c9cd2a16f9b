"""JSON Schema (Draft 2020-12) of the canonical records, derived from the marshmallow schemas.

Exported to `schema/records.schema.json` so connector authors in any language can check
what they produce; a test fails when the file and the code differ.
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import Schema, fields, validate

from federation.model import vocab
from federation.model.records import SCHEMAS, ConsentField, Icd10Diagnosis, VocabularyCode

SCHEMA_ID = "https://biobank-federation.example.org/schema/records.schema.json"


def _field_schema(field: fields.Field) -> dict[str, Any]:  # type: ignore[type-arg]
    out: dict[str, Any]
    if isinstance(field, VocabularyCode):
        out = {"type": "string", "enum": list(vocab.vocabulary(field.vocabulary_name).codes)}
    elif isinstance(field, Icd10Diagnosis):
        out = {
            "type": "string",
            "description": "WHO ICD-10 category or subcategory (e.g. C50.9); "
            "C509, ICD10:C50.9 and urn:miriam:icd:C50.9 are accepted on input",
        }
    elif isinstance(field, ConsentField):
        out = {"$ref": "#/$defs/consent"}
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": _field_schema(field.inner)}
    elif isinstance(field, fields.Boolean):
        out = {"type": "boolean"}
    elif isinstance(field, fields.Integer):
        out = {"type": "integer"}
    elif isinstance(field, fields.AwareDateTime):
        out = {"type": "string", "format": "date-time"}
    elif isinstance(field, fields.Date):
        out = {"type": "string", "format": "date"}
    elif isinstance(field, fields.Email):
        out = {"type": "string", "format": "email"}
    elif isinstance(field, fields.Url):
        out = {"type": "string", "format": "uri"}
    else:
        out = {"type": "string"}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            if validator.min is not None:
                out["minimum"] = validator.min
            if validator.max is not None:
                out["maximum"] = validator.max
        elif isinstance(validator, validate.OneOf):
            out["enum"] = list(validator.choices)
        elif isinstance(validator, validate.Length):
            if validator.min is not None:
                out["minLength"] = validator.min
            if validator.max is not None:
                out["maxLength"] = validator.max
        elif isinstance(validator, validate.Regexp):
            out["pattern"] = validator.regex.pattern
    if field.allow_none and "$ref" not in out:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
    return out


def _record_schema(schema: Schema) -> dict[str, Any]:
    properties = {name: _field_schema(f) for name, f in schema.fields.items()}
    required = sorted(name for name, f in schema.fields.items() if f.required)
    return {"type": "object", "properties": properties, "required": required}


def _consent_schema() -> dict[str, Any]:
    from federation.model import duo

    return {
        "description": "DUO consent: exactly one permission term plus modifiers. "
        "Also accepted as text, e.g. 'DS(C50);NCU;GS(JP)'.",
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code"],
                    "properties": {
                        "code": {"type": "string", "enum": sorted(duo.definitions())},
                        "diseases": {"type": "array", "items": {"type": "string"}},
                        "countries": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[A-Z]{2}$"},
                        },
                        "date": {"type": "string", "format": "date"},
                    },
                },
            },
            {"type": "null"},
        ],
    }


def records_json_schema() -> dict[str, Any]:
    """The JSON Schema document for every canonical record kind."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Canonical records of the biobank federation",
        "description": "Generated from federation/model/records.py by `biofed schema export`.",
        "$defs": {
            "consent": _consent_schema(),
            **{kind: _record_schema(cls()) for kind, cls in SCHEMAS.items()},
        },
    }


def dumps() -> str:
    return json.dumps(records_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
