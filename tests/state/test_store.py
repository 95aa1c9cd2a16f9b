"""The state store's conformance suite: every operation, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from federation import PROJECT_ROOT
from federation.state import (
    SchemaOutOfDate,
    StateStore,
    StateUrlError,
    open_state_store,
    schema_version,
    state_url,
)
from federation.state.audit_trail import AuditRecord
from federation.state.database import create_state_engine
from federation.state.ledger import BudgetKey, Charge, Outcome
from federation.state.rate_buckets import Refill
from federation.state.schema import metadata
from federation.state.sync_records import (
    FAILED,
    INTERRUPTED,
    MAX_PAYLOAD_BYTES,
    RUNNING,
    SUCCEEDED,
    RunEnd,
)
from tests.state import spender


def rejection(key: str, reason: str = "bad sex 'X'", **extra: object) -> dict[str, object]:
    return {
        "stream": "samples",
        "record_key": key,
        "source_id": key,
        "position": "row 2",
        "field": "sex",
        "value": "X",
        "reason": reason,
        "payload": {"id": key, "sex": "X"},
        **extra,
    }


def audited(subject: str, n: int = 0) -> AuditRecord:
    return AuditRecord(
        at=f"2026-12-07T03:00:{n:02d}.000+00:00",
        subject=subject,
        via="api_key",
        roles=("registered",),
        admin_of=(),
        approved_for=("bb-2", "bb-1"),
        client_ip="192.0.2.1",
        filters={"diseases": ["E11"], "text": "糖尿病"},
        purpose={"kind": "DISEASE", "diseases": ["E11"]},
        released=({"biobank_id": "bb-1", "donors": "NOISED", "samples": "NOISED"},),
        records_returned=n % 2 == 1,
        record_count=n,
    )


class TestStateStore:
    """Every operation of the store; pytest runs the class once per engine."""

    # --- schema ------------------------------------------------------------------------

    def test_migrated_schema_is_the_declared_schema(self, store: StateStore) -> None:
        with store.engine.connect() as db:
            differences = compare_metadata(MigrationContext.configure(db), metadata)
        assert differences == []
        schema_version.check(store.engine)

    def test_a_store_behind_is_refused_with_the_command_to_run(
        self, store_url: str, tmp_path: Path
    ) -> None:
        with pytest.raises(SchemaOutOfDate, match=r"none \(empty\).*run `biofed migrate`"):
            open_state_store(store_url, tmp_path, migrate=False)
        open_state_store(store_url, tmp_path, migrate=True).close()
        open_state_store(store_url, tmp_path, migrate=False).close()

    def test_migrating_twice_changes_nothing(self, store: StateStore) -> None:
        head = schema_version.head()
        assert schema_version.upgrade(store.engine) == (head, head)

    def test_a_store_ahead_of_this_version_is_refused(self, store: StateStore) -> None:
        with store.write() as db:
            db.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaOutOfDate, match="newer than this version of biofed"):
            schema_version.check(store.engine)

    # --- sync runs -----------------------------------------------------------------------

    def test_runs_are_recorded_and_read_newest_first(self, store: StateStore) -> None:
        first = store.runs.start("bb-1", "full", "cli")
        second = store.runs.start("bb-2", "incremental", "worker")
        store.runs.finish(
            first,
            RunEnd(SUCCEEDED, {"read": 10, "indexed": 9, "rejected": 1}, 1.23456, "g-7"),
        )
        done = store.runs.get(first)
        assert done is not None
        assert (done.outcome, done.read, done.indexed, done.rejected, done.deleted) == (
            SUCCEEDED,
            10,
            9,
            1,
            0,
        )
        assert (done.duration_s, done.generation, done.error) == (1.235, "g-7", None)
        assert done.finished_at is not None and done.finished_at >= done.started_at
        assert [r.id for r in store.runs.history()] == [second, first]
        assert [r.id for r in store.runs.history("bb-1")] == [first]
        assert [r.id for r in store.runs.history(limit=1)] == [second]
        assert store.runs.get(second + 100) is None

    def test_a_run_left_running_is_marked_interrupted_by_the_next(self, store: StateStore) -> None:
        killed = store.runs.start("bb-1", "full", "cli")
        other = store.runs.start("bb-2", "full", "cli")
        store.runs.start("bb-1", "full", "cli")
        run = store.runs.get(killed)
        assert run is not None and run.outcome == INTERRUPTED
        assert run.error == "the sync process ended without finishing"
        running = store.runs.get(other)
        assert running is not None and running.outcome == RUNNING

    def test_a_failed_run_keeps_its_error(self, store: StateStore) -> None:
        run_id = store.runs.start("bb-1", "full", "cli")
        store.runs.finish(run_id, RunEnd(FAILED, {}, 0.5, error="source down: 503"))
        run = store.runs.get(run_id)
        assert run is not None and (run.outcome, run.error) == (FAILED, "source down: 503")

    # --- quarantine ----------------------------------------------------------------------

    def test_quarantine_is_replaced_by_each_full_sync(self, store: StateStore) -> None:
        first_run = store.runs.start("bb-1", "full", "cli")
        store.quarantine.replace("bb-1", first_run, [rejection("s1"), rejection("s2")])
        store.quarantine.replace("bb-2", first_run, [rejection("s1")])
        before = {r.source_id: r for r in store.quarantine.page("bb-1")}
        second_run = store.runs.start("bb-1", "full", "cli")
        store.quarantine.replace("bb-1", second_run, [rejection("s2", "bad age"), rejection("s3")])
        after = store.quarantine.page("bb-1")
        assert [r.source_id for r in after] == ["s2", "s3"]
        assert after[0].first_seen == before["s2"].first_seen  # still the same problem
        assert after[0].last_seen >= after[0].first_seen
        assert (after[0].reason, after[0].run_id) == ("bad age", second_run)
        assert store.quarantine.count("bb-1") == 2
        assert store.quarantine.count("bb-2") == 1  # another biobank's stays

    def test_quarantine_pages_by_stream_and_key(self, store: StateStore) -> None:
        rows = [rejection(f"s{n}") for n in range(5)] + [
            rejection("d1", stream="donors"),
            rejection("s0", "later reason"),  # the same record twice: the last one wins
        ]
        store.quarantine.replace("bb-1", 1, rows)
        assert [r.source_id for r in store.quarantine.page("bb-1", limit=3)] == ["d1", "s0", "s1"]
        assert [r.source_id for r in store.quarantine.page("bb-1", limit=3, offset=3)] == [
            "s2",
            "s3",
            "s4",
        ]
        samples = store.quarantine.page("bb-1", stream="samples")
        assert len(samples) == 5 and samples[0].reason == "later reason"
        assert store.quarantine.count("bb-1") == 6

    def test_quarantine_keeps_raw_payloads_up_to_a_cap(self, store: StateStore) -> None:
        huge = rejection("s1", payload={"id": "s1", "note": "ü" * 20_000})
        store.quarantine.replace("bb-1", 1, [huge, rejection("s2")])
        kept = {r.source_id: r.payload for r in store.quarantine.page("bb-1")}
        assert len(kept["s1"].encode()) <= MAX_PAYLOAD_BYTES
        assert kept["s1"].endswith("bytes, cut]")
        assert kept["s2"] == '{"id": "s2", "sex": "X"}'

    # --- checkpoints ---------------------------------------------------------------------

    def test_checkpoints_are_saved_per_stream(self, store: StateStore) -> None:
        assert store.checkpoints.get("bb-1", "samples") is None
        store.checkpoints.save("bb-1", "samples", {"pass": 1, "position": "page 3"})
        store.checkpoints.save("bb-1", "donors", {"pass": 1, "position": None})
        store.checkpoints.save("bb-1", "samples", {"pass": 1, "position": "page 4"})
        assert store.checkpoints.get("bb-1", "samples") == {"pass": 1, "position": "page 4"}
        assert store.checkpoints.get("bb-1", "donors") == {"pass": 1, "position": None}
        assert store.checkpoints.get("bb-2", "samples") is None

    # --- the sync queue ------------------------------------------------------------------

    def test_one_open_request_per_biobank_and_each_claimed_once(self, store: StateStore) -> None:
        first = store.sync_requests.request("bb-1", "admin@bb-1", "full")
        again = store.sync_requests.request("bb-1", "other@bb-1", "incremental")
        other = store.sync_requests.request("bb-2", "admin@bb-2")
        assert again == first and first.mode == "full" and first.claimed_at is None
        assert [r.id for r in store.sync_requests.pending()] == [first.id, other.id]
        claimed = store.sync_requests.claim()
        assert [r.id for r in claimed] == [first.id, other.id]
        assert all(r.claimed_at is not None for r in claimed)
        assert store.sync_requests.claim() == []
        assert store.sync_requests.pending() == []
        later = store.sync_requests.request("bb-1", "admin@bb-1")
        assert later.id > first.id and later.mode == "auto"

    # --- the audit log -------------------------------------------------------------------

    def test_audit_rows_read_back_newest_first_in_pages(self, store: StateStore) -> None:
        ids = [
            store.audit.append(audited("a@example.org" if n % 2 else "b@x", n)) for n in range(5)
        ]
        assert ids == sorted(ids)
        page, more = store.audit.page(2)
        assert [r.id for r in page] == ids[:-3:-1] and more
        rest, more = store.audit.page(10, before_id=page[-1].id)
        assert [r.id for r in rest] == ids[2::-1] and not more
        mine, _ = store.audit.page(10, subject="a@example.org")
        assert [r.record_count for r in mine] == [3, 1]
        expected = dataclasses.replace(
            audited("a@example.org", 3), id=mine[0].id, approved_for=("bb-1", "bb-2")
        )
        assert mine[0] == expected  # every field read back, memberships sorted

    def test_audit_rows_cannot_be_changed_or_deleted(self, store: StateStore) -> None:
        row_id = store.audit.append(audited("a@example.org"))
        for statement in (
            "UPDATE audit_searches SET subject = 'someone else'",
            "DELETE FROM audit_searches",
        ):
            with pytest.raises(DBAPIError, match="append-only"), store.write() as db:
                db.execute(text(statement))
        if store.engine.dialect.name == "postgresql":
            with pytest.raises(DBAPIError, match="append-only"), store.write() as db:
                db.execute(text("TRUNCATE audit_searches"))
        page, _ = store.audit.page(10)
        assert [(r.id, r.subject) for r in page] == [(row_id, "a@example.org")]

    # --- rate-limit buckets --------------------------------------------------------------

    def test_a_bucket_allows_its_burst_then_says_how_long_to_wait(self, store: StateStore) -> None:
        refill = Refill(burst=3, per_second=0.5)
        assert [store.rate_buckets.take("ip:192.0.2.1", refill, 100.0) for _ in range(3)] == [
            None,
            None,
            None,
        ]
        assert store.rate_buckets.take("ip:192.0.2.1", refill, 100.0) == pytest.approx(2.0)
        assert store.rate_buckets.take("ip:192.0.2.2", refill, 100.0) is None  # its own bucket
        assert store.rate_buckets.take("ip:192.0.2.1", refill, 101.0) == pytest.approx(1.0)
        assert store.rate_buckets.take("ip:192.0.2.1", refill, 102.0) is None  # refilled
        assert store.rate_buckets.tokens("ip:192.0.2.1") == pytest.approx(0.0)
        # Refills stop at the burst size, however long the bucket was idle.
        assert store.rate_buckets.take("ip:192.0.2.1", refill, 10_000.0) is None
        assert store.rate_buckets.tokens("ip:192.0.2.1") == pytest.approx(2.0)
        assert store.rate_buckets.tokens("ip:192.0.2.9") is None

    def test_a_clock_behind_never_refills_a_bucket(self, store: StateStore) -> None:
        refill = Refill(burst=1, per_second=1.0)
        assert store.rate_buckets.take("k", refill, 100.0) is None
        # Another host whose clock is 5 s behind: no negative elapsed time, no refill.
        assert store.rate_buckets.take("k", refill, 95.0) == pytest.approx(1.0)
        assert store.rate_buckets.take("k", refill, 101.0) is None

    # --- the privacy ledger --------------------------------------------------------------

    def test_new_releases_spend_repeats_are_free_and_a_spent_budget_refuses(
        self, store: StateStore
    ) -> None:
        key = BudgetKey("r@example.org", "bb-1", "2026-12-07")
        spending = store.ledger.spend(key, [Charge("f1", 0.5), Charge("f2", 0.25)], 1.0)
        assert spending.outcomes == (Outcome.SPENT, Outcome.SPENT)
        assert spending.spent == 0.75
        spending = store.ledger.spend(
            key, [Charge("f1", 0.5), Charge("f3", 0.5), Charge("f4", 0.25), Charge("f4", 0.25)], 1.0
        )
        assert spending.outcomes == (Outcome.REPEAT, Outcome.REFUSED, Outcome.SPENT, Outcome.REPEAT)
        assert spending.spent == 1.0
        assert store.ledger.spent(key) == 1.0
        assert store.ledger.releases(key) == 3

    def test_budgets_are_separate_per_subject_scope_and_period(self, store: StateStore) -> None:
        keys = [
            BudgetKey("r@example.org", "bb-1", "2026-12-07"),
            BudgetKey("r@example.org", "network", "2026-12-07"),
            BudgetKey("r@example.org", "bb-1", "2026-12-08"),
            BudgetKey("s@example.org", "bb-1", "2026-12-07"),
        ]
        for key in keys:
            assert store.ledger.spend(key, [Charge("f1", 1.0)], 1.0).outcomes == (Outcome.SPENT,)
        assert store.ledger.spent(BudgetKey("t@example.org", "bb-1", "2026-12-07")) == 0.0
        assert store.ledger.forget_before("2026-12-08") == 3
        assert [store.ledger.spent(k) for k in keys] == [0.0, 0.0, 1.0, 0.0]
        assert store.ledger.releases(keys[0]) == 0

    def test_several_budgets_are_charged_in_one_call_each_on_its_own(
        self, store: StateStore
    ) -> None:
        one = BudgetKey("r@example.org", "bb-2", "2026-12-07")
        two = BudgetKey("r@example.org", "bb-1", "2026-12-07")
        store.ledger.spend(two, [Charge("f1", 1.0)], 2.0)
        spendings = store.ledger.spend_all(
            [
                (one, [Charge("f1", 1.0), Charge("f2", 1.0), Charge("f3", 1.0)], 2.0),
                (two, [Charge("f1", 1.0), Charge("f2", 1.0), Charge("f3", 1.0)], 2.0),
            ]
        )
        # In the order asked (not the order the budgets are locked in), each its own limit.
        assert [s.outcomes for s in spendings] == [
            (Outcome.SPENT, Outcome.SPENT, Outcome.REFUSED),
            (Outcome.REPEAT, Outcome.SPENT, Outcome.REFUSED),
        ]
        assert [s.spent for s in spendings] == [2.0, 2.0]
        assert store.ledger.budgets("r@example.org", "2026-12-07") == {"bb-1": 2.0, "bb-2": 2.0}
        assert store.ledger.spend_all([]) == []

    def test_a_lone_surrogate_in_a_subject_is_stored_escaped(self, store: StateStore) -> None:
        # An identity's subject may hold one (an OIDC claim, a key's name): the insert
        # must not fail with an encoding error, and the budget must still be kept.
        key = BudgetKey("oidc:\ud800x", "bb-1", "2026-12-07")
        spending = store.ledger.spend(key, [Charge("f1", 1.0), Charge("f2", 1.0)], 1.0)
        assert spending.outcomes == (Outcome.SPENT, Outcome.REFUSED)
        assert store.ledger.spend(key, [Charge("f1", 1.0)], 1.0).outcomes == (Outcome.REPEAT,)
        assert store.ledger.spent(key) == 1.0
        assert store.ledger.releases(key) == 1
        assert store.ledger.budgets("oidc:\ud800x", "2026-12-07") == {"bb-1": 1.0}

    # --- across processes ----------------------------------------------------------------

    @pytest.mark.parametrize("kind", ["bucket", "ledger"])
    def test_two_processes_share_one_bucket_and_one_budget(
        self, store: StateStore, store_url: str, kind: str
    ) -> None:
        takes = 100  # each; together more than the bucket or the budget holds
        command = [sys.executable, "-m", "tests.state.spender", store_url, kind, str(takes)]
        processes = [
            subprocess.Popen(
                [*command, tag], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, env=os.environ
            )
            for tag in ("one", "two")
        ]
        got = []
        for process in processes:
            out, _ = process.communicate(timeout=120)
            assert process.returncode == 0
            got.append(int(out))
        if kind == "bucket":
            assert sum(got) == spender.BUCKET.burst
            assert store.rate_buckets.tokens("ip:192.0.2.7") == pytest.approx(0.0)
        else:
            paid = int(spender.BUDGET_LIMIT / spender.EPSILON)
            assert sum(got) == paid
            assert store.ledger.spent(spender.BUDGET) == spender.BUDGET_LIMIT
            assert store.ledger.releases(spender.BUDGET) == paid
        assert all(g > 0 for g in got)  # both really spent: the test is not sequential


# --- where the store is, and its files -------------------------------------------------------


def test_the_default_store_is_state_db_in_the_data_folder(tmp_path: Path) -> None:
    url = state_url(None, tmp_path / "data", environ={})
    assert url.database == str(tmp_path / "data" / "state.db")


def test_the_password_comes_only_from_the_environment() -> None:
    with pytest.raises(StateUrlError, match=r"carries a password.*BIOFED_STATE_PASSWORD"):
        state_url("postgresql://biofed:secret@db:5432/biofed", Path("."), environ={})
    url = state_url(
        "postgresql://biofed@db:5432/biofed", Path("."), environ={"PGPASSWORD": "from-env"}
    )
    assert (url.drivername, url.password, url.host, url.port) == (
        "postgresql+psycopg",
        "from-env",
        "db",
        5432,
    )
    both = {"PGPASSWORD": "libpq", "BIOFED_STATE_PASSWORD": "ours"}
    assert state_url("postgresql://biofed@db/biofed", Path("."), environ=both).password == "ours"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://u@h/db", "neither sqlite:///path nor postgresql://"),
        ("postgresql://u@h", "names no database"),
        ("sqlite://", "names no file"),
        ("not a url", "is not a URL"),
    ],
)
def test_a_bad_state_url_is_named_in_the_error(value: str, message: str) -> None:
    with pytest.raises(StateUrlError, match=message):
        state_url(value, Path("."), environ={})


def test_the_sqlite_store_is_private_to_its_owner(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = open_state_store(None, tmp_path / "data")
        store.audit.append(audited("a@example.org"))
        with store.read() as db:  # keeps the -wal file open while we look
            db.execute(text("SELECT 1"))
            files = sorted((tmp_path / "data").iterdir())
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert modes["state.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes


def test_a_world_readable_store_from_before_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    create_state_engine(state_url(f"sqlite:///{path}", tmp_path)).dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# The sync tables as versions before the store wrote them into state.db (hand-written DDL).
PRE_STORE_STATE_DB = """
CREATE TABLE sync_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, biobank_id TEXT NOT NULL, kind TEXT NOT NULL,
  triggered_by TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
  outcome TEXT NOT NULL, read INTEGER NOT NULL DEFAULT 0, indexed INTEGER NOT NULL DEFAULT 0,
  rejected INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0,
  withdrawn INTEGER NOT NULL DEFAULT 0, duration_s REAL, generation TEXT, error TEXT);
