"""The sync's state on the store, on SQLite and on PostgreSQL: what the sync code
(`federation/sync/state.py`, `staging.py`, the queue in `schedule.py`) reads and writes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from federation.model.records import Collection, Donor, Sample
from federation.state import StateStore, schema_version
from federation.sync.schedule import SyncQueue
from federation.sync.staging import PublishOutcome, StagedChange, Staging
from federation.sync.state import FAILED, INTERRUPTED, REFUSED, RUNNING, SUCCEEDED, SyncState
from tests.state.test_store import PRE_STORE_STATE_DB, adopted, rejection


@pytest.fixture
def state(store: StateStore) -> SyncState:
    return SyncState(store)


class TestSyncState:
    """Runs, their recovery data and the quarantine; pytest runs it once per engine."""

    def test_a_run_records_where_it_ran_and_how_the_source_was_read(self, state: SyncState) -> None:
        run_id = state.start_run("bb-1", "full", "cli")
        state.annotate_run(run_id, ["paging: offset", "2 pages"], partial=3)
        state.finish_run(run_id, SUCCEEDED, {"read": 10, "rejected": 2}, duration_s=1.5)
        run = state.run(run_id)
        assert run is not None
        assert (run.host, run.pid) == (socket.gethostname(), os.getpid())
        assert (run.notes, run.partial, run.accepted) == ("paging: offset; 2 pages", 3, 5)
        assert state.last_success("bb-1", "full") == run
        assert state.last_success("bb-1", "incremental") is None

    def test_a_refused_sync_is_recorded_finished_with_its_reason(self, state: SyncState) -> None:
        run = state.run(state.record_refused("bb-1", "worker", "bb-1 is being synced"))
        assert run is not None
        assert (run.outcome, run.error, run.duration_s) == (REFUSED, "bb-1 is being synced", 0)
        assert run.finished_at == run.started_at and run.pid == os.getpid()

    @pytest.mark.parametrize("published", [True, False])
    def test_a_killed_run_is_settled_from_what_it_wrote_before_publishing(
        self, state: SyncState, published: bool
    ) -> None:
        run_id = state.start_run("bb-1", "full", "cli")
        state.store.runs.prepare_publish(
            run_id, "g-2", {"read": 4, "indexed": 3}, [rejection("s1")]
        )
        (pending,) = state.pending_quarantine(run_id) or []
        assert (pending["record_key"], pending["payload"]) == ("s1", '{"id": "s1", "sex": "X"}')
        run = state.run(run_id)
        assert run is not None and (run.outcome, run.generation, run.read) == (RUNNING, "g-2", 4)
        outcome = SUCCEEDED if published else INTERRUPTED
        state.settle_run(run_id, outcome, "the process died", published=published)
        settled = state.run(run_id)
        assert settled is not None and settled.outcome == outcome
        assert settled.generation == ("g-2" if published else None)
        assert state.pending_quarantine(run_id) is None
        state.settle_run(run_id, FAILED, "again", published=False)  # only a running run
        assert state.run(run_id) == settled

    def test_a_staged_run_keeps_no_pending_quarantine(self, state: SyncState) -> None:
        run_id = state.start_run("bb-1", "incremental", "cli")
        state.store.runs.prepare_publish(run_id, "g-1", {"read": 1}, None)
        assert state.pending_quarantine(run_id) is None
        state.store.runs.prepare_publish(run_id, "g-1", {"read": 1}, [rejection("s1")])
        state.store.runs.prepare_publish(run_id, "g-1", {"read": 1}, [rejection("s2")])  # replaced
        assert [r["record_key"] for r in state.pending_quarantine(run_id) or []] == ["s2"]
        state.finish_run(run_id, SUCCEEDED, {"read": 1}, duration_s=0.1, generation="g-1")
        assert state.pending_quarantine(run_id) is None

    def test_published_biobanks_and_biobanks_with_state(self, state: SyncState) -> None:
        done = state.start_run("bb-1", "full", "cli")
        state.finish_run(done, SUCCEEDED, {}, duration_s=0.1, generation="g-1")
        failed = state.start_run("bb-2", "full", "cli")
        state.finish_run(failed, FAILED, {}, duration_s=0.1, error="down")
        state.replace_quarantine("bb-3", done, [rejection("s1", kept=1)])
        assert state.published_biobanks() == {"bb-1"}
        assert state.biobank_ids() == ["bb-1", "bb-2", "bb-3"]
        (kept,) = state.quarantine("bb-3")
        assert kept.kept == 1 and state.quarantine_count("bb-3") == 1

    def test_the_queue_is_the_stores(self, state: SyncState, store: StateStore) -> None:
        queue = SyncQueue(state)
        asked = queue.request("bb-1", "admin@bb-1", "full")
        assert store.sync_requests.pending() == [asked] == queue.pending()
        assert queue.claim() == [dataclass_claimed(store, asked.id)]
        assert queue.pending() == []


def dataclass_claimed(store: StateStore, request_id: int) -> object:
    """The request as the store holds it now."""
    from federation.state.schema import sync_requests
    from federation.state.sync_records import SyncRequest

    with store.read() as db:
        row = db.execute(sync_requests.select().where(sync_requests.c.id == request_id)).one()
    return SyncRequest(**row._asdict())


def sample(sample_id: str, donor_id: str) -> Sample:
    return Sample(sample_id, "bb-1", "bb-1-C1", donor_id, "blood")


class TestStaging:
    """Staged records of resumable connectors; pytest runs it once per engine."""

    def test_a_batch_is_staged_with_its_checkpoint_and_published(self, state: SyncState) -> None:
        staging = Staging(state)
        first = staging.begin_pass("bb-1", "full")
        assert first.number == 1 and staging.current_pass("bb-1") == first
        state.save_checkpoint("bb-1", "samples", {"bookmark": {"since": "2026-12-01"}})
        run_id = state.start_run("bb-1", "full", "cli")
        duplicates = staging.stage(
            "bb-1",
            first.number,
            run_id,
            [
                StagedChange(
                    "collection", "collections", "C1", Collection("bb-1-C1", "bb-1", "C", ("x",))
                ),
                StagedChange("donor", "donors", "D1", Donor("bb-1-D1", "bb-1", "female")),
                StagedChange("donor", "donors", "D2", Donor("bb-1-D2", "bb-1", "male")),
                StagedChange("sample", "samples", "S1", sample("bb-1-S1", "bb-1-D1")),
                StagedChange(
                    "sample", "samples", "S2", sample("bb-1-S2", "bb-1-D9"), payload={"id": "S2"}
                ),
                StagedChange("sample", "samples", "S1b", sample("bb-1-S1", "bb-1-D2")),
                StagedChange("sample", "samples", "S3", rejection=rejection("S3")),
            ],
            ("samples", {"offset": 5}),
        )
        assert [d.source_id for d in duplicates] == ["S1b"]
        assert staging.stream_checkpoint("bb-1", "samples") == {
            "pass": 1,
            "done": False,
            "position": {"offset": 5},
            "bookmark": {"since": "2026-12-01"},
        }
        reasons = {q.source_id: q.reason for q in state.quarantine("bb-1")}
        assert reasons == {"S2": "no such donor at the source", "S3": "bad sex 'X'"}
        donors, ordinals = staging.donors("bb-1")
        assert sorted(donors) == ["bb-1-D1", "bb-1-D2"] and sorted(ordinals.values()) == [0, 1]
        assert list(staging.collections("bb-1")) == ["bb-1-C1"]
        assert staging.pending_references("bb-1")
        assert staging.read_in_pass("bb-1", 1, first.started_at) == 7  # 5 staged, 2 quarantine rows
        affected = list(staging.samples("bb-1", only_affected=True))
        assert [(s.id, s.indexed) for s in affected] == [("bb-1-S1", False), ("bb-1-S2", False)]
        assert staging.rejected_donors("bb-1", "donors") == {}

        staging.published(
            "bb-1",
            run_id,
            PublishOutcome(indexed=["bb-1-S1"], unindexed=["bb-1-S2"], gone=[("samples", "S3")]),
        )
        assert list(staging.samples("bb-1", only_affected=True)) == []
        assert [(s.id, s.indexed) for s in staging.samples("bb-1", only_affected=False)] == [
            ("bb-1-S1", True),
            ("bb-1-S2", False),
        ]
        assert [q.source_id for q in state.quarantine("bb-1")] == ["S2"]
        again = staging.current_pass("bb-1")
        assert again is not None and again.finished
        assert staging.next_version("bb-1") > again.version

        second = staging.begin_pass("bb-1", "full")
        assert (second.number, second.finished) == (2, False)
        staging.stage("bb-1", 2, run_id, [StagedChange("sample", "samples", "S1", None)], None)
        assert [s.sample for s in staging.samples("bb-1", only_affected=True)] == [None]
        assert staging.delete_unseen("bb-1", 2, second.started_at) == 4  # C1, D1, D2, S2
        staging.forget("bb-1")
        assert staging.current_pass("bb-1") is None
        assert list(staging.samples("bb-1", only_affected=False)) == []


# The sync state as the sync's own SQLite code left it in an older file before it moved
# onto the store: the columns it added (in this order), the pending quarantine, staging
# and the queue.
SYNC_CODE_STATE_DB = (
    PRE_STORE_STATE_DB
    + """
