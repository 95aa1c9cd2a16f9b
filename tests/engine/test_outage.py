"""Engine outages on a private node: a crash in the middle of a full sync, and a crash while
the gateway serves under gunicorn. Both recover without restarting anything but the node.

The node here is this module's own (its own port and data), because these tests kill it;
the module runs once per engine (OpenSearch, Elasticsearch).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federation.runtime import Runtime
from federation.search.backend import BackendUnavailable
from federation.search.engine import biobank_key
from federation.search.query import Cell, Criteria
from federation.settings import Settings
from federation.sync.run import SyncFailed, sync_biobank
from federation.sync.state import FAILED, SUCCEEDED
from tests.conftest import make_settings
from tests.engine.node import (
    ENGINES,
    Engine,
    NodeUnavailable,
    PrivateNode,
    RunningNode,
    engine_get,
    engine_request,
    engine_settings,
    indices,
    unavailable,
    unique_prefix,
)
from tests.support.server import free_port, running

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# Short enough for the test to wait out, long enough that a live sync renews it several
# times even on a loaded 2-core machine (3 s expired under load: renewals fell behind).
LOCK_TTL_S = 10.0


@pytest.fixture(scope="module", params=ENGINES, ids=str)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateNode]:
    engine: Engine = request.param
    own = PrivateNode(engine, state_dir=tmp_path_factory.mktemp(f"{engine}-node-state"))
    try:
        own.start()
    except NodeUnavailable as err:
        unavailable(request, err)
        raise
    yield own
    own.stop()


@dataclass
class Deployment:
    settings: Settings
    runtime: Runtime
    biobanks: list[str]
    large: str  # the biobank whose sync is long enough to be killed in the middle

    @property
    def prefix(self) -> str:
        return self.settings.engine.index_prefix

    def sync(self, biobank_id: str) -> Any:
        source = self.runtime.network().get(biobank_id)
        return sync_biobank(
            source, self.runtime.backend, self.runtime.state, locks_dir=self.settings.locks_dir
        )

    def counts(self) -> dict[str, Cell]:
        return self.runtime.backend.answer(Criteria()).by_biobank


@pytest.fixture(scope="module")
def deployment(node: PrivateNode, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    from federation.demo.generator import generate_network

    root = tmp_path_factory.mktemp("outage")
    summary = generate_network(root / "demo", biobanks=2, samples=16_000, seed=11)
    settings = engine_settings(
        make_settings(root, root / "demo" / "network.yaml"),
        RunningNode(node.engine, node.url),
        unique_prefix(),
        engine_lock_ttl=LOCK_TTL_S,
        engine_search_timeout=2,
    )
    runtime = Runtime(settings)
    biobanks = [b.id for b in summary.biobanks]
    deployed = Deployment(
        settings, runtime, biobanks, max(summary.biobanks, key=lambda b: b.samples).id
    )
    for biobank_id in biobanks:
        assert deployed.sync(biobank_id).outcome == SUCCEEDED
    return deployed


def _loading(url: str, prefix: str, live: set[str]) -> str | None:
    """The name of an index being bulk loaded (not live, already holding documents)."""
    for name in set(indices(url, f"{prefix}-samples")) - live:
        stats = engine_request(url, "GET", f"/{name}/_stats/indexing")
        # Elasticsearch answers `"primaries": {}` until the new index's primary has started:
        # it holds nothing yet.
        primaries = stats["_all"]["primaries"] if stats else {}
        if primaries.get("indexing", {}).get("index_total", 0) > 0:
            return name
    return None


def _wait_for_lock_expiry(url: str, prefix: str, biobank_id: str) -> None:
    lock = engine_request(url, "GET", f"/{prefix}-locks/_doc/{biobank_key(biobank_id)}")
    if lock and lock.get("found"):
        left = lock["_source"]["expires_at"] / 1000 - time.time()
        time.sleep(max(0.0, left) + 0.2)


def test_node_killed_mid_sync_keeps_the_old_generation_and_leaves_no_orphan(
    node: PrivateNode, deployment: Deployment
) -> None:
    url, prefix, biobank = node.url, deployment.prefix, deployment.large
    before = deployment.counts()
    live = set(indices(url, f"{prefix}-samples"))
    outcome: dict[str, Any] = {}

    def resync() -> None:
        try:
            outcome["run"] = deployment.sync(biobank)
        except SyncFailed as err:
            outcome["failed"] = err.run

    syncing = threading.Thread(target=resync)
    syncing.start()
    deadline = time.monotonic() + 120
    while (loading := _loading(url, prefix, live)) is None:
        assert syncing.is_alive(), f"the sync ended before its bulk load was seen: {outcome}"
        assert time.monotonic() < deadline, "no bulk load seen within 120 s"
        time.sleep(0.02)
    node.kill()  # in the middle of the bulk load
    syncing.join(timeout=120)
    assert not syncing.is_alive()

    # The run failed cleanly, after retrying with backoff.
    failed = outcome.get("failed")
    assert failed is not None, outcome
    assert failed.outcome == FAILED and "gave up after" in (failed.error or "")
    assert deployment.runtime.state.runs(biobank)[0].outcome == FAILED
    # While the node is down searches fail fast and say so.
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        deployment.counts()
    assert time.monotonic() - started < 5
    assert deployment.runtime.backend.ready() is False

    node.start(keep_data=True)
    # The same process recovers without being restarted: the old generation serves.
    assert deployment.runtime.backend.ready()
    assert deployment.counts() == before
    on_disk = indices(url, f"{prefix}-samples")
    assert loading in on_disk and not on_disk[loading], "the half-built index is an orphan"

    # The next sync of the biobank (once the dead sync's lock expired) removes the orphan.
    _wait_for_lock_expiry(url, prefix, biobank)
    assert deployment.sync(biobank).outcome == SUCCEEDED
    after = indices(url, f"{prefix}-samples")
    assert len(after) == len(deployment.biobanks)
    assert all(aliases for aliases in after.values()), f"an index no alias serves: {after}"
    assert loading not in after
    assert deployment.counts() == before


SEARCH = """
query($q: SampleQuery!) {
  search(query: $q) {
    samples { value precision }
    byBiobank { biobank { id } donors { value } samples { value } }
  }
}"""


def _post(url: str, query: str, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_gateway_reports_the_outage_and_recovers_without_restart(
    node: PrivateNode, deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    port = free_port()
    env = {
        "BIOFED_DATA_DIR": str(settings.data_dir),
        "BIOFED_NETWORK": str(settings.network),
        "BIOFED_HOST": "127.0.0.1",
        "BIOFED_PORT": str(port),
        "BIOFED_WORKERS": "2",
        "BIOFED_BACKEND": node.engine.backend,
        "BIOFED_ENGINE_URLS": node.url,
        "BIOFED_ENGINE_INDEX_PREFIX": deployment.prefix,
        "BIOFED_ENGINE_SEARCH_TIMEOUT": "2",
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    with running(command, env, port, tmp_path / "gunicorn.log") as url:
        status, before = _post(url, SEARCH, {"q": {}})
        assert status == 200 and "errors" not in before, before
        assert _status(f"{url}/readyz") == 200

        node.kill()
        started = time.monotonic()
        status, down = _post(url, SEARCH, {"q": {"diseases": ["C50"]}})
        assert time.monotonic() - started < 5, "searches must fail fast"
        assert down["errors"][0]["extensions"]["code"] == "ENGINE_UNAVAILABLE", down
        assert "Traceback" not in json.dumps(down)
        assert _status(f"{url}/readyz") == 503
        assert _status(f"{url}/healthz") == 200

        node.start(keep_data=True)
        deadline = time.monotonic() + 30
        while _status(f"{url}/readyz") != 200:
            assert time.monotonic() < deadline, "not ready 30 s after the node came back"
            time.sleep(0.2)
        status, after = _post(url, SEARCH, {"q": {}})
        assert status == 200 and after == before
    assert engine_get(node.url, "/_cluster/health")["status"] in ("green", "yellow")
