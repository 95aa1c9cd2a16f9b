"""The small fixes of issue 12 (item 6), checked against the gateway under gunicorn: lone
surrogates, subscriptions, keys in the wrong place (and kept out of the access log),
private files, and CC consent only extending GRU, HMB and DS to clinical care."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.gateway.auth import issue_api_key
from federation.runtime import Runtime
from federation.sync.run import sync_biobank
from tests.conftest import make_settings
from tests.privacy.attack_network import serve
from tests.support.network import TabularBiobank, write_network
from tests.support.server import graphql

LONE_SURROGATE = "\ud800"
SPLIT = """query($q: SampleQuery!, $p: ResearchPurpose) { search(query: $q, purpose: $p) {
  byBiobank { consent { outcome donors { value } } } } }"""


def _network(root: Path) -> Path:
    bank = TabularBiobank(root, "gamma")
    # Five donors per consent: POA;CC stays ancestry-only, GRU;CC extends to clinical care.
    for consent in ("POA;CC", "GRU;CC"):
        for n in range(5):
            donor = f"{consent[:3]}-{n}"
            bank.donor(donor, sex="FEMALE", birth_year=1970 + n, consent=consent)
            bank.sample(f"S-{donor}", donor, material="PLASMA")
    network = write_network(root, [bank])
    runtime = Runtime(make_settings(root, network))
    try:
        for source in runtime.network().biobanks:
            sync_biobank(
                source, runtime.backend, runtime.state, locks_dir=runtime.settings.locks_dir
            )
    finally:
        runtime.backend.close()
    return network


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    root = tmp_path_factory.mktemp("served-fixes")
    operator = issue_api_key("ops@fixes.example", operator=True)
    with serve(root, _network(root), {"ops": operator}) as url:
        yield url, root, operator.key


def _raw(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_lone_surrogates_are_bad_input_naming_the_field(served: tuple[str, Path, str]) -> None:
    url, root, key = served
    for query, argument in (
        ({"text": f"diabetes{LONE_SURROGATE}"}, "query.text"),
        ({"biobanks": [LONE_SURROGATE]}, "query.biobanks"),
    ):
        body = graphql(url, SPLIT, {"q": query})
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", body
        assert error["extensions"]["argument"] == argument
    audit = graphql(
        url,
        "query($s: String) { auditLog(subject: $s) { nodes { subject } } }",
        {"s": LONE_SURROGATE},
        {"Authorization": f"Bearer {key}"},
    )
    assert audit["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", audit
    assert "Traceback" not in (root / "server.log").read_text()


def test_a_subscription_is_a_validation_error(served: tuple[str, Path, str]) -> None:
    body = graphql(served[0], "subscription { me { subject } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", body


def test_a_key_in_the_wrong_place_is_refused_and_kept_out_of_the_log(
    served: tuple[str, Path, str],
) -> None:
    url, root, key = served
    for path, headers, named in (
        (f"/graphql?api_key={key}", {}, "`api_key` query parameter"),
        ("/graphql", {"Api-Key": key}, "`Api-Key` header"),
    ):
        status, body = _raw(url, path, {"query": "{ me { subject } }"}, headers)
        assert status == 401, body
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert "Authorization: Bearer <key>" in body["errors"][0]["message"]
        assert named in body["errors"][0]["message"]
    log = (root / "server.log").read_text()
    assert '"POST /graphql" 401' in log
    assert key not in log and "api_key=" not in log


def test_the_data_folder_is_private_after_serving(served: tuple[str, Path, str]) -> None:
    url, root, _ = served
    assert "errors" not in graphql(url, SPLIT, {"q": {}})
    data = root / "data"
    # The audit log and the ledger live in the state store (state.db).
    assert sorted(p.name for p in data.glob("*.db")) == ["state.db"]
    files = [data / "state.db"]
    files += [p for p in (data / "index").rglob("*") if p.is_file() and p.suffix != ".lock"]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_cc_extends_only_gru_hmb_and_ds_to_clinical_care(served: tuple[str, Path, str]) -> None:
    url, _, key = served
    body = graphql(
        url, SPLIT, {"q": {}, "p": {"kind": "CLINICAL_CARE"}}, {"Authorization": f"Bearer {key}"}
    )
    assert "errors" not in body, body
    (row,) = body["data"]["search"]["byBiobank"]
    split = {item["outcome"]: item["donors"]["value"] for item in row["consent"]}
    # The operator sees exact counts: the five GRU;CC donors, not the five POA;CC ones.
    assert split["PERMITTED"] == 5 and split["NOT_PERMITTED"] == 5, split
