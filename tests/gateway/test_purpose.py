"""A declared research purpose over GraphQL: outcome split, access explained, obligations."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.gateway.conftest import graphql, only_error

SEARCH = """
query($q: SampleQuery!, $p: ResearchPurpose) {
  search(query: $q, purpose: $p) {
    consent { outcome donors { value precision } samples { value } }
    byBiobank {
      biobank { id }
      access { role granularity explanation }
      consent { outcome donors { value } samples { value } }
    }
    records(first: 50) { nodes { sampleId consentOutcome obligations { code description } } }
  }
}"""


def test_purpose_splits_counts_and_limits_records(client: FlaskClient) -> None:
    body = graphql(
        client,
        SEARCH,
        {
            "q": {"diseases": ["C50"], "sexes": ["FEMALE"]},
            "p": {"kind": "DISEASE", "diseases": ["C50.9"], "commercial": True},
        },
    )
    assert "errors" not in body, body
    search = body["data"]["search"]
    split = {c["outcome"]: c["donors"]["value"] for c in search["consent"]}
    # bb1's C1 donors default to GRU; bb2's R1 donors to GRU: all permitted.
    assert split == {"PERMITTED": 3, "CONDITIONAL": 0, "NOT_PERMITTED": 0}
    rows = {r["biobank"]["id"]: r for r in search["byBiobank"]}
    assert rows["bb1"]["access"]["role"] == "anonymous"
    assert "counts are exact" in rows["bb1"]["access"]["explanation"]
    outcomes = {n["consentOutcome"] for n in search["records"]["nodes"]}
    assert outcomes == {"PERMITTED"}


def test_commercial_purpose_excludes_non_profit_only_donors(client: FlaskClient) -> None:
    # bb1's C2 collection consents HMB;NPU: a for-profit organisation may not use it.
    body = graphql(
        client,
        SEARCH,
        {
            "q": {"biobanks": ["bb1"], "materials": ["PLASMA"]},
            "p": {"kind": "HEALTH", "forProfit": True},
        },
    )
    search = body["data"]["search"]
    (row,) = search["byBiobank"]
    split = {c["outcome"]: c["donors"]["value"] for c in row["consent"]}
    assert split == {"PERMITTED": 2, "CONDITIONAL": 0, "NOT_PERMITTED": 2}
    assert [n["sampleId"] for n in search["records"]["nodes"]] == ["S1", "S8"]  # S4, S5: NPU


def test_bad_purpose_names_the_argument(client: FlaskClient) -> None:
    body = graphql(client, SEARCH, {"q": {}, "p": {"kind": "DISEASE"}})
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "purpose.diseases"
    body = graphql(client, SEARCH, {"q": {}, "p": {"kind": "HEALTH", "country": "Japan"}})
    assert (
        "purpose.country" in only_error(body)["message"] and "Japan" in only_error(body)["message"]
    )
