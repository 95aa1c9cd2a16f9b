"""What `/metrics` reads from the store about syncs, on SQLite and on PostgreSQL: runs by
outcome, records summed and of the newest success, the quarantine, lock takeovers; and
the sync collector's series over them."""

from __future__ import annotations

import datetime as dt
import math

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from federation.state import StateStore
from federation.state.sync_records import FAILED, SUCCEEDED, RunEnd
from federation.state.sync_totals import sync_totals
from federation.sync.metrics import SyncCollector
from tests.state.test_store import rejection


def _run(store: StateStore, biobank: str, outcome: str, read: int, rejected: int) -> int:
    run_id = store.runs.start(biobank, "full", "cli")
    counts = {"read": read, "indexed": read - rejected, "rejected": rejected}
    store.runs.finish(run_id, RunEnd(outcome, counts, 1.0))
    return run_id


def _history(store: StateStore) -> None:
    _run(store, "bb-1", SUCCEEDED, 100, 10)
    last = _run(store, "bb-1", SUCCEEDED, 50, 3)
    _run(store, "bb-1", FAILED, 7, 0)
    store.quarantine.replace("bb-1", last, [rejection("s1"), rejection("s2"), rejection("s3")])
    _run(store, "bb-2", FAILED, 0, 0)
    store.runs.start("bb-2", "full", "worker")  # still running
    store.lock_takeovers.record("bb-2", "host-a", 4242)
    store.lock_takeovers.record("bb-2", "host-b", None)


def test_sync_totals_sum_runs_per_biobank(store: StateStore) -> None:
    _history(store)
    before = dt.datetime.now(dt.UTC)
    totals = sync_totals(store.engine)
    one, two = totals["bb-1"], totals["bb-2"]
    assert one.runs == {SUCCEEDED: 2, FAILED: 1} and one.running == 0
    assert one.records == {"read": 157, "indexed": 144, "quarantined": 13}
    assert one.last_success == {"read": 50, "indexed": 47, "quarantined": 3}
    assert one.last_success_at is not None
    assert 0 <= (before - one.last_success_at).total_seconds() < 60
    assert one.quarantine == 3
    assert two.runs == {FAILED: 1} and two.running == 1
    assert two.last_success == {} and two.last_success_at is None
    assert store.lock_takeovers.counts() == {"bb-2": 2}


def _families(store: StateStore, biobanks: list[str]) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector(lambda: store, lambda: biobanks))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[(s.name, labels)] = s.value
    return samples


def test_the_collector_reports_every_biobank_of_the_network(store: StateStore) -> None:
    _history(store)
    samples = _families(store, ["bb-1", "bb-2", "bb-new"])
    assert samples[("biofed_sync_state_up", "")] == 1
    assert samples[("biofed_sync_runs_total", "biobank=bb-1,outcome=succeeded")] == 2
    assert samples[("biofed_sync_runs_total", "biobank=bb-1,outcome=failed")] == 1
    assert samples[("biofed_sync_running", "biobank=bb-2")] == 1
    assert samples[("biofed_sync_records_total", "biobank=bb-1,stage=quarantined")] == 13
    assert samples[("biofed_sync_last_success_records", "biobank=bb-1,stage=read")] == 50
    assert samples[("biofed_sync_quarantine_records", "biobank=bb-1")] == 3
    assert samples[("biofed_sync_lock_takeovers_total", "biobank=bb-2")] == 2
    assert samples[("biofed_sync_lock_takeovers_total", "biobank=bb-1")] == 0
    assert 0 <= samples[("biofed_sync_last_success_age_seconds", "biobank=bb-1")] < 60
    # Never synced successfully (or never at all): an infinite age, which any "older
    # than" alert catches.
    assert math.isinf(samples[("biofed_sync_last_success_age_seconds", "biobank=bb-2")])
    assert math.isinf(samples[("biofed_sync_last_success_age_seconds", "biobank=bb-new")])
    assert samples[("biofed_sync_records_total", "biobank=bb-new,stage=read")] == 0


def _unreachable() -> StateStore:
    raise ConnectionError("state store down")


def test_an_unreadable_store_reports_down_and_no_sync_series() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector(_unreachable, lambda: ["bb-1"]))
    text = generate_latest(registry).decode()
    assert "biofed_sync_state_up 0.0" in text
    assert "biofed_sync_runs" not in text
