"""Biobank pages in the API: access terms, data freshness, holdings per collection released
for each role like any search, and the country facet.

The network here has a rule for anonymous users (minimum count 3, rounding to 5) and
exact counts for signed-in researchers, so a holdings figure that bypassed the release
path would show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from federation.gateway import create_app
from federation.runtime import Runtime
from federation.settings import SettingsError, load_network
from federation.sync.admin import STALE_AFTER, SyncAdministration
from federation.sync.run import SyncFailed, sync_biobank
from tests.gateway.access import headers, with_test_access
from tests.gateway.conftest import BB1, BB2, graphql, make_settings

# bb1 as in tests/gateway/conftest.py: C1 holds D1 (S1 PLASMA, S2 SERUM), D2 (S3 DNA, S8
# PLASMA), D6 (S7 TISSUE_FROZEN) and the withdrawn D5; C2 holds D3 (S4) and D4 (S5), both
# PLASMA. So C1 = 3 donors, 5 samples; C2 = 2 donors, 2 samples.
NETWORK = """\
    default_disclosure:
      anonymous: {granularity: count, min_count: 3, rounding: 5, noise: 0}
      registered: {granularity: record, min_count: 1, rounding: 1, noise: 0}
    biobanks:
      - id: bb1
        name: Test biobank
        name_ja: テストバイオバンク
        country: JP
        connector: {type: tabular, options: {path: bb1}}
        access:
          url: https://bb1.example.org/apply
          conditions: Academic research with ethics approval.
          conditions_ja: 倫理審査の承認を受けた学術研究に限ります。
      - id: bb2
        name: Second biobank
        country: DE
        connector: {type: tabular, options: {path: bb2}}
      - id: bb3
        name: Never synced
        country: FR
        connector: {type: tabular, options: {path: bb3-missing}}
    """

PAGE = """query($id: ID!) {
  biobank(id: $id) {
    accessUrl accessConditions
    freshness { status lastSuccessfulSync lastAttempt lastAttemptFailed }
  }
}"""
COUNT = "value precision reason"
HOLDINGS = f"""query($id: ID!) {{
  holdings(biobank: $id) {{
    biobank {{ id }}
    donors {{ {COUNT} }} samples {{ {COUNT} }}
    access {{ role granularity }}
    materials {{ key samples {{ {COUNT} }} }}
    collections {{
      collection {{ id name }} described
      donors {{ {COUNT} }} samples {{ {COUNT} }}
      materials {{ key samples {{ {COUNT} }} }}
      diseases {{ key samples {{ {COUNT} }} }}
    }}
  }}
}}"""
SEARCH = f"""query($q: SampleQuery!) {{
  search(query: $q) {{
    byBiobank {{ biobank {{ id }} donors {{ {COUNT} }} samples {{ {COUNT} }} }}
    facets(names: ["material_type", "block", "country", "biobank"]) {{
      name buckets {{ key samples {{ {COUNT} }} }}
    }}
  }}
}}"""


@pytest.fixture(scope="module")
def pages_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    root = tmp_path_factory.mktemp("pages")
    for folder, tables in (("bb1", BB1), ("bb2", BB2)):
        (root / folder).mkdir(parents=True)
        for name, text in tables.items():
            (root / folder / name).write_text(dedent(text), encoding="utf-8")
    network = root / "network.yaml"
    network.write_text(dedent(NETWORK), encoding="utf-8")
    settings = make_settings(root, network)
    runtime = Runtime(settings)
    for biobank_id in ("bb1", "bb2"):
        source = runtime.network().get(biobank_id)
        sync_biobank(source, runtime.backend, runtime.state, locks_dir=settings.locks_dir)
    # bb2's source disappears: its next sync fails and the first one's data keeps serving.
    (root / "bb2" / "samples.csv").unlink()
    with pytest.raises(SyncFailed):
        sync_biobank(
            runtime.network().get("bb2"),
            runtime.backend,
            runtime.state,
            locks_dir=settings.locks_dir,
        )
    runtime.backend.close()
    app = create_app({"settings": with_test_access(settings), "TESTING": True})
    # The first search loads the disease names (seconds on a busy machine): not under the
    # request deadline of the tests below.
    app.extensions["biofed"].search.names.codes_for_text("breast")
    yield app
    app.extensions["biofed"].backend.close()


@pytest.fixture
def pages(pages_app: Flask) -> FlaskClient:
    return pages_app.test_client()


def ask(client: FlaskClient, query: str, variables: dict[str, Any], **head: str) -> Any:
    body = graphql(client, query, variables, headers=head)
    assert "errors" not in body, body
    return body["data"]


def test_access_terms_in_the_readers_language(pages: FlaskClient) -> None:
    en = ask(pages, PAGE, {"id": "bb1"})["biobank"]
    assert en["accessUrl"] == "https://bb1.example.org/apply"
    assert en["accessConditions"] == "Academic research with ethics approval."
    ja = ask(pages, PAGE, {"id": "bb1"}, **{"Accept-Language": "ja"})["biobank"]
    assert ja["accessConditions"] == "倫理審査の承認を受けた学術研究に限ります。"
    # Without a Japanese text the English one is given; without any, null.
    bb2 = ask(pages, PAGE, {"id": "bb2"}, **{"Accept-Language": "ja"})["biobank"]
    assert (bb2["accessUrl"], bb2["accessConditions"]) == (None, None)


def test_freshness_says_fresh_failing_and_never(pages: FlaskClient) -> None:
    fresh = ask(pages, PAGE, {"id": "bb1"})["biobank"]["freshness"]
    assert fresh["status"] == "FRESH" and fresh["lastAttemptFailed"] is False
    assert fresh["lastSuccessfulSync"] == fresh["lastAttempt"]
    failing = ask(pages, PAGE, {"id": "bb2"})["biobank"]["freshness"]
    assert failing["status"] == "FAILING" and failing["lastAttemptFailed"] is True
    assert failing["lastSuccessfulSync"] < failing["lastAttempt"]
    never = ask(pages, PAGE, {"id": "bb3"})["biobank"]["freshness"]
    assert never == {
        "status": "NEVER",
        "lastSuccessfulSync": None,
        "lastAttempt": None,
        "lastAttemptFailed": False,
    }


def test_freshness_turns_stale_after_a_week(pages_app: Flask) -> None:
    runtime: Runtime = pages_app.extensions["biofed"]
    admin = SyncAdministration(runtime.state, runtime.network)
    synced = admin.freshness("bb1")
    assert synced.last_success is not None
    finished = dt.datetime.fromisoformat(synced.last_success)
    assert admin.freshness("bb1", at=finished + STALE_AFTER).status == "FRESH"
    later = finished + STALE_AFTER + dt.timedelta(minutes=1)
    assert admin.freshness("bb1", at=later).status == "STALE"


def _search(client: FlaskClient, query: dict[str, Any], **head: str) -> dict[str, Any]:
    answer: dict[str, Any] = ask(client, SEARCH, {"q": query}, **head)["search"]
    return answer


def _facet(answer: dict[str, Any], name: str) -> dict[str, Any]:
    facet = next(f for f in answer["facets"] if f["name"] == name)
    return {b["key"]: b["samples"] for b in facet["buckets"]}


@pytest.mark.parametrize("role", ["anonymous", "researcher"])
def test_holdings_are_the_searches_a_role_could_make(pages: FlaskClient, role: str) -> None:
    head = headers(role) if role != "anonymous" else {}
    holdings = ask(pages, HOLDINGS, {"id": "bb1"}, **head)["holdings"]
    whole = _search(pages, {"biobanks": ["bb1"]}, **head)
    row = whole["byBiobank"][0]
    assert (holdings["donors"], holdings["samples"]) == (row["donors"], row["samples"])
    materials = {b["key"]: b["samples"] for b in holdings["materials"]}
    assert materials == _facet(whole, "material_type")
    assert [c["collection"]["id"] for c in holdings["collections"]] == ["C1", "C2"]
    for item in holdings["collections"]:
        query = {"biobanks": ["bb1"], "collections": [item["collection"]["id"]]}
        search = _search(pages, query, **head)
        assert item["described"] is True
        assert (item["donors"], item["samples"]) == (
            search["byBiobank"][0]["donors"],
            search["byBiobank"][0]["samples"],
        )
        assert {b["key"]: b["samples"] for b in item["materials"]} == _facet(
            search, "material_type"
        )
        assert {b["key"]: b["samples"] for b in item["diseases"]} == _facet(search, "block")


def test_holdings_never_state_a_count_the_role_may_not_see(pages: FlaskClient) -> None:
    anonymous = ask(pages, HOLDINGS, {"id": "bb1"})["holdings"]
    c1, c2 = anonymous["collections"]
    # C1 has 5 samples (rounded to 5 for anonymous); C2's 2 donors are below the minimum
    # count of 3: withheld, never 2.
    assert c1["samples"] == {"value": 5, "precision": "ROUNDED", "reason": c1["samples"]["reason"]}
    assert c2["donors"]["value"] is None and c2["donors"]["precision"] == "BELOW_THRESHOLD"
    assert c2["samples"]["value"] is None and c2["samples"]["precision"] == "BELOW_THRESHOLD"
    researcher = ask(pages, HOLDINGS, {"id": "bb1"}, **headers("researcher"))["holdings"]
    exact = {
        c["collection"]["id"]: (c["donors"]["value"], c["samples"]["value"])
        for c in researcher["collections"]
    }
    assert exact == {"C1": (3, 5), "C2": (2, 2)}
    assert researcher["access"] == {"role": "registered", "granularity": "record"}


def test_holdings_are_audited_like_searches(pages_app: Flask, pages: FlaskClient) -> None:
    runtime: Runtime = pages_app.extensions["biofed"]
    before = len(runtime.audit.entries(first=100, subject="researcher@university.example").entries)
    ask(pages, HOLDINGS, {"id": "bb1"}, **headers("researcher"))
    after = runtime.audit.entries(first=100, subject="researcher@university.example").entries
    # One search of the biobank and one per collection (C1, C2).
    assert len(after) - before == 3


def test_holdings_of_an_unknown_biobank_name_the_argument(pages: FlaskClient) -> None:
    body = graphql(pages, HOLDINGS, {"id": "nope"})
    error = body["errors"][0]
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert "nope" in error["message"]


def test_country_facet_and_filter(pages: FlaskClient) -> None:
    head = headers("researcher")
    everything = _search(pages, {"sexes": ["FEMALE"]}, **head)
    # FEMALE: bb1 D1 (S1, S2), D2 (S3, S8), D4 (S5) = 5 samples; bb2 E1 (T1, T2), E2 (T3) = 3.
    assert {k: v["value"] for k, v in _facet(everything, "country").items()} == {"JP": 5, "DE": 3}
    germany = _search(pages, {"sexes": ["FEMALE"], "countries": ["DE"]}, **head)
    assert [r["biobank"]["id"] for r in germany["byBiobank"]] == ["bb2"]
    assert _facet(germany, "country") == _facet(everything, "country")
    # Released per biobank and added like any facet: anonymous sees rounded figures.
    anonymous = _facet(_search(pages, {"sexes": ["FEMALE"]}), "country")
    assert anonymous["JP"] == {
        "value": 5,
        "precision": "ROUNDED",
        "reason": anonymous["JP"]["reason"],
    }
    # bb2's two female donors are below the minimum count of 3: its 3 samples are never
    # said, and the country bucket releases what the biobank bucket does.
    assert anonymous["DE"]["value"] is None
    assert anonymous["DE"] == _facet(_search(pages, {"sexes": ["FEMALE"]}), "biobank")["bb2"]
    bad = graphql(pages, SEARCH, {"q": {"countries": ["Germany"]}})["errors"][0]
    assert bad["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Germany" in bad["message"] and "countries" in bad["message"]


@pytest.mark.parametrize(
    ("access", "message"),
    [
        ("access: [x]", "biobanks[0].access: must be a mapping"),
        ("access: {url: ftp://x}", "access.url: 'ftp://x' is not an http(s) URL"),
        ("access: {form: x}", "access.form: unknown"),
        ("access: {conditions: 3}", "access.conditions: 3 is not text"),
    ],
)
def test_bad_access_terms_are_refused_naming_the_field(
    tmp_path: Path, access: str, message: str
) -> None:
    network = tmp_path / "network.yaml"
    network.write_text(
        "biobanks:\n  - id: a\n    name: A\n    country: JP\n"
        f"    connector: {{type: tabular}}\n    {access}\n",
        encoding="utf-8",
    )
    with pytest.raises(SettingsError) as err:
        load_network(network)
    assert message in str(err.value)
