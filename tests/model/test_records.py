import json

import pytest
from marshmallow import ValidationError

from federation import SCHEMA_DIR
from federation.model.jsonschema import dumps
from federation.model.records import DonorSchema, SampleSchema, describe_errors

SAMPLE = {
    "id": "S1",
    "biobank_id": "bb",
    "collection_id": "C1",
    "donor_id": "D1",
    "material_type": "plasma",
    "collection_date": "2020-01-02",
    "diagnoses": ["C509"],
}


def errors_of(schema: type, data: dict[str, object]) -> list[str]:
    with pytest.raises(ValidationError) as err:
        schema().load(data)
    return describe_errors(err.value.messages)


def test_valid_sample_is_normalised() -> None:
    sample = SampleSchema().load(SAMPLE)
    assert sample.material_type == "PLASMA"
    assert sample.diagnoses == ("C50.9",)
    assert sample.availability == "available"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"material_type": "BLOOD_SPOT"},
            "material_type: 'BLOOD_SPOT' is not in the material_types vocabulary; closest:",
        ),
        ({"diagnoses": ["C50.9", "F3181"]}, "diagnoses[1]: 'F3181' is not a WHO ICD-10 code"),
        ({"diagnoses": ["II"]}, "diagnoses[0]: 'II' is an ICD-10 chapter, not a diagnosis"),
        ({"collection_date": "2019-13-45"}, "collection_date: Not a valid date."),
        ({"collection_date": "2099-01-01"}, "collection_date: '2099-01-01' is in the future"),
        ({"age_at_collection": 300}, "age_at_collection: 300 is not a plausible age"),
        ({"availability": "maybe"}, "availability: 'maybe' is not one of"),
        ({"donor_id": ""}, "donor_id: must be 1 to 200 characters"),
    ],
)
def test_sample_errors_name_field_and_value(change: dict[str, object], expected: str) -> None:
    lines = errors_of(SampleSchema, {**SAMPLE, **change})
    assert any(line.startswith(expected) for line in lines), lines


def test_missing_required_field_is_named() -> None:
    data = {k: v for k, v in SAMPLE.items() if k != "material_type"}
    assert errors_of(SampleSchema, data) == ["material_type: Missing data for required field."]


def test_donor_consent_is_read_and_validated() -> None:
    donor = DonorSchema().load(
        {"id": "D", "biobank_id": "b", "sex": "female", "consent": "HMB;NPU"}
    )
    assert donor.consent is not None and donor.consent.permission.code == "HMB"
    lines = errors_of(DonorSchema, {"id": "D", "biobank_id": "b", "sex": "F", "consent": "XX"})
    assert (
        "sex: 'F' is not in the sex vocabulary; allowed: FEMALE, MALE, NASK, NAV, "
        "UNDIFFERENTIAL, UNKNOWN"
    ) in lines
    assert any(line.startswith("consent: 'XX' is not a DUO permission") for line in lines)


def test_exported_json_schema_matches_the_code() -> None:
    on_disk = (SCHEMA_DIR / "records.schema.json").read_text(encoding="utf-8")
    assert on_disk == dumps(), "schema/records.schema.json is stale: run `biofed schema export`"
    schema = json.loads(on_disk)
    assert schema["$defs"]["sample"]["required"] == [
        "biobank_id",
        "collection_id",
        "donor_id",
        "id",
        "material_type",
    ]
    assert "PLASMA" in schema["$defs"]["sample"]["properties"]["material_type"]["enum"]
