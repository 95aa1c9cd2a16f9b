"""A two-biobank network synced once per session, and the gateway app over it.

The data is small enough to count by hand; the expected numbers in the tests come from
the comments below, not from running the search.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from federation.gateway import create_app
from federation.runtime import Runtime
from federation.settings import Settings, load_settings
from federation.sync.run import sync_biobank
from tests.gateway.access import with_test_access

# bb1 -- C50 (breast cancer) in FEMALE donors: D1 (S1 PLASMA, S2 SERUM) and D2 (S3 DNA,
# S8 PLASMA) = 2 donors, 4 samples. D5 is C50 and FEMALE but withdrew consent. D6 is a MALE
# C50 donor (S7). D3, D4 have other diagnoses. D7 has an invalid sex and S9 names a missing
# collection: both end in the quarantine.
BB1 = {
    "collections.csv": """\
        id,name,types,default_consent,description
        C1,Breast cohort,HOSPITAL;DISEASE_SPECIFIC,GRU,Women and men treated for breast cancer
        C2,Population cohort,POPULATION_BASED,HMB;NPU,
        """,
    "donors.csv": """\
        id,sex,birth_year,diagnoses,consent,consent_withdrawn
        D1,FEMALE,1970,C50.9,,false
        D2,FEMALE,1965,C50.1,,false
        D3,MALE,1960,I21.0,,false
        D4,FEMALE,1980,E11.9,,false
        D5,FEMALE,1975,C50.9,,true
        D6,MALE,1950,C50.9,,false
        D7,SOMETIMES,1950,,,false
        """,
    "samples.csv": """\
        id,collection_id,donor_id,material_type,collection_date,diagnoses,last_updated
        S1,C1,D1,PLASMA,2020-01-01,,2026-01-01T00:00:00+00:00
        S2,C1,D1,SERUM,2020-01-01,,2026-01-01T00:00:00+00:00
        S3,C1,D2,DNA,2021-03-01,,2026-01-01T00:00:00+00:00
        S4,C2,D3,PLASMA,2019-05-05,,2026-01-01T00:00:00+00:00
        S5,C2,D4,PLASMA,2019-05-05,,2026-01-01T00:00:00+00:00
        S6,C1,D5,PLASMA,2020-01-01,,2026-01-01T00:00:00+00:00
        S7,C1,D6,TISSUE_FROZEN,2020-01-01,,2026-01-01T00:00:00+00:00
        S8,C1,D2,PLASMA,2022-02-02,,2026-01-01T00:00:00+00:00
        S9,C9,D1,PLASMA,2020-01-01,,2026-01-01T00:00:00+00:00
        """,
}

# bb2 -- C50 in FEMALE donors: E1 (T1 PLASMA, T2 DNA) = 1 donor, 2 samples. E2 is FEMALE
# without a diagnosis; E3 is a MALE C50 donor (T4).
BB2 = {
    "collections.csv": """\
        id,name,types,default_consent
        R1,Cancer registry samples,DISEASE_SPECIFIC,GRU
        """,
    "donors.csv": """\
        id,sex,birth_year,diagnoses,consent,consent_withdrawn
        E1,FEMALE,1972,C50.4,,false
        E2,FEMALE,1990,,,false
        E3,MALE,1955,C50.9,,false
        """,
    "samples.csv": """\
        id,collection_id,donor_id,material_type,collection_date,diagnoses,last_updated
        T1,R1,E1,PLASMA,2018-07-01,,2026-01-01T00:00:00+00:00
        T2,R1,E1,DNA,2018-07-01,,2026-01-01T00:00:00+00:00
        T3,R1,E2,PLASMA,2018-07-01,,2026-01-01T00:00:00+00:00
        T4,R1,E3,SERUM,2018-07-01,,2026-01-01T00:00:00+00:00
        """,
}

# These tests pin the API's shape on exact figures, so the network lets every role see
# exact counts and records; disclosure rules have their own tests (tests/disclosure/).
NETWORK = """\
    default_disclosure:
      anonymous: {granularity: record, min_count: 1, rounding: 1, noise: 0}
      registered: {granularity: record, min_count: 1, rounding: 1, noise: 0}
    biobanks:
      - id: bb1
        name: Test biobank
        name_ja: テストバイオバンク
        country: JP
        url: https://bb1.example.org
        contact_email: samples@bb1.example.org
        description: A hospital biobank
        kind: hospital
        connector: {type: tabular, options: {path: bb1}}
      - id: bb2
        name: Second biobank
        country: JP
        connector: {type: tabular, options: {path: bb2}}
    """

# C50 and FEMALE, by the comments above.
C50_FEMALE = {"bb1": (2, 4), "bb2": (1, 2)}


def write_network(root: Path) -> Path:
    for folder, tables in (("bb1", BB1), ("bb2", BB2)):
        (root / folder).mkdir(parents=True)
        for name, text in tables.items():
            (root / folder / name).write_text(dedent(text), encoding="utf-8")
    network = root / "network.yaml"
    network.write_text(dedent(NETWORK), encoding="utf-8")
    return network


def make_settings(root: Path, network: Path) -> Settings:
    return load_settings(
        overrides={"data_dir": str(root / "data"), "network": str(network)},
        read_files=False,
        environ={},
    )


@pytest.fixture(scope="session")
def synced_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a network whose two biobanks have been synced once."""
    root = tmp_path_factory.mktemp("network")
    settings = make_settings(root, write_network(root))
    runtime = Runtime(settings)
    for source in runtime.network().biobanks:
        sync_biobank(source, runtime.backend, runtime.state, locks_dir=settings.locks_dir)
    yield settings
    runtime.backend.close()


def _close(app: Flask) -> None:
    runtime = app.extensions["biofed"]
    if "backend" in vars(runtime):  # built lazily: only close what a test opened
        runtime.backend.close()


@pytest.fixture
def app(synced_settings: Settings) -> Iterator[Flask]:
    # Accepts the test API keys of tests/gateway/access.py: send `headers("operator")` etc.
    app = create_app({"settings": with_test_access(synced_settings), "TESTING": True})
    yield app
    _close(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    runtime = app.extensions["biofed"]
    assert isinstance(runtime, Runtime)
    return runtime


def graphql(
    client: FlaskClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST a GraphQL request; GraphQL errors still come back as 200.

    The body's `extensions` (the cost report) is dropped so tests can compare `data` and
    `errors` whole; tests/gateway/test_limits.py checks the cost report.
    """
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body, dict)
    body.pop("extensions", None)
    return body


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    """The single error of a response."""
    assert len(body.get("errors") or ()) == 1, body
    error = body["errors"][0]
    assert isinstance(error, dict)
    return error