ALTER TABLE sync_runs ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN notes TEXT;
ALTER TABLE quarantine ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN host TEXT;
ALTER TABLE sync_runs ADD COLUMN pid INTEGER;
CREATE TABLE pending_quarantine (
  run_id INTEGER PRIMARY KEY, biobank_id TEXT NOT NULL, records TEXT NOT NULL);
CREATE TABLE staged (
  biobank_id TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, stream TEXT NOT NULL,
  source_id TEXT, donor_id TEXT, collection_id TEXT, ordinal INTEGER, data TEXT,
  pass INTEGER NOT NULL, pending INTEGER NOT NULL, indexed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (biobank_id, kind, id)) WITHOUT ROWID;
CREATE TABLE sync_passes (
  biobank_id TEXT PRIMARY KEY, pass INTEGER NOT NULL, mode TEXT NOT NULL,
  started_at TEXT NOT NULL, finished INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1);
CREATE TABLE sync_requests (
  id INTEGER PRIMARY KEY AUTOINCREMENT, biobank_id TEXT NOT NULL, mode TEXT NOT NULL,
  requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, claimed_at TEXT);
INSERT INTO sync_runs (biobank_id, kind, triggered_by, started_at, outcome, read, generation,
  host, pid, partial, notes)
  VALUES ('bb-1', 'full', 'cli', '2026-12-01T10:00:00.000+00:00', 'running', 7, 'g-5',
  'old-host', 4242, 2, 'paging: offset');
