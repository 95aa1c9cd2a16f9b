"""Token buckets for the gateway's rate limit, shared by every process on every host.

A take is one short transaction that reads the bucket with its row locked (SELECT ... FOR
UPDATE on PostgreSQL; BEGIN IMMEDIATE holds SQLite's write lock), refills it for the time
since it was last touched, and takes its tokens: two gateways never spend the same token.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update

from federation.state.database import reading, upsert, writing
from federation.state.schema import rate_buckets

# A bucket untouched for a day is full under any sane rate; deleting it changes nothing.
IDLE_BUCKET_SECONDS = 86_400
PRUNE_EVERY_TAKES = 1000


@dataclass(frozen=True)
class Refill:
    """A bucket's size and how fast it refills."""

    burst: int
    per_second: float


class RateBuckets:
    """Token buckets by key (a signed-in subject or a client address)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._takes = 0
        self._lock = threading.Lock()

    def take(self, key: str, refill: Refill, at: float, count: float = 1.0) -> float | None:
        """Take `count` tokens at wall time `at`: None when allowed, else seconds to wait.

        More tokens than the burst are never there: the wait is then for a full bucket.
        """
        burst = float(refill.burst)
        wanted = min(count, burst)
        with writing(self.engine) as db:
            # A new bucket starts full; the insert is a no-op when another process made it.
            db.execute(
                upsert(db, rate_buckets)
                .values(key=key, tokens=burst, updated=at)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            tokens, updated = db.execute(
                select(rate_buckets.c.tokens, rate_buckets.c.updated)
                .where(rate_buckets.c.key == key)
                .with_for_update()
            ).one()
            elapsed = max(0.0, at - float(updated))
            tokens = min(burst, float(tokens) + elapsed * refill.per_second)
            if tokens < wanted:
                return (wanted - tokens) / refill.per_second
            db.execute(
                update(rate_buckets)
                .where(rate_buckets.c.key == key)
                .values(tokens=tokens - wanted, updated=max(at, float(updated)))
            )
        self._prune(at)
        return None

    def tokens(self, key: str) -> float | None:
        """The tokens left in a bucket when it was last touched (None: never used)."""
        with reading(self.engine) as db:
            value = db.execute(
                select(rate_buckets.c.tokens).where(rate_buckets.c.key == key)
            ).scalar_one_or_none()
        return None if value is None else float(value)

    def _prune(self, at: float) -> None:
        with self._lock:
            self._takes += 1
            due = self._takes % PRUNE_EVERY_TAKES == 0
        if due:
            with writing(self.engine) as db:
                db.execute(
                    delete(rate_buckets).where(rate_buckets.c.updated < at - IDLE_BUCKET_SECONDS)
                )
