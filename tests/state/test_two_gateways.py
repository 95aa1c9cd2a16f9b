"""Two gateway hosts on one PostgreSQL: each under gunicorn with a data folder of its own
(its own search index), one state store between them. They draw from one rate-limit
bucket, write one audit log that either reads, and spend one privacy budget that a
restart does not refill, and see one sync history (issues 12 and 13, docs/state.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from federation import PROJECT_ROOT
from federation.gateway.auth import IssuedKey, issue_api_key
from federation.state import open_state_store
from tests.privacy.attack_network import BUDGET_EPSILON, COUNTS, SECRET, build
from tests.state.postgres import PASSWORD_VARIABLE, Cluster
from tests.support.server import graphql, gunicorn

pytestmark = pytest.mark.slow

# Anonymous callers (by address: every request here comes from 127.0.0.1) get a bucket of
# BURST that refills once a day, so only the burst is there during the test.
BURST = 4
ONCE_A_DAY = 1 / 1440
ME = "{ me { privacyBudget { scope spent limit remaining } } }"
AUDIT = """query($subject: String) {
  auditLog(first: 20, subject: $subject) { nodes { id subject filters } }
}"""
SYNC_RUNS = "{ syncRuns(first: 20) { id biobankId outcome } }"


@dataclass
class Hosts:
    """Two gateways' URLs, the keys they accept, and how to start one again."""

    keys: dict[str, IssuedKey]
    folders: list[Path]
    network: Path
    urls: list[str] = field(default_factory=list)
    running: list[ExitStack] = field(default_factory=list)

    def start(self, host: int) -> None:
        """Start gateway `host` (again) on its data folder."""
        stack = ExitStack()
        url = stack.enter_context(gateway(self.folders[host], self.network))
        if host < len(self.urls):
            self.urls[host], self.running[host] = url, stack
        else:
            self.urls.append(url)
            self.running.append(stack)

    def stop(self, host: int) -> None:
        """Stop gateway `host` (SIGTERM to its gunicorn, which waits for its workers)."""
        self.running[host].close()

    def post(self, host: int, who: str, query: str, variables: Any = None) -> Any:
        """A GraphQL request to gateway `host` as `who`; the whole response."""
        auth = {"Authorization": f"Bearer {self.keys[who].key}"}
        return graphql(self.urls[host], query, variables, auth)


@contextmanager
def gateway(folder: Path, network: Path) -> Iterator[str]:
    """One gateway host under gunicorn (two workers) on its own data folder."""
    with gunicorn(folder, network, folder.parent / f"{folder.name}.log", workers=2) as url:
        yield url