CREATE INDEX sync_runs_biobank ON sync_runs (biobank_id, id);
CREATE TABLE quarantine (
  biobank_id TEXT NOT NULL, stream TEXT NOT NULL, record_key TEXT NOT NULL, source_id TEXT,
  position TEXT, field TEXT, value TEXT, reason TEXT NOT NULL, payload TEXT NOT NULL,
  run_id INTEGER NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
  PRIMARY KEY (biobank_id, stream, record_key));
CREATE TABLE checkpoints (
  biobank_id TEXT NOT NULL, stream TEXT NOT NULL, state TEXT NOT NULL,
  updated_at TEXT NOT NULL, PRIMARY KEY (biobank_id, stream));
INSERT INTO sync_runs (biobank_id, kind, triggered_by, started_at, outcome, read)
  VALUES ('bb-1', 'full', 'cli', '2026-11-30T10:00:00.000+00:00', 'succeeded', 42);
INSERT INTO checkpoints VALUES ('bb-1', 'samples', '{"pass": 3}', '2026-11-30T10:00:00');
"""


def adopted(folder: Path, script: str) -> StateStore:
    """The store opened on a state.db that `script` wrote with plain SQLite."""
    raw = sqlite3.connect(folder / "state.db")
    raw.executescript(script)
    raw.close()
    return open_state_store(None, folder)


def test_a_state_db_from_before_the_store_is_adopted(tmp_path: Path) -> None:
    store = adopted(tmp_path, PRE_STORE_STATE_DB)
    (run,) = store.runs.history()
    assert (run.biobank_id, run.read, run.outcome) == ("bb-1", 42, SUCCEEDED)
    assert store.checkpoints.get("bb-1", "samples") == {"pass": 3}
    assert store.runs.start("bb-1", "full", "cli") == run.id + 1
    store.audit.append(audited("a@example.org"))  # the tables added by the migration
    assert store.ledger.spent(BudgetKey("a", "b", "c")) == 0.0
    schema_version.check(store.engine)
    store.close()
