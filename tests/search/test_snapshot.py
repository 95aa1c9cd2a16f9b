"""The embedded backend's shared snapshot, with real processes: a search during a publish is
answered from the previous snapshot, server processes share one snapshot file, and a build
killed half-way leaves the previous snapshot named and serving."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from federation.cli import main
from federation.faults import KILL_VARIABLE
from federation.search.documents import ARROW_SCHEMA
from federation.search.embedded import EmbeddedBackend
from federation.search.embedded.snapshot import (
    BUILD_LOCK,
    BUILD_PREFIX,
    KILLED_BUILD_POINT,
    TABLE,
    snapshot_folder,
)
from federation.search.query import Criteria
from tests.conftest import Federation
from tests.sync.test_sync import small_biobank

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # generous: the machine is shared; a stall shows as a missing answer

# A server process: answers "count" on stdin with the samples it finds and the snapshot
# files it has open (from /proc), one JSON line each.
SERVER = """
import json, os, sys, time
from pathlib import Path
from federation.search.embedded import EmbeddedBackend
from federation.search.query import Criteria
backend = EmbeddedBackend(Path(sys.argv[1]))
for line in sys.stdin:
    started = time.perf_counter()
    answer = backend.answer(Criteria())
    seconds = time.perf_counter() - started
    fds = Path('/proc/self/fd')
    opened = set()
    for fd in fds.iterdir():
        try:
            opened.add(os.readlink(fd))
        except OSError:
            pass  # closed while listed (the listing's own descriptor): not an open file
    files = sorted(p for p in opened if p.endswith('.duckdb') or '.duckdb ' in p)
    samples = sum(cell.samples for cell in answer.by_biobank.values())
    print(json.dumps({'samples': samples, 'files': files, 'seconds': seconds}), flush=True)
