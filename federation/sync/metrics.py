"""The sync series of `/metrics`, computed at scrape time from the state store.

Syncs run in `biofed sync` and `biofed worker` processes, often on other hosts than the
gateway, so counters kept in a gateway process would never see them. The store holds every
host's runs; this collector reads them when Prometheus scrapes (docs/metrics.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from federation.state import StateStore
from federation.state.sync_totals import STAGES, sync_totals

log = logging.getLogger(__name__)


class SyncCollector(Collector):
    """Runs by outcome, records per biobank, the age of the last success, lock takeovers."""

    def __init__(
        self, store: Callable[[], StateStore], biobanks: Callable[[], Sequence[str]]
    ) -> None:
        # Both are called at each scrape: the store may fail to open (a PostgreSQL server
        # down), and the network file may gain biobanks that never synced yet.
        self.store = store
        self.biobanks = biobanks

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The sync series, and whether the store could be read at all."""
        up = GaugeMetricFamily(
            "biofed_sync_state_up", "1 when the sync history could be read from the state store."
        )
        try:
            families = list(self._families())
        except Exception:
            # The gateway's own series still matter when the store is unreachable.
            log.exception("sync metrics: the state store could not be read")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        store = self.store()
        totals = sync_totals(store.engine)
        takeovers = store.lock_takeovers.counts()
        biobanks = sorted(set(totals) | set(self.biobanks()) | set(takeovers))
        now = dt.datetime.now(dt.UTC)
        runs = CounterMetricFamily(
            "biofed_sync_runs", "Finished sync runs by outcome.", labels=["biobank", "outcome"]
        )
        running = GaugeMetricFamily(
            "biofed_sync_running", "Sync runs marked running now.", labels=["biobank"]
        )
        records = CounterMetricFamily(
            "biofed_sync_records",
            "Records summed over finished runs: read from the source, indexed, quarantined.",
            labels=["biobank", "stage"],
        )
        last = GaugeMetricFamily(
            "biofed_sync_last_success_records",
            "Records read, indexed and quarantined by the newest successful run.",
            labels=["biobank", "stage"],
        )
        age = GaugeMetricFamily(
            "biofed_sync_last_success_age_seconds",
            "Seconds since the newest successful run finished; +Inf when none succeeded.",
            labels=["biobank"],
        )
        stamp = GaugeMetricFamily(
            "biofed_sync_last_success_timestamp_seconds",
            "When the newest successful run finished (Unix time).",
            labels=["biobank"],
        )
        kept = GaugeMetricFamily(
            "biofed_sync_quarantine_records", "Records in quarantine now.", labels=["biobank"]
        )
        taken = CounterMetricFamily(
            "biofed_sync_lock_takeovers",
            "Engine sync locks taken over from a holder that died or let the lock expire.",
            labels=["biobank"],
        )
        for biobank in biobanks:
            entry = totals.get(biobank)
            for outcome, count in sorted(entry.runs.items()) if entry else ():
                runs.add_metric([biobank, outcome], count)
            running.add_metric([biobank], entry.running if entry else 0)
            for stage in STAGES:
                records.add_metric([biobank, stage], entry.records.get(stage, 0) if entry else 0)
                if entry and entry.last_success:
                    last.add_metric([biobank, stage], entry.last_success[stage])
            finished = entry.last_success_at if entry else None
            if finished is None:
                age.add_metric([biobank], math.inf)
            else:
                age.add_metric([biobank], max((now - finished).total_seconds(), 0.0))
                stamp.add_metric([biobank], finished.timestamp())
            kept.add_metric([biobank], entry.quarantine if entry else 0)
            taken.add_metric([biobank], takeovers.get(biobank, 0))
        yield from (runs, running, records, last, age, stamp, kept, taken)
