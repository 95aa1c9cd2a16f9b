"""Every failure carries a stable code and names what was wrong; nothing internal leaks."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from graphql import GraphQLError

from federation.errors import FederationError, Forbidden
from federation.gateway import endpoint
from federation.gateway.errors import execution_error
from federation.runtime import Runtime
from federation.search.backend import BackendUnavailable
from federation.search.service import unknown_biobank
from tests.gateway.access import headers
from tests.gateway.conftest import graphql, only_error

SEARCH = "query($q: SampleQuery!) { search(query: $q) { samples { value } } }"


def search_error(client: FlaskClient, query: dict[str, Any]) -> dict[str, Any]:
    body = graphql(client, SEARCH, {"q": query})
    assert body["data"] is None
    return only_error(body)


# --- bad input: BAD_USER_INPUT, naming the argument and the value -------------------------


def test_unknown_icd10_code(client: FlaskClient) -> None:
    error = search_error(client, {"diseases": ["C50", "C99"]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "query.diseases"
    assert error["extensions"]["value"] == "C99"
    assert error["message"].startswith("query.diseases: ")
    assert "C99" in error["message"]
    assert error["path"] == ["search"]


def test_national_extension_code_gets_a_hint(client: FlaskClient) -> None:
    error = search_error(client, {"diseases": ["C50.91"]})
    assert error["extensions"]["argument"] == "query.diseases"
    assert "C50.9" in error["message"]


def test_age_min_above_age_max(client: FlaskClient) -> None:
    error = search_error(client, {"ageMin": 70, "ageMax": 40})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "query.ageMin"
    assert error["extensions"]["value"] == 70
    # Sibling fields are named as the client spells them.
    assert "ageMax" in error["message"] and "age_max" not in error["message"]


def test_unknown_vocabulary_value(client: FlaskClient) -> None:
    error = search_error(client, {"materials": ["PLASMA", "BLOOD_ORANGE"]})
    assert error["extensions"]["argument"] == "query.materials"
    assert "BLOOD_ORANGE" in error["message"]
    assert "closest: WHOLE_BLOOD" in error["message"]


def test_unknown_biobank_is_refused_with_the_known_ids(client: FlaskClient) -> None:
    error = search_error(client, {"biobanks": ["bb1", "bb3"], "materials": ["PLASMA"]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "query.biobanks"
    assert error["extensions"]["value"] == "bb3"
    assert "unknown biobank; known: bb1, bb2" in error["message"]


def test_unknown_biobank_among_many_names_the_closest() -> None:
    known = {f"jp-site-{n:02d}" for n in range(40)} | {"de-heidelberg-hosp"}
    error = unknown_biobank("de-heidelburg-hosp", known)
    assert (error.argument, error.value) == ("biobanks", "de-heidelburg-hosp")
    assert error.reason.startswith("unknown biobank; closest: de-heidelberg-hosp")
    assert error.reason.endswith("(41 biobanks known)")


def test_wrong_type_inline_names_the_argument(client: FlaskClient) -> None:
    body = graphql(client, '{ search(query: {ageMin: "x"}) { samples { value } } }')
    assert "data" not in body
    error = only_error(body)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert error["extensions"]["argument"] == "query.ageMin"
    assert error["message"].startswith("query.ageMin: ")
    assert '"x"' in error["message"]


def test_wrong_type_in_variables_names_the_variable_path(client: FlaskClient) -> None:
    body = graphql(client, SEARCH, {"q": {"ageMin": "x"}})
    assert "data" not in body
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "q.ageMin" in error["message"] and "'x'" in error["message"]


def test_unknown_input_field(client: FlaskClient) -> None:
    error = only_error(graphql(client, "{ search(query: {colour: 1}) { samples { value } } }"))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert error["extensions"]["argument"] == "query.colour"


def test_unknown_facet_name(client: FlaskClient) -> None:
    body = graphql(client, '{ search(query: {}) { facets(names: ["colour"]) { name } } }')
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "facets.names"
    assert error["extensions"]["value"] == "colour"
    assert "material_type" in error["message"]  # says which facets exist


@pytest.mark.parametrize("first", [0, 101])
def test_page_size_out_of_range(client: FlaskClient, first: int) -> None:
    query = "{ search(query: {}) { records(first: FIRST) { nodes { sampleId } } } }"
    body = graphql(client, query.replace("FIRST", str(first)))
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "records.first"
    assert str(first) in error["message"] and "100" in error["message"]


def test_malformed_cursor(client: FlaskClient) -> None:
    body = graphql(
        client, '{ search(query: {}) { records(after: "not-a-cursor") { nodes { sampleId } } } }'
    )
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "records.after"
    assert "not-a-cursor" in error["message"]


def test_disease_matches_out_of_range(client: FlaskClient) -> None:
    error = only_error(graphql(client, '{ diseases(text: "breast", first: 500) { code } }'))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "first"


def test_explicit_null_page_size_means_the_default(client: FlaskClient) -> None:
    body = graphql(client, "{ search(query: {}) { records(first: null) { nodes { sampleId } } } }")
    assert "errors" not in body
    # 7 of bb1's 9 samples (S6's donor withdrew, S9's collection is missing) and bb2's 4.
    assert len(body["data"]["search"]["records"]["nodes"]) == 11


# --- malformed documents ------------------------------------------------------------------


def test_syntax_error(client: FlaskClient) -> None:
    body = graphql(client, "{ search(query: {}) { samples { value }")
    assert "data" not in body
    error = only_error(body)
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["locations"]


def test_unknown_field(client: FlaskClient) -> None:
    error = only_error(graphql(client, "{ search(query: {}) { sampels { value } } }"))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "sampels" in error["message"]


def test_a_remembered_document_answers_as_a_fresh_one(client: FlaskClient) -> None:
    # Parsed and validated documents are kept for repeated texts: the second asking must
    # give the same errors and answers, with different variables, and parse errors stay.
    bad = "{ search(query: {}) { sampels { value } } } # remembered"
    hits = endpoint._remembered_document.cache_info().hits
    first, again = (only_error(graphql(client, bad)) for _ in range(2))
    assert first == again and first["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert endpoint._remembered_document.cache_info().hits == hits + 1
    female = graphql(client, SEARCH, {"q": {"sexes": ["FEMALE"]}})["data"]["search"]
    male = graphql(client, SEARCH, {"q": {"sexes": ["MALE"]}})["data"]["search"]
    assert female != male
    for _ in range(2):
        body = graphql(client, "{ search(query: {}) { samples { value }")
        assert only_error(body)["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    # A long text is checked afresh each time, never kept.
    long_text = "{ search(query: {}) { samples { value } } }" + " " * endpoint.CACHED_QUERY_CHARS
    size = endpoint._remembered_document.cache_info().currsize
    assert graphql(client, long_text)["data"]["search"]["samples"]["value"] is not None
    assert endpoint._remembered_document.cache_info().currsize == size


def test_count_is_never_a_bare_int(client: FlaskClient) -> None:
    error = only_error(graphql(client, "{ search(query: {}) { samples } }"))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_several_operations_need_an_operation_name(client: FlaskClient) -> None:
    body = graphql(client, "query A { biobanks { id } } query B { biobanks { name } }")
    error = only_error(body)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "operationName" in error["message"]
    response = client.post(
        "/graphql",
        json={
            "query": "query A { biobanks { id } } query B { biobanks { name } }",
            "operationName": "B",
        },
    )
    assert response.get_json()["data"]["biobanks"][0] == {"name": "Test biobank"}


# --- HTTP ---------------------------------------------------------------------------------


def http_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    (error,) = response.get_json()["errors"]
    assert error["extensions"]["code"] == code
    return str(error["message"])


def test_get_runs_queries(client: FlaskClient) -> None:
    response = client.get(
        "/graphql",
        query_string={
            "query": "query($id: ID!) { biobank(id: $id) { name } }",
            "variables": '{"id": "bb2"}',
        },
    )
    assert response.status_code == 200
    assert response.get_json()["data"] == {"biobank": {"name": "Second biobank"}}


def test_malformed_json_body(client: FlaskClient) -> None:
    response = client.post("/graphql", data='{"query": ', content_type="application/json")
    assert "JSON" in http_error(response, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "payload",
    [[], {"variables": {}}, {"query": 5}, {"query": "{ biobanks { id } }", "variables": [1]}],
)
def test_body_without_a_usable_request(client: FlaskClient, payload: object) -> None:
    http_error(client.post("/graphql", json=payload), 400, "BAD_REQUEST")


def test_non_json_body(client: FlaskClient) -> None:
    response = client.post("/graphql", data="{ biobanks { id } }", content_type="text/plain")
    http_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_other_methods(client: FlaskClient) -> None:
    response = client.put("/graphql", json={"query": "{ biobanks { id } }"})
    http_error(response, 405, "METHOD_NOT_ALLOWED")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_body_size_is_capped(client: FlaskClient) -> None:
    padding = " " * (70 * 1024)
    response = client.post("/graphql", json={"query": "{ biobanks { id } }" + padding})
    http_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_document_length_is_capped(client: FlaskClient) -> None:
    query = "{ biobanks { id } }" + "#" * 30_000
    message = http_error(client.post("/graphql", json={"query": query}), 400, "BAD_REQUEST")
    assert "20000" in message


def test_token_count_is_capped(client: FlaskClient) -> None:
    query = "{ biobanks { " + "id " * 6000 + "} }"
    error = only_error(graphql(client, query))
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


# --- failures behind the API --------------------------------------------------------------


def test_backend_unavailable(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: object, **__: object) -> None:
        raise BackendUnavailable("index file /srv/secret/path unreadable")

    monkeypatch.setattr(runtime.backend, "answer", down)
    error = search_error(client, {})
    assert error["extensions"]["code"] == "BACKEND_UNAVAILABLE"
    assert "/srv/secret" not in error["message"]


def test_unexpected_errors_are_logged_not_shown(
    client: FlaskClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise ZeroDivisionError("secret internal detail")

    monkeypatch.setattr(runtime.backend, "answer", broken)
    with caplog.at_level(logging.ERROR, logger="federation.gateway"):
        response = client.post("/graphql", json={"query": SEARCH, "variables": {"q": {}}})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "secret" not in text and "ZeroDivisionError" not in text and "Traceback" not in text
    error = only_error(response.get_json())
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["path"] == ["search"]
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_unknown_biobank_argument_is_not_found(client: FlaskClient) -> None:
    for query in (
        '{ collections(biobank: "nope") { id } }',
        '{ quarantine(biobank: "nope") { reason } }',
        '{ syncRuns(biobank: "nope") { id } }',
    ):
        # Signed in: anonymous callers of syncRuns and quarantine hear UNAUTHENTICATED first.
        error = only_error(graphql(client, query, headers=headers("operator")))
        assert error["extensions"]["code"] == "NOT_FOUND", query
        assert error["extensions"]["argument"] == "biobank"
        assert "nope" in error["message"]


def test_any_federation_error_is_shown_with_its_code() -> None:
    # A room the gateway knows nothing about raises its own FederationError: the client
    # gets that error's code and message, not INTERNAL_SERVER_ERROR.
    class QueueFull(FederationError):
        code = "RATE_LIMITED"

    error = GraphQLError("x", path=["startSync"], original_error=QueueFull("the queue is full"))
    assert execution_error(error) == {
        "message": "the queue is full",
        "extensions": {"code": "RATE_LIMITED"},
        "path": ["startSync"],
    }
    refused = Forbidden("syncRuns: only admins may see this", biobank="bb2")
    body = execution_error(GraphQLError("x", original_error=refused))
    assert body["extensions"] == {"code": "FORBIDDEN", "biobank": "bb2"}


# --- input that is not text, operations that are not run, keys in the wrong place ----------

LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("query", "argument"),
    [
        ({"text": f"diabetes{LONE_SURROGATE}"}, "query.text"),
        ({"biobanks": [LONE_SURROGATE]}, "query.biobanks"),
    ],
)
def test_a_lone_surrogate_is_bad_input_naming_the_field(
    client: FlaskClient, query: dict[str, Any], argument: str
) -> None:
    error = search_error(client, query)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == argument
    assert "surrogate" in error["message"] and "\\ud800" in error["message"]


def test_a_lone_surrogate_in_the_audit_subject_is_bad_input(client: FlaskClient) -> None:
    body = graphql(
        client,
        "query($s: String) { auditLog(subject: $s) { nodes { subject } } }",
        {"s": LONE_SURROGATE},
        headers=headers("operator"),
    )
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "subject"


def test_a_subscription_is_a_validation_error(client: FlaskClient) -> None:
    error = only_error(graphql(client, "subscription { me { subject } }"))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "subscription" in error["message"]


@pytest.mark.parametrize(
    ("url", "sent_headers", "named"),
    [
        ("/graphql?api_key=bfk_x_y", {}, "`api_key` query parameter"),
        ("/graphql", {"Api-Key": "bfk_x_y"}, "`Api-Key` header"),
    ],
)
def test_a_key_in_the_wrong_place_is_told_where_it_goes(
    client: FlaskClient, url: str, sent_headers: dict[str, str], named: str
) -> None:
    response = client.post(url, json={"query": "{ me { subject } }"}, headers=sent_headers)
    assert response.status_code == 401
    error = only_error(response.get_json())
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer <key>" in error["message"] and named in error["message"]
