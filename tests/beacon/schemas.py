"""Validate Beacon responses against the framework and default-model JSON Schemas, offline.

The schemas are the copies in tests/fixtures/beacon-v2 (see its NOTICE.md); their relative
`$ref`s resolve between the files through a `referencing` registry keyed by file URI.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "beacon-v2"
FRAMEWORK = FIXTURES / "framework"
MODELS = FIXTURES / "models"
COUNT_V22 = FIXTURES / "framework-v2.2-count.json"

# Which framework response schema each kind of answer must satisfy.
RESPONSES = {
    "info": "responses/beaconInfoResponse.json",
    "service-info": "responses/ga4gh-service-info-1-0-0-schema.json",
    "configuration": "responses/beaconConfigurationResponse.json",
    "map": "responses/beaconMapResponse.json",
    "entry_types": "responses/beaconEntryTypesResponse.json",
    "filtering_terms": "responses/beaconFilteringTermsResponse.json",
    "boolean": "responses/beaconBooleanResponse.json",
    "count": "responses/beaconCountResponse.json",
    "record": "responses/beaconResultsetsResponse.json",
    "collections": "responses/beaconCollectionsResponse.json",
    "error": "responses/beaconErrorResponse.json",
}
MODEL_SCHEMAS = {
    "individual": "individuals.defaultSchema.json",
    "biosample": "biosamples.defaultSchema.json",
    "dataset": "datasets.defaultSchema.json",
}


@functools.cache
def _registry() -> Registry:
    resources = []
    for path in sorted(FRAMEWORK.rglob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.as_uri(), Resource.from_contents(contents, DRAFT202012)))
    registry: Registry = Registry().with_resources(resources)
    return registry


@functools.cache
def _validator(path: Path) -> Draft202012Validator:
    return Draft202012Validator({"$ref": path.as_uri()}, registry=_registry())


@functools.cache
def _model(entry: str) -> Draft202012Validator:
    schema = json.loads((MODELS / MODEL_SCHEMAS[entry]).read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _errors(validator: Draft202012Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def check(kind: str, body: Any, entry: str | None = None) -> None:
    """Assert `body` is a valid `kind` response; its records valid `entry` documents."""
    problems = _errors(_validator(FRAMEWORK / RESPONSES[kind]), body)
    count_fields = json.loads(COUNT_V22.read_text(encoding="utf-8"))
    v22 = Draft202012Validator(count_fields)
    if isinstance(body, dict) and "responseSummary" in body:
        problems += ["responseSummary " + p for p in _errors(v22, body["responseSummary"])]
    if kind == "record":
        for result_set in body["response"]["resultSets"]:
            problems += ["resultSet " + p for p in _errors(v22, result_set)]
            assert entry is not None
            for record in result_set["results"]:
                problems += [
                    f"{entry} {record.get('id')}: {p}" for p in _errors(_model(entry), record)
                ]
    if kind == "collections":
        for record in body["response"]["collections"]:
            problems += [
                f"dataset {record.get('id')}: {p}" for p in _errors(_model("dataset"), record)
            ]
    assert not problems, "\n".join(problems)


def schema_errors(kind: str, body: Any) -> list[str]:
    """What is wrong with `body` as a `kind` response (for tests that a check can fail)."""
    return _errors(_validator(FRAMEWORK / RESPONSES[kind]), body)