def anonymous_status(url: str) -> int:
    """The HTTP status of one anonymous request."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": "{ __typename }"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def synced(folder: Path, network: Path) -> str:
    """`biofed sync --all` into a data folder, in a process of its own (the store comes
    from the environment, as on a sync host)."""
    args = ["--data-dir", str(folder), "--network", str(network), "sync", "--all"]
    done = subprocess.run(
        [sys.executable, "-m", "federation.cli", *args, "--no-progress"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def hosts(
    postgres_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hosts]:
    network = build(tmp_path)
    keys = {
        "researcher": issue_api_key("researcher@hosts.example"),
        "operator": issue_api_key("operator@hosts.example", operator=True),
    }
    with postgres_cluster.database() as url:
        for name, value in {
            "BIOFED_STATE_URL": url,
            PASSWORD_VARIABLE: postgres_cluster.password,
            "BIOFED_SECRET_KEY": SECRET,
            "BIOFED_AUTH": json.dumps({"api_keys": [k.entry for k in keys.values()]}),
            "BIOFED_LIMITS": json.dumps(
                {
                    "rate_limit": {
                        "enabled": True,
                        "anonymous": {"per_minute": ONCE_A_DAY, "burst": BURST},
                    }
                }
            ),
        }.items():
            monkeypatch.setenv(name, value)
        # A PostgreSQL store is migrated by the operator (`biofed migrate`), not by a start.
        open_state_store(url, tmp_path, migrate=True).close()
        folders = [tmp_path / "host1", tmp_path / "host2"]
        for folder in folders:
            synced(folder, network)
        hosts = Hosts(keys, folders, network)
        try:
            for host in (0, 1):
                hosts.start(host)
            yield hosts
        finally:
            for stack in hosts.running:
                stack.close()


def test_two_gateways_share_one_bucket_audit_log_budget_and_sync_history(hosts: Hosts) -> None:
    # One bucket: the burst is spent across both hosts, then both refuse.
    statuses = [anonymous_status(hosts.urls[n % 2]) for n in range(BURST + 2)]
    assert statuses == [200] * BURST + [429, 429]

    # One privacy budget: 4 fresh questions on host 1 spend 8 of 16 (2 figures each).
    for high in range(79, 75, -1):
        answer = hosts.post(0, "researcher", COUNTS, {"q": {"diseases": ["E11"], "ageMax": high}})
        assert answer["data"]["search"]["byBiobank"][0]["donors"]["precision"] == "NOISED"
    for host in (0, 1):
        (budget,) = hosts.post(host, "researcher", ME)["data"]["me"]["privacyBudget"]
        assert (budget["spent"], budget["limit"]) == (8.0, BUDGET_EPSILON), host
    # Host 2 charges the same budget: its own index is another generation, so the same
    # question there is a fresh release (2 more), seen spent on host 1.
    hosts.post(1, "researcher", COUNTS, {"q": {"diseases": ["E11"], "ageMax": 79}})
    assert hosts.post(0, "researcher", ME)["data"]["me"]["privacyBudget"][0]["spent"] == 10.0

    # One audit log, read through `auditLog` on either host: every search of both.
    logs = [
        hosts.post(host, "operator", AUDIT, {"subject": "researcher@hosts.example"})
        for host in (0, 1)
    ]
    assert logs[0] == logs[1] and "errors" not in logs[0], logs
    nodes = logs[0]["data"]["auditLog"]["nodes"]
    assert len(nodes) == 5
    assert [json.loads(n["filters"])["age_max"] for n in nodes] == [79, 76, 77, 78, 79]

    # One sync history: the `biofed sync` of each host's folder, seen from both.
    runs = [hosts.post(host, "operator", SYNC_RUNS) for host in (0, 1)]
    assert runs[0] == runs[1] and "errors" not in runs[0], runs
    listed = runs[0]["data"]["syncRuns"]
    assert [(r["biobankId"], r["outcome"]) for r in listed] == [("alpha", "SUCCEEDED")] * 2
    assert len({r["id"] for r in listed}) == 2


def test_the_shared_budget_survives_a_gateway_restart(hosts: Hosts) -> None:
    for high in range(79, 75, -1):  # 8 of 16 on host 2
        hosts.post(1, "researcher", COUNTS, {"q": {"diseases": ["E11"], "ageMax": high}})
    # Host 2 stopped and started again: nothing it kept in memory is left.
    hosts.stop(1)
    hosts.start(1)
    assert hosts.post(1, "researcher", ME)["data"]["me"]["privacyBudget"][0]["spent"] == 8.0
    # The other 8 on host 1, then the budget is spent on both.
    for low in range(21, 25):
        q = {"diseases": ["E11"], "ageMin": low, "ageMax": 70}
        donors = hosts.post(0, "researcher", COUNTS, {"q": q})["data"]["search"]["byBiobank"]
        assert donors[0]["donors"]["precision"] == "NOISED"
    q = {"diseases": ["E11"], "ageMin": 30, "ageMax": 70}
    for host in (0, 1):
        answer = hosts.post(host, "researcher", COUNTS, {"q": q})
        assert answer["data"]["search"]["byBiobank"][0]["donors"]["precision"] == "BUDGET_SPENT"
        budget = hosts.post(host, "researcher", ME)["data"]["me"]["privacyBudget"][0]
        assert (budget["spent"], budget["remaining"]) == (BUDGET_EPSILON, 0.0), host