INSERT INTO pending_quarantine VALUES (2, 'bb-1', '[{"record_key": "s1"}]');
INSERT INTO quarantine VALUES ('bb-1', 'samples', 's1', 's1', 'row 2', 'sex', 'X', 'bad sex',
  '{}', 1, '2026-12-01T10:00:00', '2026-12-01T10:00:00', 1);
INSERT INTO sync_passes VALUES ('bb-1', 3, 'full', '2026-12-01T10:00:00', 1, 77);
INSERT INTO sync_requests (biobank_id, mode, requested_by, requested_at)
  VALUES ('bb-2', 'auto', 'admin@bb-2', '2026-12-01T10:00:00');
"""
)


def test_a_state_db_written_by_the_sync_code_is_adopted(tmp_path: Path) -> None:
    state = SyncState(adopted(tmp_path, SYNC_CODE_STATE_DB))
    schema_version.check(state.store.engine)
    run, older = state.runs()
    assert (run.host, run.pid, run.partial, run.notes, run.read) == (
        "old-host",
        4242,
        2,
        "paging: offset",
        7,
    )
    assert (older.read, older.partial, older.host) == (42, 0, None)
    assert state.pending_quarantine(run.id) == [{"record_key": "s1"}]
    assert [q.kept for q in state.quarantine("bb-1")] == [1]
    current = Staging(state).current_pass("bb-1")
    assert current is not None and (current.number, current.version) == (3, 77)
    assert [r.biobank_id for r in SyncQueue(state).pending()] == ["bb-2"]
    state.settle_run(run.id, SUCCEEDED, "settled after the upgrade", published=True)
    assert state.pending_quarantine(run.id) is None
    state.store.close()


def test_the_reserve_is_kept_beside_an_embedded_file_only(store: StateStore) -> None:
    state = SyncState(store)
    if store.shared:  # a database server's disk is its operator's
        assert (state.path, state.reserve) == (store.location, None)
        assert not state.disk_full()
        return
    assert isinstance(state.path, Path) and state.path.name == "state.db"
    assert state.reserve == state.path.with_name("state.db.reserve")
    assert state.reserve.stat().st_size == 1 << 20
