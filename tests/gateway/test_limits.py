"""Request limits, and attempts to get around them: aliases, fragments, page sizes, floods,
slow backends, introspection."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from graphql import (
    OperationDefinitionNode,
    get_introspection_query,
    parse,
)

from federation.gateway import create_app
from federation.gateway.cost import DepthLimitExceeded, measure
from federation.gateway.errors import GatewayError
from federation.gateway.limits import LimitsConfig
from federation.gateway.ratelimit import RateLimit, RateLimiter, client_address
from federation.gateway.schema import schema
from federation.runtime import Runtime
from federation.settings import Settings, SettingsError
from federation.state.database import STATE_FILE
from federation.state.store import open_state_store
from tests.gateway.access import auth_section, headers
from tests.gateway.conftest import only_error

SEARCH_COUNT = "{ search(query: {}) { donors { value } } }"


def post(
    client: FlaskClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    who: dict[str, str] | None = None,
    address: str = "127.0.0.1",
) -> tuple[int, dict[str, Any], Any]:
    response = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers=who,
        environ_base={"REMOTE_ADDR": address},
    )
    body = response.get_json()
    assert isinstance(body, dict)
    return response.status_code, body, response.headers


def body_of(
    client: FlaskClient, query: str, variables: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    status, body, _ = post(client, query, variables, **kw)
    assert status == 200, body
    return body


def make_app(settings: Settings, **limits: Any) -> Flask:
    limits.setdefault("rate_limit", {"enabled": False})
    configured = settings.with_overrides(auth=auth_section(), limits=limits)
    return create_app({"settings": configured, "TESTING": True})


@pytest.fixture
def limited(synced_settings: Settings) -> Iterator[Flask]:
    app = make_app(synced_settings, cost_budget=100, max_depth=5)
    yield app
    runtime = app.extensions["biofed"]
    if "backend" in vars(runtime):
        runtime.backend.close()


def count_searches(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = runtime.search.search

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime.search, "search", counting)
    return calls


# --- cost ---------------------------------------------------------------------------------


def test_cost_is_reported_on_every_response(client: FlaskClient) -> None:
    body = body_of(client, SEARCH_COUNT)
    # search 10 + the donors Count object 1.
    assert body["extensions"] == {"cost": {"requested": 11, "budget": 1000}}
    body = body_of(client, "{ search(query: {}) { records(first: 30) { nodes { sampleId } } } }")
    # search 10, records 30 x 1, and the 30 `nodes` objects.
    assert body["extensions"]["cost"]["requested"] == 70
    body = body_of(client, '{ search(query: {}) { facets(names: ["sex"]) { name } } }')
    assert body["extensions"]["cost"]["requested"] == 15
    body = body_of(client, "{ search(query: {}) { facets { name } } }")
    assert body["extensions"]["cost"]["requested"] == 30
    assert body_of(client, "{ __typename }")["extensions"]["cost"]["requested"] == 0


def test_aliases_repeating_search_each_count(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_searches(runtime, monkeypatch)
    aliases = " ".join(f"s{n}: search(query: {{}}) {{ donors {{ value }} }}" for n in range(91))
    body = body_of(client, "{ " + aliases + " }")
    error = only_error(body)
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert error["extensions"]["cost"] == {"requested": 91 * 11, "budget": 1000}
    assert body["extensions"]["cost"] == {"requested": 1001, "budget": 1000}
    assert "data" not in body and calls == []  # refused before anything ran


def test_aliases_repeating_records_each_count(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_searches(runtime, monkeypatch)
    pages = " ".join(f"p{n}: records(first: 100) {{ nodes {{ sampleId }} }}" for n in range(5))
    error = only_error(body_of(client, "{ search(query: {}) { " + pages + " } }"))
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert error["extensions"]["cost"]["requested"] == 10 + 5 * 200
    assert calls == []


def test_fragments_are_followed(limited: Flask) -> None:
    client = limited.test_client()
    query = """
    query { ...Root a: search(query: {}) { ... on SearchResult { ...Result } } }
    fragment Root on Query { b: search(query: {}) { ...Result } }
    fragment Result on SearchResult { records(first: 40) { nodes { sampleId } } }
    """
    error = only_error(body_of(client, query))
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert error["extensions"]["cost"] == {"requested": 2 * (10 + 80), "budget": 100}


def test_skipped_selections_cost_nothing(client: FlaskClient) -> None:
    query = """query($all: Boolean!) {
      search(query: {}) {
        donors { value }
        records(first: 100) @include(if: $all) { nodes { sampleId } }
      }
    }"""
    assert body_of(client, query, {"all": False})["extensions"]["cost"]["requested"] == 11
    assert body_of(client, query, {"all": True})["extensions"]["cost"]["requested"] == 211


def test_nested_lists_multiply(client: FlaskClient) -> None:
    # biobanks ~10 x (1 + collections ~10 x (1 + biobank 1 + collections ~10 x 1))
    query = "{ biobanks { collections { biobank { collections { id } } } } }"
    error = only_error(body_of(client, query))
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert error["extensions"]["cost"]["requested"] == 10 * (1 + 10 * (1 + 1 + 10))


# --- depth --------------------------------------------------------------------------------


def test_deep_fragments_exceed_the_depth(limited: Flask) -> None:
    query = """
    { biobanks { ...A } }
    fragment A on Biobank { collections { ...B } }
    fragment B on Collection { biobank { ...C } }
    fragment C on Biobank { collections { ... on Collection { biobank { id } } } }
    """
    error = only_error(body_of(limited.test_client(), query))
    assert error["extensions"]["code"] == "DEPTH_LIMIT_EXCEEDED"
    assert error["extensions"]["depth"] == {"limit": 5}
    assert "biobanks.collections.biobank.collections.biobank" in error["message"]


def test_depth_counts_fields_not_fragments(limited: Flask) -> None:
    # Five fields deep, through three fragments: allowed at a limit of 5.
    query = """
    { biobanks { ...A } }
    fragment A on Biobank { collections { ...B } }
    fragment B on Collection { biobank { ...C } }
    fragment C on Biobank { collections { id } }
    """
    body = body_of(limited.test_client(), query)
    assert "errors" not in body or body["errors"][0]["extensions"]["code"] != "DEPTH_LIMIT_EXCEEDED"


def test_a_fragment_cycle_cannot_run_away() -> None:
    # Validation rejects cycles; the walk must stop on its own even if it were skipped.
    document = parse(
        """{ biobanks { ...A } }
        fragment A on Biobank { collections { biobank { ...A } } }"""
    )
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    with pytest.raises(DepthLimitExceeded):
        measure(schema.graphql_schema, document, operation, {}, max_depth=10)


def test_a_fragment_cycle_is_rejected_by_validation(client: FlaskClient) -> None:
    query = """{ biobanks { ...A } }
    fragment A on Biobank { collections { biobank { ...A } } }"""
    assert only_error(body_of(client, query))["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_a_fragment_bomb_is_measured_quickly() -> None:
    # Each fragment spreads the next one twice: 2^9 paths, but only 10 fragments to walk.
    parts = ["{ biobanks { ...F0 } }"]
    for n in range(9):
        parts.append(
            f"fragment F{n} on Biobank {{ a: collections {{ biobank {{ ...F{n + 1} }} }} "
            f"b: collections {{ biobank {{ ...F{n + 1} }} }} }}"
        )
    parts.append("fragment F9 on Biobank { id }")
    document = parse("\n".join(parts))
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    started = time.perf_counter()
    shape = measure(schema.graphql_schema, document, operation, {}, max_depth=100)
    assert time.perf_counter() - started < 1.0
    assert shape.depth == 20 and shape.cost > 10**12  # far over any budget


# --- page sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "argument", "value"),
    [
        (
            "{ search(query: {}) { records(first: 100000) { nodes { sampleId } } } }",
            {},
            "records.first",
            100000,
        ),
        ("{ syncRuns(first: 5000) { id } }", {}, "first", 5000),
        ('{ quarantine(biobank: "bb1", first: 101) { reason } }', {}, "first", 101),
        ("{ auditLog(first: 1000) { nodes { id } } }", {}, "first", 1000),
        ('{ diseases(text: "C50", first: -1) { code } }', {}, "first", -1),
        (
            "query($n: Int) { search(query: {}) { records(first: $n) { nodes { sampleId } } } }",
            {"n": 2**31 - 1},
            "records.first",
            2**31 - 1,
        ),
    ],
)
def test_huge_page_sizes_are_bad_input(
    client: FlaskClient, query: str, variables: dict[str, Any], argument: str, value: int
) -> None:
    body = body_of(client, query, variables, who=headers("operator"))
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument, "value": value}
    assert error["message"].startswith(f"{argument}: ") and "100" in error["message"]
    assert "data" not in body


# --- introspection ------------------------------------------------------------------------


def test_introspection_on_by_default(client: FlaskClient) -> None:
    body = body_of(client, get_introspection_query(descriptions=True))
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


def test_introspection_off(synced_settings: Settings) -> None:
    client = make_app(synced_settings, introspection=False).test_client()
    for query in (
        get_introspection_query(),
        '{ __type(name: "Query") { name } }',
        "query { ...Q } fragment Q on Query { __schema { queryType { name } } }",
    ):
        error = only_error(body_of(client, query))
        assert error["extensions"]["code"] == "FORBIDDEN", query
        assert "introspection" in error["message"]
    assert body_of(client, "{ __typename }")["data"] == {"__typename": "Query"}
    # Network operators may still introspect (see docs/access.md).
    body = body_of(client, '{ __type(name: "Query") { name } }', who=headers("operator"))
    assert body["data"] == {"__type": {"name": "Query"}}


# --- timeout ------------------------------------------------------------------------------


def test_a_slow_backend_times_out(
    synced_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(synced_settings, timeout_seconds=0.3)
    runtime = app.extensions["biofed"]
    release = threading.Event()
    calls: list[float] = []
    finished = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        release.wait(10)
        finished.set()
        raise RuntimeError("released")

    monkeypatch.setattr(runtime.search, "search", stuck)
    query = (
        "{ a: search(query: {}) { donors { value } } b: search(query: {}) { donors { value } } }"
    )
    started = time.monotonic()
    body = body_of(app.test_client(), query)
    took = time.monotonic() - started
    release.set()
    assert finished.wait(5)
    time.sleep(0.05)  # let the released execution reach the next resolver, if it would
    assert 0.25 < took < 2.0
    error = only_error(body)
    assert error["extensions"]["code"] == "TIMEOUT"
    assert error["extensions"]["timeout"] == {"seconds": 0.3}
    assert body["data"] is None and body["extensions"]["cost"]["requested"] == 22
    # The execution left behind started no further backend round after the deadline.
    assert len(calls) == 1


def test_fast_requests_are_unaffected_by_the_deadline(synced_settings: Settings) -> None:
    client = make_app(synced_settings, timeout_seconds=5).test_client()
    assert body_of(client, SEARCH_COUNT)["data"]["search"]["donors"]["value"] is not None


# --- rate limit ---------------------------------------------------------------------------


def unique_address() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:8]}"


def test_rate_limit_429_then_recovery(synced_settings: Settings) -> None:
    # A token a second: the four requests below take far less than that.
    rate = {"enabled": True, "anonymous": {"per_minute": 60, "burst": 3}}
    client = make_app(synced_settings, rate_limit=rate).test_client()
    address = unique_address()
    for _ in range(3):
        assert post(client, "{ __typename }", address=address)[0] == 200
    status, body, response_headers = post(client, "{ __typename }", address=address)
    assert status == 429
    assert body["errors"][0]["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 1}
    assert response_headers["Retry-After"] == "1"
    # Another caller is not held back by this one.
    assert post(client, "{ __typename }", address=unique_address())[0] == 200
    assert post(client, "{ __typename }", address=address, who=headers("researcher"))[0] == 200
    time.sleep(1.1)
    assert post(client, "{ __typename }", address=address)[0] == 200


def test_signed_in_callers_have_their_own_bucket(synced_settings: Settings) -> None:
    rate = {
        "enabled": True,
        "anonymous": {"per_minute": 1, "burst": 1},
        "signed_in": {"per_minute": 1, "burst": 2},
    }
    client = make_app(synced_settings, rate_limit=rate).test_client()
    who = headers("bb2_admin")
    key_used = [post(client, "{ __typename }", who=who, address=unique_address())[0] for _ in "xyz"]
    # The bucket follows the subject, whatever address it comes from.
    assert key_used[:2] == [200, 200] and key_used[2] == 429


def test_forwarded_for_is_trusted_only_when_configured(synced_settings: Settings) -> None:
    rate = {"enabled": True, "anonymous": {"per_minute": 1, "burst": 1}}
    untrusting = make_app(synced_settings, rate_limit=rate).test_client()
    address = unique_address()
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    assert post(untrusting, "{ __typename }", who=spoofed, address=address)[0] == 200
    other = {"X-Forwarded-For": "203.0.113.10"}
    assert post(untrusting, "{ __typename }", who=other, address=address)[0] == 429

    trusting = make_app(synced_settings, rate_limit=rate, trusted_proxy_hops=1).test_client()
    proxy = unique_address()
    for client_ip in (unique_address(), unique_address()):
        forwarded = {"X-Forwarded-For": f"10.9.9.9, {client_ip}"}
        assert post(trusting, "{ __typename }", who=forwarded, address=proxy)[0] == 200
    assert client_address("10.0.0.1", "1.1.1.1, 2.2.2.2", 1) == "2.2.2.2"
    assert client_address("10.0.0.1", "1.1.1.1, 2.2.2.2", 2) == "1.1.1.1"
    assert client_address("10.0.0.1", "2.2.2.2", 2) == "10.0.0.1"
    assert client_address("10.0.0.1", "1.1.1.1", 0) == "10.0.0.1"


def test_failed_sign_ins_are_rate_limited_by_address(synced_settings: Settings) -> None:
    rate = {"enabled": True, "anonymous": {"per_minute": 1, "burst": 2}}
    client = make_app(synced_settings, rate_limit=rate).test_client()
    address = unique_address()
    bad = {"Authorization": "Bearer bfk_0123abcd_guess"}
    statuses = [post(client, "{ __typename }", who=bad, address=address)[0] for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_token_bucket_arithmetic(tmp_path: Path) -> None:
    now = [1000.0]
    limiter = RateLimiter(open_state_store(None, tmp_path).rate_buckets, clock=lambda: now[0])
    rate = RateLimit(per_minute=60, burst=2)
    assert limiter.take("k", rate) is None
    assert limiter.take("k", rate) is None
    wait = limiter.take("k", rate)
    assert wait is not None and wait == pytest.approx(1.0)
    now[0] += 0.5
    assert limiter.take("k", rate) == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("k", rate) is None
    now[0] += 3600
    assert limiter.take("k", rate) is None and limiter.take("k", rate) is None  # capped at burst
    assert limiter.take("k", rate) is not None


def _drain(path: str, attempts: int) -> int:
    limiter = RateLimiter(open_state_store(None, Path(path)).rate_buckets)
    # Refill once a day: only the burst is available during the test.
    rate = RateLimit(per_minute=1 / 1440, burst=30)
    return sum(limiter.take("shared", rate) is None for _ in range(attempts))


def test_the_bucket_is_shared_by_worker_processes(tmp_path: Path) -> None:
    path = str(tmp_path)
    open_state_store(None, tmp_path).close()  # migrated once, before the workers race
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        allowed = pool.starmap(_drain, [(path, 20)] * 4)
    assert sum(allowed) == 30


def test_an_unusable_store_does_not_stop_searches(tmp_path: Path) -> None:
    store = open_state_store(None, tmp_path)
    store.close()
    for path in tmp_path.glob(f"{STATE_FILE}*"):
        path.unlink()
    (tmp_path / STATE_FILE).mkdir()  # a folder where the file should be
    limiter = RateLimiter(store.rate_buckets)
    assert limiter.take("k", RateLimit(60, 1)) is None


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"max_depth": 0}, "limits.max_depth: 0 is not a whole number >= 1"),
        ({"cost_budget": "lots"}, "limits.cost_budget"),
        ({"timeout_seconds": -1}, "limits.timeout_seconds: -1 must be more than 0"),
        ({"introspection": "no"}, "limits.introspection"),
        ({"rate_limit": {"anonymous": {"per_minute": 0, "burst": 1}}}, "per_minute"),
        ({"rate_limit": {"everyone": {}}}, "unknown setting 'everyone'"),
        ({"depth": 3}, "unknown setting 'depth'"),
    ],
)
def test_bad_limit_settings_name_the_setting(section: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        LimitsConfig.parse(section)


def test_no_timeout_runs_inline() -> None:
    config = LimitsConfig.parse({"timeout_seconds": None, "rate_limit": {"enabled": False}})
    assert config.timeout_seconds is None and not config.rate_limit


def test_limit_errors_are_gateway_errors() -> None:
    assert issubclass(DepthLimitExceeded, GatewayError)


# --- searches per request -----------------------------------------------------------------


def _aliased_searches(count: int) -> str:
    return (
        "{ "
        + " ".join(f"s{n}: search(query: {{}}) {{ donors {{ value }} }}" for n in range(count))
        + " }"
    )


def test_a_request_carries_at_most_the_configured_searches(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_searches(runtime, monkeypatch)
    body = body_of(client, _aliased_searches(6))
    error = only_error(body)
    assert error["extensions"] == {
        "code": "TOO_MANY_SEARCHES",
        "searches": {"limit": 5, "sent": 6},
    }
    assert "at most 5" in error["message"] and "6 `search` fields" in error["message"]
    assert "data" not in body and calls == []  # refused before anything ran
    assert set(body_of(client, _aliased_searches(5))["data"]) == {f"s{n}" for n in range(5)}
    assert len(calls) == 5


def test_the_search_cap_is_configurable(synced_settings: Settings) -> None:
    client = make_app(synced_settings, max_searches_per_request=2).test_client()
    error = only_error(body_of(client, _aliased_searches(3)))
    assert error["extensions"]["searches"] == {"limit": 2, "sent": 3}
    with pytest.raises(SettingsError, match="max_searches_per_request"):
        LimitsConfig.parse({"max_searches_per_request": 0})


def test_every_search_of_a_request_takes_its_own_token(synced_settings: Settings) -> None:
    # Burst 8, refilled once a day: 8 searches in all, however they are packed.
    rate = {"enabled": True, "signed_in": {"per_minute": 1 / 1440, "burst": 8}}
    client = make_app(synced_settings, rate_limit=rate).test_client()
    who = headers("researcher")
    assert post(client, _aliased_searches(5), who=who)[0] == 200  # 5 tokens, 3 left
    assert post(client, _aliased_searches(2), who=who)[0] == 200  # 1 left
    status, body, response_headers = post(client, _aliased_searches(2), who=who)
    assert status == 429 and body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(response_headers["Retry-After"]) > 0
    # Without searches, the request's own token is all it takes: none is left now.
    assert post(client, "{ __typename }", who=who)[0] == 429
