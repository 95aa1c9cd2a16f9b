"""The rate limit: token buckets per caller, shared by every worker process on the host."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from federation.disclosure.roles import Identity
from federation.sqlite_wal import use_wal

log = logging.getLogger(__name__)

RATE_LIMIT_FILE = "ratelimit.db"


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `burst` requests at once, refilled at `per_minute`."""

    per_minute: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


def client_address(remote_addr: str | None, forwarded_for: str | None, hops: int) -> str:
    """The client's IP: REMOTE_ADDR, or X-Forwarded-For as seen by the nearest trusted proxy.

    Only the last `hops` entries were written by proxies we run; anything before them was
    sent by the client and could name any address.
    """
    if hops > 0 and forwarded_for:
        entries = [e.strip() for e in forwarded_for.split(",") if e.strip()]
        if len(entries) >= hops:
            return entries[-hops]
    return remote_addr or "unknown"


def rate_key(identity: Identity, client_ip: str) -> str:
    """Whose bucket a request draws from: the signed-in subject, else the client's IP."""
    if identity.authenticated:
        return f"{identity.via}:{identity.subject}"
    return f"ip:{client_ip}"


_BUCKETS = """
CREATE TABLE IF NOT EXISTS buckets (
  key TEXT PRIMARY KEY,
  tokens REAL NOT NULL,
  updated REAL NOT NULL
) WITHOUT ROWID;
"""

# Buckets untouched this long are full again; deleting them changes nothing.
_PRUNE_EVERY = 1000


class RateLimiter:
    """Token buckets in a small SQLite file shared by every worker process on the host.

    Each take is one short write transaction (WAL, BEGIN IMMEDIATE), so gunicorn workers
    agree on the remaining tokens. If the file cannot be written the request is let
    through and a warning logged: the rate limit protects capacity, and an outage of the
    limiter must not become an outage of the search.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock  # wall time: the only clock the worker processes share
        self._ready = False
        self._takes = 0
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=2, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")  # losing a second of buckets in a crash is fine
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            use_wal(db)
            db.executescript(_BUCKETS)
            self._ready = True
        return db

    def take(self, key: str, rate: RateLimit, tokens_taken: float = 1.0) -> float | None:
        """Take tokens from `key`'s bucket (one by default): None when allowed, else seconds
        to wait. More tokens than the burst are never there: the wait is for a full bucket."""
        now = self._clock()
        try:
            db = self._connect()
        except sqlite3.Error as err:
            log.warning("rate limiter store %s unusable, not limiting: %s", self.path, err)
            return None
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT tokens, updated FROM buckets WHERE key = ?", (key,)).fetchone()
            tokens = float(rate.burst)
            if row is not None:
                elapsed = max(0.0, now - float(row[1]))
                tokens = min(float(rate.burst), float(row[0]) + elapsed * rate.per_second)
            wanted = min(tokens_taken, float(rate.burst))
            if tokens < wanted:
                db.execute("ROLLBACK")
                return (wanted - tokens) / rate.per_second
            db.execute(
                "INSERT INTO buckets (key, tokens, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, "
                "updated = excluded.updated",
                (key, tokens - wanted, now),
            )
            db.execute("COMMIT")
            self._prune(db, now, rate)
            return None
        except sqlite3.Error as err:
            log.warning("rate limiter store %s failed, not limiting: %s", self.path, err)
            return None
        finally:
            db.close()

    def _prune(self, db: sqlite3.Connection, now: float, rate: RateLimit) -> None:
        with self._lock:
            self._takes += 1
            due = self._takes % _PRUNE_EVERY == 0
        if due:
            # Generous: a bucket idle for a day is full under any sane configuration.
            db.execute("DELETE FROM buckets WHERE updated < ?", (now - 86_400,))
