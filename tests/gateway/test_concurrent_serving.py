"""Concurrent searches under gunicorn's threaded workers, and the audit log's group commit.

gunicorn serves with `gthread` (threads per worker, federation/gunicorn_conf.py): DuckDB
cursors, the parse cache, the limits and the audit log's writer thread are shared by the
threads of a worker. Many clients at once must get the same answers as one client alone,
every answered search must have its row, and a row must be committed before its answer
leaves: killing the server right after the answers arrived loses none of them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federation import PROJECT_ROOT
from federation.gateway import create_app, endpoint
from federation.gateway.auth import issue_api_key
from federation.runtime import Runtime
from federation.search import audit_commit
from federation.search.audit import AuditLog
from federation.search.audit_commit import CommitFailed, GroupCommit
from federation.settings import Settings, load_settings
from federation.state.audit_trail import AuditRecord, AuditTrail
from federation.state.database import STATE_FILE
from federation.state.store import open_state_store
from federation.sync.run import sync_biobank
from tests.gateway.access import headers, with_test_access
from tests.gateway.conftest import C50_FEMALE, graphql, only_error, write_network
from tests.support.server import free_port, wait_until_up
from tests.support.server import graphql as post_graphql

SEARCHES = {
    "c50_female": """{ search(query: {diseases: ["C50"], sexes: ["FEMALE"]}) {
        byBiobank { biobank { id } donors { value } samples { value } } } }""",
    "with_purpose": """{ search(query: {diseases: ["C50"], sexes: ["FEMALE"]},
        purpose: {kind: DISEASE, diseases: ["C50"], commercial: false}) { samples { value }
        byBiobank { biobank { id } consent { outcome samples { value } } } } }""",
    "landing": """{ search(query: {}) { donors { value } samples { value }
        facets { name buckets { key samples { value } } } } }""",
    "records": """{ search(query: {diseases: ["C50"]}) {
        records(first: 3) { nodes { sampleId } totalCount } } }""",
}
CLIENTS = 8
SLOW_MACHINE_DEADLINE_S = 120
ROUNDS = 6


@dataclass
class Served:
    """gunicorn over the two-biobank network: its URL, an operator key, the data folder."""

    url: str
    key: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL the master and its workers (the session it was started in)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """gunicorn with 2 workers and the configured threads; stopped at the end."""
    root = tmp_path_factory.mktemp("concurrent")
    network = write_network(root)
    settings = load_settings(
        overrides={"data_dir": str(root / "data"), "network": str(network)},
        read_files=False,
        environ={},
    )
    runtime = Runtime(settings)
    for source in runtime.network().biobanks:
        sync_biobank(source, runtime.backend, runtime.state, locks_dir=settings.locks_dir)
    runtime.backend.close()
    operator = issue_api_key("ops@network", operator=True)
    port = free_port()
    env = {
        **os.environ,
        "BIOFED_DATA_DIR": str(root / "data"),
        "BIOFED_NETWORK": str(network),
        "BIOFED_HOST": "127.0.0.1",
        "BIOFED_PORT": str(port),
        "BIOFED_WORKERS": "2",
        "BIOFED_AUTH": json.dumps({"api_keys": [operator.entry]}),
        "BIOFED_LIMITS": json.dumps({"rate_limit": {"enabled": False}}),
    }
    log = root / "server.log"
    command = [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Served(f"http://127.0.0.1:{port}", operator.key, root / "data", process)
    try:
        wait_until_up(server.url, process, log, 120)
        yield server
    finally:
        server.kill()


def _answer(server: Served, name: str) -> dict[str, Any]:
    body = post_graphql(server.url, SEARCHES[name], headers={"X-API-Key": server.key})
    assert "errors" not in body, body
    body.pop("extensions", None)
    return body


def _rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / STATE_FILE) as db:
        return int(db.execute("SELECT count(*) FROM audit_searches").fetchone()[0])


def test_concurrent_searches_answer_alike_and_every_answer_is_on_disk_before_a_crash(
    served: Served,
) -> None:
    alone = {name: _answer(served, name) for name in SEARCHES}
    released = {
        row["biobank"]["id"]: (row["donors"]["value"], row["samples"]["value"])
        for row in alone["c50_female"]["data"]["search"]["byBiobank"]
    }
    assert released == C50_FEMALE  # the figures of tests/gateway/conftest.py, counted by hand
    before = _rows(served.data_dir)
    names = [name for _ in range(ROUNDS) for name in SEARCHES] * CLIENTS
    start = threading.Barrier(CLIENTS)

    def client(part: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        start.wait()
        return [(name, _answer(served, name)) for name in part]

    with ThreadPoolExecutor(CLIENTS) as pool:
        parts = list(pool.map(client, [names[n::CLIENTS] for n in range(CLIENTS)]))
    answers = [answer for part in parts for answer in part]
    assert len(answers) == len(names)
    for name, body in answers:
        assert body == alone[name], name
    # Every answer received had its row committed first: killing every server process now,
    # before it could write anything later, leaves one row per answered search.
    served.kill()
    assert _rows(served.data_dir) == before + len(names)


# --- the group commit -------------------------------------------------------------------


def _record(n: int) -> AuditRecord:
    return AuditRecord(
        at=f"2026-12-07T09:00:{n:02d}.000+00:00",
        subject=f"researcher{n}@example.org",
        via="api_key",
        roles=("registered",),
        admin_of=(),
        approved_for=(),
        client_ip="192.0.2.1",
        filters={"diseases": ["C50"]},
        purpose=None,
        released=(),
        records_returned=False,
        record_count=0,
    )


def test_rows_queued_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    trail = open_state_store(None, tmp_path).audit
    batches: list[int] = []
    first_started, release_first = threading.Event(), threading.Event()

    def write_many(records: Sequence[AuditRecord]) -> list[int]:
        batches.append(len(records))
        if len(batches) == 1:
            first_started.set()
            release_first.wait(30)
        return trail.append_many(records)

    commits = GroupCommit(write_many)
    first = commits.submit(_record(0))
    assert first_started.wait(30)
    queued = [commits.submit(_record(n)) for n in range(1, 6)]
    release_first.set()
    ids = [first.wait()] + [r.wait() for r in queued]
    assert batches == [1, 5]  # five searches, one commit
    assert len(set(ids)) == 6
    page, _ = trail.page(10)
    assert sorted(r.subject for r in page) == sorted(f"researcher{n}@example.org" for n in range(6))


def test_a_failed_commit_refuses_its_rows_and_the_next_commit_writes(tmp_path: Path) -> None:
    store = open_state_store(None, tmp_path / "one")
    trail: AuditTrail = store.audit
    commits = GroupCommit(trail.append_many)
    assert commits.submit(_record(0)).wait() > 0
    trail.engine.dispose()
    for path in (tmp_path / "one").glob(f"{STATE_FILE}*"):
        path.unlink()
    (tmp_path / "one" / STATE_FILE).mkdir()  # a folder where the database should be
    with pytest.raises(CommitFailed):
        commits.submit(_record(1)).wait()
    (tmp_path / "one" / STATE_FILE).rmdir()
    mended = open_state_store(None, tmp_path / "one").audit
    commits.write_many = mended.append_many
    assert commits.submit(_record(2)).wait() > 0


def test_an_idle_writer_ends_and_the_next_row_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every runtime has its log; an idle writer must not keep a thread and a connection.
    monkeypatch.setattr(audit_commit, "WRITER_IDLE_SECONDS", 0.05)
    trail = open_state_store(None, tmp_path).audit
    commits = GroupCommit(trail.append_many)
    first = commits.submit(_record(0)).wait()
    writers = [t for t in threading.enumerate() if t.name == "biofed-audit"]
    for writer in writers:
        writer.join(10)
    assert not any(t.is_alive() for t in writers)
    assert commits.submit(_record(1)).wait() > first
    assert len(trail.page(10)[0]) == 2


# --- an answer whose row cannot be written does not leave ---------------------------------


def test_a_query_whose_row_cannot_be_committed_returns_no_data(
    synced_settings: Settings, tmp_path: Path
) -> None:
    # A deadline (so the search runs in the execution pool, as served) that a loaded test
    # machine does not reach: the refusal must be the audit log's, not a TIMEOUT.
    settings = with_test_access(synced_settings, timeout_seconds=SLOW_MACHINE_DEADLINE_S)
    app = create_app({"settings": settings, "TESTING": True})
    client = app.test_client()
    broken = AuditLog(open_state_store(None, tmp_path).audit)
    broken.trail.engine.dispose()
    for path in tmp_path.glob(f"{STATE_FILE}*"):
        path.unlink()
    (tmp_path / STATE_FILE).mkdir()
    app.extensions[endpoint.AUDIT_EXTENSION] = broken
    body = graphql(client, SEARCHES["c50_female"], headers=headers("operator"))
    assert body.get("data") is None  # not even part of the answer
    assert only_error(body)["extensions"]["code"] == "BACKEND_UNAVAILABLE"
    assert "audit log" in only_error(body)["message"]
    app.extensions["biofed"].backend.close()
