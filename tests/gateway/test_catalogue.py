"""Biobanks, collections, ICD-10 autocomplete, sync history and the quarantine."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.gateway.access import headers
from tests.gateway.conftest import graphql


def test_biobanks_from_the_network_file(client: FlaskClient) -> None:
    body = graphql(
        client,
        """{ biobanks { id name nameJa country url contactEmail description kind
                        lastPublished collections { id name } } }""",
    )
    assert "errors" not in body
    bb1, bb2 = body["data"]["biobanks"]
    assert {k: v for k, v in bb1.items() if k not in ("lastPublished", "collections")} == {
        "id": "bb1",
        "name": "Test biobank",
        "nameJa": "テストバイオバンク",
        "country": "JP",
        "url": "https://bb1.example.org",
        "contactEmail": "samples@bb1.example.org",
        "description": "A hospital biobank",
        "kind": "hospital",
    }
    assert bb1["lastPublished"] and bb1["lastPublished"].startswith("20")
    assert [c["id"] for c in bb1["collections"]] == ["C1", "C2"]
    assert bb2["id"] == "bb2"
    assert bb2["nameJa"] is None and bb2["kind"] is None
    assert bb2["collections"] == [{"id": "R1", "name": "Cancer registry samples"}]


def test_biobank_by_id(client: FlaskClient) -> None:
    body = graphql(client, '{ biobank(id: "bb2") { id name country } }')
    assert body == {"data": {"biobank": {"id": "bb2", "name": "Second biobank", "country": "JP"}}}


def test_unknown_biobank_is_null(client: FlaskClient) -> None:
    assert graphql(client, '{ biobank(id: "nope") { id } }') == {"data": {"biobank": None}}


def test_collections(client: FlaskClient) -> None:
    body = graphql(
        client,
        "{ collections { id biobank { id } name types description defaultConsent } }",
    )
    assert body["data"]["collections"] == [
        {
            "id": "C1",
            "biobank": {"id": "bb1"},
            "name": "Breast cohort",
            "types": ["HOSPITAL", "DISEASE_SPECIFIC"],
            "description": "Women and men treated for breast cancer",
            "defaultConsent": "GRU",
        },
        {
            "id": "C2",
            "biobank": {"id": "bb1"},
            "name": "Population cohort",
            "types": ["POPULATION_BASED"],
            "description": None,
            "defaultConsent": "HMB;NPU",
        },
        {
            "id": "R1",
            "biobank": {"id": "bb2"},
            "name": "Cancer registry samples",
            "types": ["DISEASE_SPECIFIC"],
            "description": None,
            "defaultConsent": "GRU",
        },
    ]
    one = graphql(client, '{ collections(biobank: "bb2") { id } }')
    assert one["data"]["collections"] == [{"id": "R1"}]


def test_diseases_by_name(client: FlaskClient) -> None:
    body = graphql(client, '{ diseases(text: "breast") { code name language } }')
    codes = [d["code"] for d in body["data"]["diseases"]]
    assert "C50" in codes
    assert len(codes) <= 10


def test_diseases_by_code(client: FlaskClient) -> None:
    body = graphql(
        client, '{ diseases(text: "C50", first: 3) { code name kind chapter ancestors } }'
    )
    diseases = body["data"]["diseases"]
    assert len(diseases) == 3
    assert diseases[0] == {
        "code": "C50",
        "name": "Malignant neoplasm of breast",
        "kind": "CATEGORY",
        "chapter": "II",
        "ancestors": ["C50-C50", "C00-C75", "C00-C97", "II"],
    }
    assert all(d["code"].startswith("C50") for d in diseases)


def test_sync_runs(client: FlaskClient) -> None:
    body = graphql(
        client,
        """{ syncRuns { biobankId kind outcome read indexed rejected withdrawn
                        durationSeconds generation error startedAt finishedAt } }""",
        headers=headers("operator"),
    )
    runs = {r["biobankId"]: r for r in body["data"]["syncRuns"]}
    assert set(runs) == {"bb1", "bb2"}
    bb1 = runs["bb1"]
    assert bb1["outcome"] == "SUCCEEDED" and bb1["kind"] == "full" and bb1["error"] is None
    # 2 collections + 7 donors + 9 samples read; 7 samples indexed; D7 and S9 rejected; S6
    # left out because D5 withdrew.
    assert (bb1["read"], bb1["indexed"], bb1["rejected"], bb1["withdrawn"]) == (18, 7, 2, 1)
    assert bb1["durationSeconds"] is not None and bb1["generation"] and bb1["finishedAt"]
    only = graphql(
        client, '{ syncRuns(biobank: "bb2", first: 1) { biobankId } }', headers=headers("operator")
    )
    assert only["data"]["syncRuns"] == [{"biobankId": "bb2"}]


def test_quarantine(client: FlaskClient) -> None:
    body = graphql(
        client,
        """{ quarantine(biobank: "bb1") { biobankId stream sourceId field value reason payload
                                          runId firstSeen lastSeen } }""",
        headers=headers("admin"),
    )
    records = {(r["stream"], r["sourceId"]): r for r in body["data"]["quarantine"]}
    assert set(records) == {("donors", "D7"), ("samples", "S9")}
    donor = records[("donors", "D7")]
    assert donor["field"] == "sex" and donor["value"] == "SOMETIMES"
    assert "SOMETIMES" in donor["reason"] and "SOMETIMES" in donor["payload"]
    assert records[("samples", "S9")]["field"] == "collection_id"
    paged = graphql(
        client,
        '{ quarantine(biobank: "bb1", first: 1, offset: 1) { sourceId } }',
        headers=headers("admin"),
    )
    assert paged["data"]["quarantine"] == [{"sourceId": "S9"}]
    assert graphql(
        client, '{ quarantine(biobank: "bb2") { sourceId } }', headers=headers("admin")
    ) == {"data": {"quarantine": []}}


def test_quarantine_offset_must_not_be_negative(client: FlaskClient) -> None:
    body = graphql(
        client, '{ quarantine(biobank: "bb1", offset: -1) { sourceId } }', headers=headers("admin")
    )
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "offset", "value": -1}
