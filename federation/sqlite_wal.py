"""Switch a SQLite file to write-ahead logging, waiting out another process that holds it.

SQLite does not call its busy handler for every lock a journal-mode switch needs: when two
processes open a new file at once, one of them can get "database is locked" at once from
`PRAGMA journal_mode=WAL` although its busy timeout is 30 s (seen in CI: two sync processes
starting together on a fresh data folder). The mode is kept in the file, so the switch is
retried here until it holds or the wait is over.
"""

from __future__ import annotations

import sqlite3
import time

WAL_WAIT_SECONDS = 30.0
_RETRY_PAUSE_SECONDS = 0.05


def use_wal(db: sqlite3.Connection, wait_seconds: float = WAL_WAIT_SECONDS) -> None:
    """Put `db`'s file in WAL mode, retrying while another connection holds a lock on it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(_RETRY_PAUSE_SECONDS)
