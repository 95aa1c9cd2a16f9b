"""`/metrics` under gunicorn with two workers, after a real sync and real searches: every
named series carries the value the sync runs and the requests sent imply, summed across
the workers (multiprocess mode), and only the network operator may scrape."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from federation.gateway import create_app
from federation.gateway.auth import issue_api_key
from federation.runtime import Runtime
from federation.sync.run import SyncFailed, sync_biobank
from federation.sync.state import SyncRun
from tests.conftest import make_settings
from tests.support.network import TabularBiobank, write_network
from tests.support.server import gunicorn

SEARCH = """query($q: SampleQuery!) {
  search(query: $q) { byBiobank { biobank { id } donors { value precision } } }
}"""
# The registered role's figures carry noise, paid from a budget of 4 epsilon a day: two
# fresh questions of two figures each (donors and samples, scale 1), then fallbacks.
REGISTERED = {"granularity": "count", "min_count": 1, "rounding": 1, "noise": 1.0}
OPEN = {"granularity": "record", "min_count": 1, "rounding": 1, "noise": 0}
BUDGET = {"registered": {"epsilon": 4.0, "period": "day", "scope": "biobank"}}
# Two anonymous requests a minute: the third and fourth in a row are refused.
LIMITS = {"rate_limit": {"anonymous": {"per_minute": 1, "burst": 2}}}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Served:
    url: str
    runs: dict[str, SyncRun]
    synced_at: float
    operator: str
    researcher: str
    log: Path


def _network(root: Path) -> tuple[Path, dict[str, SyncRun], float]:
    osaka = TabularBiobank(root, "osaka")
    for n in range(8):
        osaka.donor(f"D{n}", sex="MALE" if n % 2 else "FEMALE", diagnoses="C50.9", consent="GRU")
        osaka.sample(f"S{n}", f"D{n}", age_at_collection=40 + n)
    osaka.sample("S-bad", "D0", material="BLOODY_MARY")  # rejected: quarantined
    osaka.sample("S-orphan", "no-such-donor")  # rejected: quarantined
    kyoto = TabularBiobank(root, "kyoto")
    for n in range(3):
        kyoto.donor(f"K{n}", diagnoses="E11.9", consent="GRU")
        kyoto.sample(f"KS{n}", f"K{n}")
    missing = {
        "id": "nagoya",
        "name": "Nagoya",
        "country": "JP",
        "connector": {"type": "tabular", "options": {"path": "sources/nagoya-missing"}},
    }
    network = write_network(root, [osaka, kyoto], extra=[missing])
    document = yaml.safe_load(network.read_text(encoding="utf-8"))
    document["default_disclosure"] = {
        "anonymous": OPEN,
        "registered": REGISTERED,
        "network_operator": OPEN,
    }
    document["privacy_budget"] = BUDGET
    network.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    runtime = Runtime(make_settings(root, network))
    runs: dict[str, SyncRun] = {}
    try:
        for source in runtime.network().biobanks:
            try:
                runs[source.biobank.id] = sync_biobank(
                    source, runtime.backend, runtime.state, locks_dir=runtime.settings.locks_dir
                )
            except SyncFailed as failed:
                runs[source.biobank.id] = failed.run
    finally:
        runtime.backend.close()
    return network, runs, time.time()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("metrics")
    network, runs, synced_at = _network(root)
    operator = issue_api_key("ops@network", operator=True)
    researcher = issue_api_key("researcher@example.org")
    env = {
        "BIOFED_AUTH": json.dumps({"api_keys": [operator.entry, researcher.entry]}),
        "BIOFED_LIMITS": json.dumps(LIMITS),
    }
    log = root / "server.log"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with gunicorn(root / "data", network, log, workers=2) as url:
            yield Served(url, runs, synced_at, operator.key, researcher.key, log)
            folder = _metrics_folder(log)
            assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700
    # Each start has its own folder, removed when gunicorn exits.
    assert not folder.exists(), f"gunicorn left its metrics folder {folder}"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def _post(served: Served, query: str, key: str | None, variables: Any = None) -> int:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{served.url}/graphql", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def _scrape(served: Served) -> Samples:
    status, text, headers = _get(
        f"{served.url}/metrics", {"Authorization": f"Bearer {served.operator}"}
    )
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _worker_pids(log: Path) -> set[str]:
    return set(re.findall(r"Booting worker with pid: (\d+)", log.read_text()))


def _serving_pids(folder: Path) -> set[str]:
    """Workers that served a request: a labelled histogram file exists once one is timed."""
    return {p.stem.rsplit("_", 1)[1] for p in folder.glob("histogram_*.db")}


def _metrics_folder(log: Path) -> Path:
    (folder,) = set(re.findall(r"metrics folder: (\S+)", log.read_text()))
    return Path(folder)


def test_metrics_after_a_sync_and_searches_on_two_workers(served: Served) -> None:
    # Refused scrapes first: they charge no rate-limit bucket.
    status, text, headers = _get(f"{served.url}/metrics")
    assert status == 401 and "network operator" in text and "metrics_allow" in text
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, text, _ = _get(
        f"{served.url}/metrics", {"Authorization": f"Bearer {served.researcher}"}
    )
    assert status == 403 and "researcher@example.org is not the network operator" in text

    # Searches as the operator (no budget), concurrently so that both workers answer,
    # until both have: then every series below is a sum over two processes.
    folder = _metrics_folder(served.log)
    operator_searches = 0
    queries = [{"diseases": ["C50"]}, {"diseases": ["E11"]}, {"sexes": ["MALE"]}]
    with ThreadPoolExecutor(6) as pool:
        for _round in range(20):
            statuses = list(
                pool.map(lambda q: _post(served, SEARCH, served.operator, {"q": q}), queries * 2)
            )
            assert statuses == [200] * 6
            operator_searches += 6
            if len(_serving_pids(folder)) == 2:
                break
    assert _serving_pids(folder) <= _worker_pids(served.log)
    assert len(_serving_pids(folder)) == 2, "one worker answered every request"

    # A researcher's fresh questions: two paid from the budget, two fall back.
    budget_searches = 4
    for n in range(budget_searches):
        assert _post(served, SEARCH, served.researcher, {"q": {"ageMin": 40 + n}}) == 200
    # Bad documents: one that does not parse, one that does not validate.
    assert _post(served, "{ search(", None) == 200
    assert _post(served, "{ noSuchField }", None) == 200
    # The anonymous bucket (burst 2) is spent by the two above: these are refused.
    assert _post(served, "{ __typename }", None) == 429
    assert _post(served, "{ __typename }", None) == 429

    samples = _scrape(served)
    again = _scrape(served)  # another scrape, perhaps by the other worker: the same sums

    searches = operator_searches + budget_searches
    for scraped in (samples, again):
        assert (
            _value(scraped, "biofed_search_duration_seconds_count", backend="embedded") == searches
        )
        assert (
            _value(
                scraped,
                "biofed_request_duration_seconds_count",
                operation="query.search",
                backend="embedded",
            )
            == searches
        )
    # Bad documents and refusals never reached an operation.
    assert (
        _value(
            samples,
            "biofed_request_duration_seconds_count",
            operation="graphql",
            backend="embedded",
        )
        == 4
    )
    assert _value(samples, "biofed_rate_limit_refusals_total", operation="graphql") == 2
    assert _value(samples, "biofed_errors_total", code="RATE_LIMITED") == 2
    assert _value(samples, "biofed_errors_total", code="GRAPHQL_PARSE_FAILED") == 1
    assert _value(samples, "biofed_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
    assert _value(samples, "biofed_errors_total", code="UNAUTHENTICATED") == 1
    assert _value(samples, "biofed_errors_total", code="FORBIDDEN") == 1
    # The scrape that answered first is counted by the second, and the two refused ones.
    assert (
        _value(
            again, "biofed_request_duration_seconds_count", operation="metrics", backend="embedded"
        )
        == 3
    )
    # Each search looked its answer up once; a repeat on the same worker is a hit.
    hits = _value(samples, "biofed_answer_cache_lookups_total", result="hit")
    misses = _value(samples, "biofed_answer_cache_lookups_total", result="miss")
    assert hits + misses == searches
    distinct = len(queries) + budget_searches
    assert distinct <= misses <= 2 * distinct
    # Two figures per refused question; each of the two fell back once.
    assert _value(samples, "biofed_privacy_budget_refused_figures_total") == 4
    assert _value(samples, "biofed_privacy_budget_fallback_searches_total") == 2

    # The sync series, from the runs the store recorded.
    assert _value(samples, "biofed_sync_state_up") == 1
    osaka, kyoto, nagoya = served.runs["osaka"], served.runs["kyoto"], served.runs["nagoya"]
    assert (osaka.outcome, kyoto.outcome, nagoya.outcome) == ("succeeded", "succeeded", "failed")
    # Read: a collection, 8 donors, 10 samples; indexed: the 8 good samples.
    assert (osaka.read, osaka.indexed, osaka.rejected) == (19, 8, 2)
    for run in (osaka, kyoto):
        b = run.biobank_id
        assert _value(samples, "biofed_sync_runs_total", biobank=b, outcome="succeeded") == 1
        assert _value(samples, "biofed_sync_records_total", biobank=b, stage="read") == run.read
        assert (
            _value(samples, "biofed_sync_records_total", biobank=b, stage="indexed") == run.indexed
        )
        assert (
            _value(samples, "biofed_sync_records_total", biobank=b, stage="quarantined")
            == run.rejected
        )
        assert (
            _value(samples, "biofed_sync_last_success_records", biobank=b, stage="quarantined")
            == run.rejected
        )
        assert _value(samples, "biofed_sync_quarantine_records", biobank=b) == run.rejected
        age = _value(samples, "biofed_sync_last_success_age_seconds", biobank=b)
        assert 0 <= age <= time.time() - served.synced_at + 1
        assert _value(samples, "biofed_sync_lock_takeovers_total", biobank=b) == 0
        assert ("biofed_sync_lock_takeovers_total", (("biobank", b),)) in samples
    assert _value(samples, "biofed_sync_runs_total", biobank="nagoya", outcome="failed") == 1
    assert _value(samples, "biofed_sync_runs_total", biobank="nagoya", outcome="succeeded") == 0
    assert math.isinf(_value(samples, "biofed_sync_last_success_age_seconds", biobank="nagoya"))


def test_an_allowed_address_scrapes_without_a_key_and_others_need_one(
    tmp_path: Path,
) -> None:
    network = write_network(tmp_path, [])
    settings = make_settings(tmp_path, network).with_overrides(metrics_allow=["10.1.0.0/16"])
    app = create_app({"settings": settings, "TESTING": True})
    client = app.test_client()
    allowed = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert allowed.status_code == 200
    assert b"biofed_sync_state_up 1.0" in allowed.data
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.2.0.1"})
    assert refused.status_code == 401
    assert "metrics_allow" in refused.get_json()["errors"][0]["message"]
    misplaced = client.get("/metrics?api_key=x", environ_base={"REMOTE_ADDR": "10.2.0.1"})
    assert misplaced.status_code == 401 and "never in the URL" in misplaced.get_data(True)
