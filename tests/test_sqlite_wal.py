"""Many processes opening one new SQLite file at once all get it in WAL mode."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from federation.sqlite_wal import use_wal

PROCESSES = 8
ROUNDS = 5


def _open_and_write(path: str, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait()
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    use_wal(db)
    db.execute("CREATE TABLE IF NOT EXISTS opened (pid INTEGER)")
    db.execute("INSERT INTO opened VALUES (1)")
    db.close()


def test_processes_opening_a_new_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"state-{round_}.db")
        start = context.Barrier(PROCESSES)
        workers = [
            context.Process(target=_open_and_write, args=(path, start)) for _ in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [worker.exitcode for worker in workers] == [0] * PROCESSES
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT count(*) FROM opened").fetchone() == (PROCESSES,)
        db.close()
