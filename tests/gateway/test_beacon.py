"""The Beacon v2 API on the shared two-biobank network (exact counts and records for all).

Expected figures come from the comments in tests/gateway/conftest.py. Every response is
validated against the Beacon v2 framework schemas and its records against the default
model (tests/beacon/schemas.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from federation.gateway import create_app
from federation.settings import Settings
from tests.beacon.schemas import check, schema_errors
from tests.gateway.access import headers, with_test_access

C50_FEMALE = [{"id": "ICD10:C50"}, {"id": "NCIT:C16576"}]


def post(
    client: FlaskClient,
    entry: str,
    query: dict[str, Any],
    status: int = 200,
    who: str | None = None,
) -> dict[str, Any]:
    response = client.post(
        f"/beacon/{entry}",
        json={"meta": {"apiVersion": "v2.0.1"}, "query": query},
        headers=headers(who) if who else None,
    )
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [r["id"] for s in body["response"]["resultSets"] for r in s["results"]]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/beacon/", "info"),
        ("/beacon/info", "info"),
        ("/beacon/service-info", "service-info"),
        ("/beacon/configuration", "configuration"),
        ("/beacon/map", "map"),
        ("/beacon/entry_types", "entry_types"),
        ("/beacon/filtering_terms", "filtering_terms"),
    ],
)
def test_framework_endpoints_validate(client: FlaskClient, path: str, kind: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    check(kind, response.get_json())


def test_the_schema_check_can_fail() -> None:
    assert schema_errors("count", {"meta": {}, "responseSummary": {"exists": "yes"}})


def test_entry_types_and_map_name_the_three_entry_types(client: FlaskClient) -> None:
    types = client.get("/beacon/entry_types").get_json()["response"]["entryTypes"]
    assert set(types) == {"individual", "biosample", "dataset"}
    sets = client.get("/beacon/map").get_json()["response"]["endpointSets"]
    assert sets["biosample"]["rootUrl"].endswith("/beacon/biosamples")
    # This network lets the public see records everywhere (conftest's NETWORK).
    assert sets["biosample"]["securityLevel"] == "PUBLIC"
    assert sets["biosample"]["granularityBySecurityLevel"]["PUBLIC"] == "record"


def test_filtering_terms_come_from_the_vocabularies(client: FlaskClient) -> None:
    terms = client.get("/beacon/filtering_terms").get_json()["response"]["filteringTerms"]
    by_id = {t["id"]: t for t in terms}
    assert by_id["ICD10:C50.9"]["label"].startswith("Malignant neoplasm")
    assert by_id["NCIT:C16576"]["label"] == "female"
    assert by_id["UBERON:0001969"]["type"] == "Uber-anatomy ontology"
    assert by_id["material_type:BUFFY_COAT"]["type"] == "custom"
    assert by_id["collection_type:CASE_CONTROL"]["type"] == "custom"
    assert by_id["age"]["type"] == "alphanumeric"
    page = client.get("/beacon/filtering_terms?skip=1&limit=3").get_json()
    assert [t["id"] for t in page["response"]["filteringTerms"]] == [t["id"] for t in terms[3:6]]


@pytest.mark.parametrize(("entry", "expected"), [("individuals", 3), ("biosamples", 6)])
def test_count_of_c50_women(client: FlaskClient, entry: str, expected: int) -> None:
    body = post(client, entry, {"filters": C50_FEMALE, "requestedGranularity": "count"})
    check("count", body)
    assert body["meta"]["returnedGranularity"] == "count"
    summary = body["responseSummary"]
    assert summary == {"exists": True, "numTotalResults": expected, "countPrecision": "exact"}
    per_biobank = {b["id"]: b["numTotalResults"] for b in body["info"]["biobanks"]}
    assert per_biobank == ({"bb1": 2, "bb2": 1} if entry == "individuals" else {"bb1": 4, "bb2": 2})


def test_get_and_post_ask_the_same(client: FlaskClient) -> None:
    got = client.get(
        "/beacon/biosamples?filters=ICD10:C50,NCIT:C16576&requestedGranularity=count"
    ).get_json()
    posted = post(client, "biosamples", {"filters": C50_FEMALE, "requestedGranularity": "count"})
    check("count", got)
    assert got["responseSummary"] == posted["responseSummary"]
    assert got["meta"]["receivedRequestSummary"]["filters"] == ["ICD10:C50", "NCIT:C16576"]


def test_boolean_is_the_default(client: FlaskClient) -> None:
    body = post(client, "individuals", {"filters": C50_FEMALE})
    check("boolean", body)
    assert body["meta"]["returnedGranularity"] == "boolean"
    assert body["responseSummary"] == {"exists": True}
    assert all(set(b) == {"id", "granularity", "exists"} for b in body["info"]["biobanks"])


def test_records_page_by_page_skip_counts_pages(client: FlaskClient) -> None:
    # The six samples of C50 women, in (biobank, sample) order: S1 S2 S3 S8 T1 T2.
    pages = []
    for skip in range(4):
        body = post(
            client,
            "biosamples",
            {
                "filters": C50_FEMALE,
                "requestedGranularity": "record",
                "pagination": {"skip": skip, "limit": 2},
            },
        )
        check("record", body, "biosample")
        assert body["meta"]["receivedRequestSummary"]["pagination"] == {"skip": skip, "limit": 2}
        pages.append(ids(body))
    assert pages == [["S1", "S2"], ["S3", "S8"], ["T1", "T2"], []]
    # A jump straight to a page nobody asked before (a new process would walk there).
    jump = post(
        client,
        "biosamples",
        {
            "filters": C50_FEMALE,
            "requestedGranularity": "record",
            "pagination": {"skip": 1, "limit": 3},
        },
    )
    assert ids(jump) == ["S8", "T1", "T2"]


def test_biosample_records_carry_the_sample(client: FlaskClient) -> None:
    body = post(
        client,
        "biosamples",
        {"filters": [{"id": "ICD10:C50.4"}], "requestedGranularity": "record"},
    )
    check("record", body, "biosample")
    [result_set] = body["response"]["resultSets"]
    assert (result_set["id"], result_set["setType"]) == ("R1", "dataset")
    t1 = next(r for r in result_set["results"] if r["id"] == "T1")
    assert t1["individualId"] == "E1"
    assert t1["sampleOriginType"] == {"id": "UBERON:0001969", "label": "blood plasma"}
    assert (t1["collectionDate"], t1["collectionMoment"]) == ("2018-07-01", "P46Y")
    assert t1["info"]["diagnoses"] == ["ICD10:C50.4"]
    assert t1["info"]["dataUse"] == "GRU"
    # Only what GraphQL's sample record shows (record_view): no birth year, no DUO columns.
    assert set(t1) <= {
        "id",
        "individualId",
        "biosampleStatus",
        "sampleOriginType",
        "collectionDate",
        "collectionMoment",
        "info",
    }
    assert set(t1["info"]) <= {
        "biobankId",
        "collectionId",
        "materialType",
        "diagnoses",
        "storageTemperature",
        "availability",
        "dataCategories",
        "dataUse",
        "lastUpdated",
    }


def test_individuals_are_donors_with_their_diseases(client: FlaskClient) -> None:
    body = post(
        client,
        "individuals",
        {"filters": C50_FEMALE, "requestedGranularity": "record", "pagination": {"limit": 10}},
    )
    check("record", body, "individual")
    people = {r["id"]: r for s in body["response"]["resultSets"] for r in s["results"]}
    assert set(people) == {"D1", "D2", "E1"}  # D5 withdrew: never present
    assert people["D1"]["sex"] == {"id": "NCIT:C16576", "label": "female"}
    assert people["D1"]["diseases"][0]["diseaseCode"]["id"] == "ICD10:C50.9"
    assert people["D2"]["info"] == {"biobankId": "bb1", "consentWithdrawn": False, "dataUse": "GRU"}
    second = post(
        client,
        "individuals",
        {
            "filters": C50_FEMALE,
            "requestedGranularity": "record",
            "pagination": {"skip": 1, "limit": 2},
        },
    )
    assert ids(second) == ["E1"]
    assert second["info"]["hasMoreResults"] is False


def test_withdrawn_donors_never_appear(client: FlaskClient) -> None:
    # D5 (C50.9, FEMALE) withdrew; D1 is the only other C50.9 woman at bb1.
    body = post(
        client,
        "individuals",
        {
            "filters": [{"id": "ICD10:C50.9"}, {"id": "NCIT:C16576"}],
            "requestedGranularity": "record",
        },
    )
    assert ids(body) == ["D1"]
    assert body["responseSummary"]["numTotalResults"] == 1


def test_descendant_terms_are_included_unless_declined(client: FlaskClient) -> None:
    under = post(
        client, "individuals", {"filters": [{"id": "ICD10:C50"}], "requestedGranularity": "count"}
    )
    # C50 women D1 D2 E1 and men D6 E3: all recorded under C50.x.
    assert under["responseSummary"]["numTotalResults"] == 5
    exact = post(
        client,
        "individuals",
        {
            "filters": [{"id": "ICD10:C50", "includeDescendantTerms": False}],
            "requestedGranularity": "count",
        },
    )
    check("count", exact)
    assert exact["responseSummary"]["numTotalResults"] == 0  # nobody is recorded as C50 itself
    leaf = post(
        client,
        "individuals",
        {
            "filters": [{"id": "ICD10:C50.9", "includeDescendantTerms": False}],
            "requestedGranularity": "count",
        },
    )
    assert leaf["responseSummary"]["numTotalResults"] == 3  # D1, D6, E3


def test_an_ancestor_term_finds_the_subtree(client: FlaskClient) -> None:
    chapter = post(
        client, "individuals", {"filters": [{"id": "ICD10:II"}], "requestedGranularity": "count"}
    )
    block = post(
        client,
        "individuals",
        {"filters": [{"id": "ICD10:C50-C50"}], "requestedGranularity": "count"},
    )
    assert chapter["responseSummary"]["numTotalResults"] == 5
    assert block["responseSummary"]["numTotalResults"] == 5


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # Samples by material: PLASMA S1 S4 S5 S8 T1 T3 (S6's donor withdrew).
        ([{"id": "UBERON:0001969"}], 6),
        ([{"id": "OBI:0100016"}], 6),
        ([{"id": "material_type:PLASMA"}], 6),
        ([{"id": "material_type:PLASMA"}, {"id": "NCIT:C20197"}], 1),  # S4 (D3)
        # Age at collection: D1 S1 S2 were 50, D2 S3 56 and S8 57; T-samples 46, 28, 63.
        ([{"id": "age", "operator": ">=", "value": "P56Y"}], 5),
        ([{"id": "age", "operator": ">", "value": "P56Y"}], 4),
        ([{"id": "age", "operator": "<", "value": "P30Y"}], 1),
        ([{"id": "age", "operator": "=", "value": "P50Y"}], 2),
        (
            [
                {"id": "age", "operator": ">=", "value": "P46Y"},
                {"id": "age", "operator": "<=", "value": "50"},
            ],
            4,
        ),
        ([{"id": "collection_type:POPULATION_BASED"}], 2),  # C2: S4, S5
        ([{"id": "NCIT:C16576", "scope": "individuals"}, {"id": "NCIT:C16576"}], 8),
    ],
)
def test_filters_map_to_the_query_model(
    client: FlaskClient, filters: list[dict[str, Any]], expected: int
) -> None:
    body = post(client, "biosamples", {"filters": filters, "requestedGranularity": "count"})
    check("count", body)
    assert body["responseSummary"]["numTotalResults"] == expected


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ([{"id": "HP:0002664"}], "filters[0].id"),  # a term this beacon does not know
        ([{"id": "ICD10:C50.99"}], "filters[0].id"),  # not WHO ICD-10
        ([{"id": "ICD10:C50", "includeDescendantTerms": "no"}], "includeDescendantTerms"),
        ([{"id": "ICD10:C50"}, {"id": "ICD10:E11"}], "filters"),  # ANDed diseases
        ([{"id": "NCIT:C16576"}, {"id": "NCIT:C20197"}], "filters"),  # two sexes
        ([{"id": "ageOfOnset", "operator": ">", "value": "P3Y"}], "filters[0].id"),
        ([{"id": "age", "operator": "!", "value": "P3Y"}], "filters[0].operator"),
        ([{"id": "age", "operator": ">", "value": "old"}], "filters[0].value"),
        (
            [
                {"id": "age", "operator": ">", "value": "P60Y"},
                {"id": "age", "operator": "<", "value": "P20Y"},
            ],
            "filters[1]",
        ),
        ([{"id": "NCIT:C16576", "scope": "runs"}], "filters[0].scope"),
        (["collection_type:NOT_A_TYPE"], "filters[0].id"),
    ],
)
def test_unusable_filters_are_errors_never_match_all(
    client: FlaskClient, filters: list[Any], field: str
) -> None:
    body = post(client, "individuals", {"filters": filters, "requestedGranularity": "count"}, 400)
    check("error", body)
    assert body["error"]["errorCode"] == 400
    assert field in body["error"]["errorMessage"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"requestedGranularity": "everything"}, "requestedGranularity"),
        ({"pagination": {"skip": -1}}, "skip"),
        ({"pagination": {"limit": 101}}, "limit"),
        ({"requestParameters": {"assemblyId": "GRCh38"}}, "requestParameters.assemblyId"),
        ({"includeResultsetResponses": "SOME"}, "includeResultsetResponses"),
        ({"filters": "ICD10:C50"}, "query.filters"),
    ],
)
def test_bad_requests_name_the_field(
    client: FlaskClient, query: dict[str, Any], field: str
) -> None:
    body = post(client, "biosamples", query, 400)
    check("error", body)
    assert field in body["error"]["errorMessage"]


def test_unknown_paths_and_bad_bodies_are_beacon_errors(client: FlaskClient) -> None:
    missing = client.get("/beacon/runs")
    assert missing.status_code == 404
    check("error", missing.get_json())
    form = client.post("/beacon/individuals", data="filters=x", content_type="text/plain")
    assert form.status_code == 415
    check("error", form.get_json())
    broken = client.post("/beacon/individuals", data="{", content_type="application/json")
    assert broken.status_code == 400
    check("error", broken.get_json())


def test_bad_credentials_are_refused_as_on_graphql(client: FlaskClient) -> None:
    response = client.get("/beacon/individuals", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    check("error", response.get_json())


def test_datasets_are_the_collections(client: FlaskClient) -> None:
    body = client.get("/beacon/datasets?requestedGranularity=record").get_json()
    check("collections", body)
    datasets = {d["id"]: d for d in body["response"]["collections"]}
    assert set(datasets) == {"C1", "C2", "R1"}
    assert datasets["C2"]["info"] == {"biobankId": "bb1", "collectionTypes": ["POPULATION_BASED"]}
    uses = [u["id"] for u in datasets["C2"]["dataUseConditions"]["duoDataUse"]]
    assert uses == ["DUO:0000006", "DUO:0000045"]  # HMB;NPU
    one = client.get("/beacon/datasets/R1").get_json()
    check("collections", one)
    assert one["responseSummary"] == {"exists": True}  # boolean unless more is asked
    missing = client.get("/beacon/datasets/NOPE")
    assert missing.status_code == 404
    check("error", missing.get_json())


def test_searches_are_audited(client: FlaskClient) -> None:
    post(
        client,
        "individuals",
        {"filters": [{"id": "ICD10:E11.9"}], "requestedGranularity": "count"},
        who="researcher",
    )
    log = client.post(
        "/graphql",
        json={"query": "{ auditLog(first: 5) { nodes { subject filters } } }"},
        headers=headers("operator"),
    ).get_json()
    entries = log["data"]["auditLog"]["nodes"]
    assert any(
        e["subject"] == "researcher@university.example" and "E11.9" in e["filters"] for e in entries
    )


def test_the_rate_limit_of_graphql_holds_for_beacon(synced_settings: Settings) -> None:
    limited = with_test_access(
        synced_settings,
        rate_limit={"enabled": True, "anonymous": {"per_minute": 1, "burst": 2}},
        timeout_seconds=120,  # the deadline is not under test; a loaded machine is slow
    )
    app = create_app({"settings": limited, "TESTING": True})
    try:
        client = app.test_client()
        # One bucket per caller across both APIs: GraphQL spends a token too.
        assert client.post("/graphql", json={"query": "{ me { subject } }"}).status_code == 200
        assert client.get("/beacon/individuals").status_code == 200
        refused = client.get("/beacon/individuals")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        check("error", refused.get_json())
    finally:
        app.extensions["biofed"].backend.close()


def test_a_page_past_the_end_is_empty_with_the_figures(client: FlaskClient) -> None:
    body = post(
        client,
        "biosamples",
        {
            "filters": [{"id": "ICD10:C50"}],
            "requestedGranularity": "record",
            "pagination": {"skip": 5, "limit": 10},
        },
    )
    check("record", body, "biosample")
    assert body["meta"]["returnedGranularity"] == "record"
    assert body["response"]["resultSets"] == []
    assert body["responseSummary"]["numTotalResults"] == 8  # C50: S1-S3 S7 S8 T1 T2 T4
    assert body["info"]["hasMoreResults"] is False