"""

# A sync's publish of one generation of `rows` samples, in its own process.
PUBLISHER = """
import sys
from pathlib import Path
from tests.search.test_snapshot import publish
publish(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
"""


def rows(count: int) -> list[dict[str, Any]]:
    blank: dict[str, Any] = {name: None for name in ARROW_SCHEMA.names}
    return [
        {
            **blank,
            "biobank_id": "x",
            "sample_id": f"s{n}",
            "donor_id": f"d{n}",
            "donor_ord": n,
            "withdrawn": False,
            "sex": "FEMALE",
        }
        for n in range(count)
    ]


def publish(root: Path, count: int, biobank_id: str = "x") -> None:
    """Publish a generation of a biobank with `count` samples, as a sync does."""
    backend = EmbeddedBackend(root)
    try:
        with backend.generation_writer(biobank_id) as writer:
            writer.add([{**row, "biobank_id": biobank_id} for row in rows(count)])
            writer.publish()
    finally:
        backend.close()


def publisher(root: Path, count: int, biobank_id: str = "x", **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(root), str(count), biobank_id],
        cwd=ROOT,
        env={**os.environ, **env},
        text=True,
    )


class Server:
    """A server process searching the store."""

    def __init__(self, root: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(root)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], WAIT_S)
        assert ready, f"no answer within {WAIT_S} s: the search stalled"
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@contextmanager
def servers(root: Path, count: int) -> Iterator[list[Server]]:
    started = [Server(root) for _ in range(count)]
    try:
        yield started
    finally:
        for server in started:
            server.close()


@contextmanager
def build_in_flight(root: Path) -> Iterator[None]:
    """Hold the build lock as a long build would: publishers wait for it."""
    folder = snapshot_folder(EmbeddedBackend(root).store)
    with (folder / BUILD_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    return data


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_search_during_a_publish_is_answered_from_the_previous_snapshot(
    tmp_path: Path,
) -> None:
    publish(tmp_path, 3)
    first = manifest(tmp_path)
    with servers(tmp_path, 1) as (server,):
        assert server.ask()["samples"] == 3
        with build_in_flight(tmp_path):
            running = publisher(tmp_path, 5)
            # The generation is named in the manifest; its snapshot waits for the build.
            wait_for(lambda: manifest(tmp_path)["version"] > first["version"], "the publish")
            during = server.ask()
            assert during["samples"] == 3  # the previous snapshot, not a stall
            assert running.poll() is None  # the publish has not returned yet
        assert running.wait(WAIT_S) == 0
        after = server.ask()
        assert after["samples"] == 5  # what the publish published, once it returned
        named = manifest(tmp_path)["snapshot"]["file"]
        assert [Path(f).name for f in after["files"]] == [named]


def test_a_biobank_published_while_its_build_waits_is_not_reported_gone(tmp_path: Path) -> None:
    publish(tmp_path, 3)
    backend = EmbeddedBackend(tmp_path)
    try:
        assert backend.answer(Criteria()).covered == {"x"}
        with build_in_flight(tmp_path):
            running = publisher(tmp_path, 2, "y")
            wait_for(lambda: "y" in manifest(tmp_path)["biobanks"], "the publish")
            # Answered as the previous state had it: y has no rows yet, and is not missing.
            answer = backend.answer(Criteria())
            assert answer.covered == {"x", "y"}
            assert {bb: cell.samples for bb, cell in answer.by_biobank.items()} == {"x": 3}
        assert running.wait(WAIT_S) == 0
        answer = backend.answer(Criteria())
        assert {bb: cell.samples for bb, cell in answer.by_biobank.items()} == {"x": 3, "y": 2}
    finally:
        backend.close()


def test_a_search_in_flight_finishes_on_the_snapshot_it_started_on(tmp_path: Path) -> None:
    publish(tmp_path, 3)
    backend = EmbeddedBackend(tmp_path)
    try:
        with backend._reading() as (snapshot, db, _):
            # Two publishes in other processes: the file this search reads is deleted.
            for count in (4, 5):
                assert publisher(tmp_path, count).wait(WAIT_S) == 0
            assert not (snapshot_folder(backend.store) / snapshot.name).exists()
            assert backend.answer(Criteria()).by_biobank["x"].samples == 5
            ((count,),) = db.execute(f"SELECT count(*) FROM {TABLE}").fetchall()
            assert count == 3
        assert snapshot.retired and snapshot.users == 0
    finally:
        backend.close()


def test_server_processes_share_one_snapshot_file(tmp_path: Path) -> None:
    publish(tmp_path, 3)
    with servers(tmp_path, 2) as both:
        named = (
            snapshot_folder(EmbeddedBackend(tmp_path).store)
            / manifest(tmp_path)["snapshot"]["file"]
        )
        for answer in [server.ask() for server in both]:
            # Each has the published file open read-only, and no database of its own.
            assert (answer["samples"], answer["files"]) == (3, [str(named)])
        assert publisher(tmp_path, 5).wait(WAIT_S) == 0
        renamed = (
            snapshot_folder(EmbeddedBackend(tmp_path).store)
            / manifest(tmp_path)["snapshot"]["file"]
        )
        assert renamed != named
        for answer in [server.ask() for server in both]:
            assert (answer["samples"], answer["files"]) == (5, [str(renamed)])


def test_a_killed_build_leaves_the_previous_snapshot_serving(tmp_path: Path) -> None:
    publish(tmp_path, 3)
    serving = manifest(tmp_path)["snapshot"]
    with servers(tmp_path, 1) as (server,):
        assert server.ask()["samples"] == 3
        killed = publisher(tmp_path, 5, **{KILL_VARIABLE: KILLED_BUILD_POINT})
        assert killed.wait(WAIT_S) == -signal.SIGKILL
        # The new generation is in the manifest; the half-made snapshot is not named.
        after = manifest(tmp_path)
        assert after["version"] > serving["version"]
        assert after["snapshot"] == serving
        folder = snapshot_folder(EmbeddedBackend(tmp_path).store)
        assert list(folder.glob(f"{BUILD_PREFIX}*"))  # left by the killed build
        assert (folder / serving["file"]).exists()
        # The running server keeps answering from the previous snapshot, without a stall.
        assert server.ask()["samples"] == 3
        # A process starting on the store finds nobody left to build it and builds it (as
        # the killed publisher would have); the killed build's file goes, and the running
        # server follows the manifest to the new snapshot.
        with servers(tmp_path, 1) as (started,):
            assert started.ask()["samples"] == 5
        assert manifest(tmp_path)["snapshot"]["version"] == after["version"]
        assert not list(folder.glob(f"{BUILD_PREFIX}*"))
        assert server.ask()["samples"] == 5


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_sync_of_many_biobanks_builds_one_snapshot(federation: Federation, jobs: str) -> None:
    for biobank_id in ("bb1", "bb2", "bb3"):
        small_biobank(federation, biobank_id)
    federation.write()
    folders = ["--data-dir", str(federation.settings.data_dir)]
    folders += ["--network", str(federation.root / "network.yaml")]
    done = CliRunner().invoke(main, [*folders, "sync", "--all", "--jobs", jobs, "--no-progress"])
    assert done.exit_code == 0, done.output
    backend = federation.runtime.backend
    assert isinstance(backend, EmbeddedBackend)
    published = backend.store.read_manifest()
    # Three publishes, one build, covering all three once the sync returned.
    assert published["version"] == published["snapshot"]["version"] == 3
    assert published["snapshot"]["previous"] is None
    assert len(list(snapshot_folder(backend.store).glob("snapshot-*.duckdb"))) == 1
    answer = backend.answer(Criteria())
    assert {bb: cell.samples for bb, cell in answer.by_biobank.items()} == {
        "bb1": 3,
        "bb2": 3,
        "bb3": 3,
    }


@pytest.mark.parametrize("threads", ["1", "3"])
def test_the_server_settings_reach_the_reader_connection(tmp_path: Path, threads: str) -> None:
    from federation.runtime import Runtime
    from federation.settings import load_settings

    publish(tmp_path / "index", 3)
    settings = load_settings(
        read_files=False,
        environ={"BIOFED_DATA_DIR": str(tmp_path), "BIOFED_EMBEDDED_THREADS": threads},
    )
    runtime = Runtime(settings)
    backend = runtime.backend
    assert isinstance(backend, EmbeddedBackend)
    try:
        assert sum(c.samples for c in backend.answer(Criteria()).by_biobank.values()) == 3
        with backend._reading() as (_snapshot, db, _covered):
            found = db.execute(
                "SELECT current_setting('threads'), current_setting('memory_limit')"
            ).fetchone()
        assert found is not None
        assert found[0] == int(threads)
        # 500MB as DuckDB shows it (in MiB), the bound each server process keeps.
        assert found[1] == "476.8 MiB"
    finally:
        backend.close()
