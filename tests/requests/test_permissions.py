"""Who may request, read and move what: researchers see their own requests, a biobank's
admin only that biobank's parts, anonymous callers nothing; the consent check is the
server's, never the client's; every change is in the append-only log."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from federation.runtime import Runtime
from tests.gateway.access import headers
from tests.gateway.conftest import graphql, only_error
from tests.requests.api import (
    CLINICAL_CARE,
    GET,
    MESSAGE,
    MINE,
    MOVE,
    PREVIEW,
    QUEUE,
    SEARCH_CONSENT,
    SUBMIT,
    part,
    submission,
)


def submit(client: FlaskClient, who: str = "researcher", **changes: Any) -> dict[str, Any]:
    body = graphql(client, SUBMIT, {"input": submission(**changes)}, headers=headers(who))
    assert "errors" not in body, body
    request: dict[str, Any] = body["data"]["submitAccessRequest"]
    return request


def move(
    client: FlaskClient,
    who: str,
    request_id: str,
    biobank: str,
    to: str,
    message: str | None = None,
) -> dict[str, Any]:
    variables = {"id": request_id, "b": biobank, "to": to, "m": message}
    return graphql(client, MOVE, variables, headers=headers(who))


def test_anonymous_callers_cannot_request_preview_or_list(client: FlaskClient) -> None:
    body = graphql(client, SUBMIT, {"input": submission()})
    assert only_error(body)["extensions"]["code"] == "UNAUTHENTICATED"
    variables = {"q": {"diseases": ["C50"]}, "p": {"kind": "HEALTH"}, "b": ["bb1"]}
    assert only_error(graphql(client, PREVIEW, variables))["extensions"]["code"] == (
        "UNAUTHENTICATED"
    )
    assert only_error(graphql(client, MINE))["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_researcher_cannot_read_another_researchers_request(client: FlaskClient) -> None:
    mine = submit(client, "researcher")
    other = graphql(client, GET, {"id": mine["id"]}, headers=headers("bb1_approved"))
    error = only_error(other)
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["extensions"]["argument"] == "id"
    theirs = graphql(client, MINE, headers=headers("bb1_approved"))["data"]["myAccessRequests"]
    assert mine["id"] not in [r["id"] for r in theirs]
    # Nor write in its thread or move it.
    body = graphql(
        client, MESSAGE, {"id": mine["id"], "b": "bb1", "m": "hi"}, headers=headers("bb1_approved")
    )
    assert only_error(body)["extensions"]["code"] == "NOT_FOUND"
    own = graphql(client, GET, {"id": mine["id"]}, headers=headers("researcher"))
    assert [p["biobank"]["id"] for p in own["data"]["accessRequest"]["parts"]] == ["bb1", "bb2"]


def test_an_admin_sees_and_moves_only_their_biobanks_part(client: FlaskClient) -> None:
    request = submit(client)
    seen = graphql(client, GET, {"id": request["id"]}, headers=headers("bb1_admin"))
    parts = seen["data"]["accessRequest"]["parts"]
    assert [p["biobank"]["id"] for p in parts] == ["bb1"]
    assert {e["biobankId"] for e in parts[0]["events"]} == {"bb1"}
    assert parts[0]["allowedMoves"] == ["UNDER_REVIEW", "DECLINED"]

    refused = move(client, "bb1_admin", request["id"], "bb2", "UNDER_REVIEW")
    assert only_error(refused)["extensions"]["code"] == "NOT_FOUND"
    queue = graphql(client, QUEUE, {"b": "bb2"}, headers=headers("bb1_admin"))
    assert only_error(queue)["extensions"]["code"] == "FORBIDDEN"

    queue = graphql(client, QUEUE, {}, headers=headers("bb1_admin"))["data"]
    listed = [r for r in queue["biobankAccessRequests"] if r["id"] == request["id"]]
    assert [p["biobank"]["id"] for p in listed[0]["parts"]] == ["bb1"]

    moved = move(client, "bb2_admin", request["id"], "bb2", "UNDER_REVIEW")
    assert part(moved["data"]["moveAccessRequest"], "bb2")["state"] == "UNDER_REVIEW"
    # bb1's part did not move, and the researcher sees both states.
    both = graphql(client, GET, {"id": request["id"]}, headers=headers("researcher"))
    states = {p["biobank"]["id"]: p["state"] for p in both["data"]["accessRequest"]["parts"]}
    assert states == {"bb1": "SUBMITTED", "bb2": "UNDER_REVIEW"}


def test_each_move_belongs_to_its_actor(client: FlaskClient) -> None:
    request = submit(client)
    rid = request["id"]
    # A researcher cannot approve their own request, nor an admin skip the review.
    error = only_error(move(client, "researcher", rid, "bb1", "APPROVED"))
    assert error["extensions"]["code"] == "TRANSITION_NOT_ALLOWED"
    error = only_error(move(client, "bb1_admin", rid, "bb1", "APPROVED"))
    assert error["extensions"]["code"] == "TRANSITION_NOT_ALLOWED"
    assert "possible: under_review, declined, closed" in error["message"]
    assert "errors" not in move(client, "bb1_admin", rid, "bb1", "UNDER_REVIEW")
    # Asking for more information needs words.
    error = only_error(move(client, "bb1_admin", rid, "bb1", "MORE_INFO_NEEDED"))
    assert (error["extensions"]["code"], error["extensions"]["argument"]) == (
        "BAD_USER_INPUT",
        "message",
    )
    assert "errors" not in move(
        client, "bb1_admin", rid, "bb1", "MORE_INFO_NEEDED", "Which ethics approval?"
    )
    # The researcher answers and sends it back into review; only then may it be approved.
    answered = move(client, "researcher", rid, "bb1", "UNDER_REVIEW", "Approval ERB-2026-17")
    assert part(answered["data"]["moveAccessRequest"], "bb1")["state"] == "UNDER_REVIEW"
    assert "errors" not in move(client, "bb1_admin", rid, "bb1", "APPROVED", "Approved.")
    # The operator may close a part but not approve one.
    error = only_error(move(client, "operator", rid, "bb2", "APPROVED"))
    assert error["extensions"]["code"] == "TRANSITION_NOT_ALLOWED"
    assert "errors" not in move(client, "operator", rid, "bb2", "CLOSED", "Withdrawn.")


def test_the_log_has_every_change_and_refuses_edits(client: FlaskClient, runtime: Runtime) -> None:
    request = submit(client)
    rid = request["id"]
    move(client, "bb1_admin", rid, "bb1", "UNDER_REVIEW")
    move(client, "bb1_admin", rid, "bb1", "DECLINED", "Not within our consent scope.")
    graphql(
        client, MESSAGE, {"id": rid, "b": "bb1", "m": "Thank you."}, headers=headers("researcher")
    )
    events = runtime.state_store.access_requests.events(rid)
    lines = [(e.biobank_id, e.actor_role, e.from_state, e.to_state, e.message) for e in events]
    assert lines == [
        ("bb1", "researcher", None, "submitted", None),
        ("bb2", "researcher", None, "submitted", None),
        ("bb1", "biobank_admin", "submitted", "under_review", None),
        ("bb1", "biobank_admin", "under_review", "declined", "Not within our consent scope."),
        ("bb1", "researcher", None, None, "Thank you."),
    ]
    assert all(e.actor.startswith("api_key:") for e in events)
    for statement in (
        "UPDATE access_request_events SET message = 'rewritten'",
        "DELETE FROM access_request_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"), runtime.state_store.write() as db:
            db.execute(text(statement))


def test_the_consent_check_is_the_servers_not_the_clients(client: FlaskClient) -> None:
    # Counts are no part of the input: a client that sends some is refused outright.
    forged = submission(consent=[{"biobank": "bb1", "permitted": 9999}])
    body = graphql(client, SUBMIT, {"input": forged}, headers=headers("researcher"))
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "consent" in error["message"]
    # The stored check is what a fresh search with the same purpose releases to the role.
    request = submit(client)
    search = graphql(
        client,
        SEARCH_CONSENT,
        {
            "q": {"diseases": ["C50"], "sexes": ["FEMALE"]},
            "p": {"kind": "DISEASE", "diseases": ["C50"]},
        },
        headers=headers("researcher"),
    )["data"]["search"]["byBiobank"]
    for row in search:
        check = part(request, row["biobank"]["id"])["consentCheck"]
        for outcome in row["consent"]:
            key = {"PERMITTED": "permitted", "CONDITIONAL": "conditional"}.get(
                outcome["outcome"], "notPermitted"
            )
            assert check[key]["donors"] == outcome["donors"]
            assert check[key]["samples"] == outcome["samples"]
    # By the data's comments: all C50 women are under GRU, which permits the purpose.
    assert part(request, "bb1")["consentCheck"]["permitted"]["donors"]["value"] == 2
    assert part(request, "bb1")["consentCheck"]["permitted"]["samples"]["value"] == 4
    assert part(request, "bb2")["consentCheck"]["permitted"]["donors"]["value"] == 1
    assert part(request, "bb2")["consentCheck"]["notPermitted"]["donors"]["value"] == 0


def test_a_purpose_nothing_permits_warns_and_needs_acknowledging(client: FlaskClient) -> None:
    variables = {"q": {"diseases": ["C50"]}, "p": CLINICAL_CARE, "b": ["bb1", "bb2"], "lang": "ja"}
    preview = graphql(client, PREVIEW, variables, headers=headers("researcher"))
    answer = preview["data"]["previewAccessRequest"]
    assert answer["nothingPermits"] is True
    assert "同意" in answer["warning"]
    assert answer["question"].startswith("次の条件の検体")
    body = graphql(
        client, SUBMIT, {"input": submission(purpose=CLINICAL_CARE)}, headers=headers("researcher")
    )
    assert only_error(body)["extensions"]["code"] == "PURPOSE_NOT_PERMITTED"
    sent = submit(client, purpose=CLINICAL_CARE, acknowledgeNoPermission=True)
    assert part(sent, "bb1")["consentCheck"]["notPermitted"]["donors"]["value"] == 2
    # A purpose that is permitted carries no warning.
    variables["p"] = {"kind": "HEALTH"}
    answer = graphql(client, PREVIEW, variables, headers=headers("researcher"))["data"]
    assert (
        answer["previewAccessRequest"]["nothingPermits"],
        answer["previewAccessRequest"]["warning"],
    ) == (False, None)


def test_collections_of_the_selected_biobanks_are_kept(client: FlaskClient) -> None:
    request = submit(client, collections=[{"biobank": "bb1", "collections": ["C1"]}])
    assert part(request, "bb1")["consentCheck"]["collections"] == ["C1"]
    assert part(request, "bb2")["consentCheck"]["collections"] == []


def test_bad_input_names_the_field(client: FlaskClient) -> None:
    cases = [
        (submission(biobanks=[]), "biobanks"),
        (submission(biobanks=["bb9"]), "biobanks"),
        (submission(title="  "), "title"),
        (
            submission(query={"diseases": ["C50"], "biobanks": ["bb2"]}, biobanks=["bb1"]),
            "biobanks",
        ),
        (submission(language="fr"), "language"),
        (submission(collections=[{"biobank": "bb1", "collections": ["C9"]}]), "collections"),
        (submission(collections=[{"biobank": "bb9", "collections": ["C1"]}]), "collections"),
        (submission(query={"diseases": ["not-a-code"]}), "input.query.diseases"),
    ]
    for data, argument in cases:
        body = graphql(client, SUBMIT, {"input": data}, headers=headers("researcher"))
        error = only_error(body)
        assert (error["extensions"]["code"], error["extensions"]["argument"]) == (
            "BAD_USER_INPUT",
            argument,
        ), error
