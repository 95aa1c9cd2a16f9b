"""The hand-off out: the Negotiator's discovery payload with the fields its API documents,
posting it to a Negotiator (a loopback stand-in answering as its API does) and recording
the link it returns, and application links that carry the question."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from federation.gateway import create_app
from federation.settings import Settings
from tests.gateway.access import headers, with_test_access
from tests.gateway.conftest import graphql, only_error
from tests.requests.api import GET, PAYLOAD, SEND, SLOW_MACHINE, SUBMIT, submission
from tests.requests.receivers import negotiator, negotiator_errors

APPLY = "https://bb1.example.org/apply?project={title}&question={query}"


@pytest.fixture
def negotiator_url() -> Iterator[tuple[str, list[dict[str, object]]]]:
    with negotiator() as (url, inbox):
        yield url, inbox.requests


@pytest.fixture
def apply_app(synced_settings: Settings, negotiator_url: tuple[str, object]) -> Iterator[Flask]:
    """The test network with an application URL for bb1, and a Negotiator configured."""
    assert synced_settings.network is not None
    network = yaml.safe_load(synced_settings.network.read_text(encoding="utf-8"))
    network["access_requests"] = {"application_urls": {"bb1": APPLY}}
    path = synced_settings.network.parent / "network-apply.yaml"
    path.write_text(yaml.safe_dump(network), encoding="utf-8")
    requests = {"negotiator_url": negotiator_url[0], "public_url": "https://biofed.example.org"}
    settings = synced_settings.with_overrides(network=str(path), requests=requests)
    app = create_app({"settings": with_test_access(settings, **SLOW_MACHINE), "TESTING": True})
    runtime = app.extensions["biofed"]
    runtime.state_store  # noqa: B018 -- opened before the first request
    yield app
    runtime.deliverer.stop()
    runtime.backend.close()


def submitted(client: FlaskClient) -> str:
    body = graphql(client, SUBMIT, {"input": submission()}, headers=headers("researcher"))
    assert "errors" not in body, body
    return str(body["data"]["submitAccessRequest"]["id"])


def test_the_payload_has_the_negotiators_fields(apply_app: Flask) -> None:
    client = apply_app.test_client()
    request_id = submitted(client)
    body = graphql(client, PAYLOAD, {"id": request_id}, headers=headers("researcher"))
    answer = body["data"]["negotiatorPayload"]
    payload = (
        answer["payload"] if isinstance(answer["payload"], dict) else json.loads(answer["payload"])
    )
    assert negotiator_errors(payload) == []
    assert payload["resources"] == [
        {"id": "bb1", "name": "Test biobank", "type": "biobank"},
        {"id": "bb2", "name": "Second biobank", "type": "biobank"},
    ]
    assert payload["humanReadable"].startswith("Breast cancer plasma proteomics: Samples where")
    # `url` opens the same question and purpose on the network's search page.
    address = urlsplit(payload["url"])
    assert f"{address.scheme}://{address.netloc}" == "https://biofed.example.org"
    assert parse_qs(address.query) == {
        "disease": ["C50"],
        "sex": ["FEMALE"],
        "purpose": ["DISEASE"],
        "purpose_disease": ["C50"],
    }
    # Only bb1 names an application page; its link carries the question as JSON.
    [link] = answer["applicationLinks"]
    assert link["biobankId"] == "bb1"
    carried = parse_qs(urlsplit(link["url"]).query)
    assert json.loads(carried["question"][0])["diseases"] == ["C50"]
    assert carried["project"] == ["Breast cancer plasma proteomics"]
    # An admin of bb2 sees only bb2 in the hand-off, and no link of bb1.
    body = graphql(client, PAYLOAD, {"id": request_id}, headers=headers("bb2_admin"))
    answer = body["data"]["negotiatorPayload"]
    assert [r["id"] for r in answer["resources"]] == ["bb2"]
    assert answer["applicationLinks"] == []


def test_sending_records_the_negotiators_link(
    apply_app: Flask, negotiator_url: tuple[str, list[dict[str, object]]]
) -> None:
    client = apply_app.test_client()
    request_id = submitted(client)
    refused = graphql(client, SEND, {"id": request_id}, headers=headers("bb1_admin"))
    assert only_error(refused)["extensions"]["code"] == "FORBIDDEN"
    body = graphql(client, SEND, {"id": request_id}, headers=headers("researcher"))
    assert "errors" not in body, body
    link = body["data"]["sendAccessRequestToNegotiator"]["negotiatorLink"]
    url, received = negotiator_url
    assert len(received) == 1 and negotiator_errors(received[0]) == []
    assert link == f"{url.removesuffix('/api/v3/requests')}/requests/neg-1"
    again = graphql(client, GET, {"id": request_id}, headers=headers("researcher"))
    events = again["data"]["accessRequest"]["parts"][0]["events"]
    assert events[-1]["message"] == f"handed over to the Negotiator: {link}"


def test_a_payload_the_negotiator_refuses_is_reported() -> None:
    # The stand-in refuses what the Negotiator's API would: the checks are real checks.
    assert negotiator_errors({"url": "u", "humanReadable": "h", "resources": []}) == [
        "resources must be a non-empty list"
    ]
    assert negotiator_errors({"humanReadable": "h", "resources": [{"id": "x"}]}) == [
        "url is missing",
        "resources[0] has no string name",
    ]
