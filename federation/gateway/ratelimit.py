"""The rate limit: token buckets per caller, shared by every worker process and host."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from federation.disclosure.roles import Identity
from federation.state.rate_buckets import RateBuckets, Refill

log = logging.getLogger(__name__)


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


class RateLimiter:
    """Token buckets in the state store, shared by every worker process on every host.

    Each take is one short write transaction in the store (`federation/state/rate_buckets.py`),
    so gunicorn workers and gateways on one PostgreSQL agree on the remaining tokens. If the
    store cannot be written the request is let through and a warning logged: the rate limit
    protects capacity, and an outage of the limiter must not become an outage of the search.
    """

    def __init__(self, buckets: RateBuckets, clock: Callable[[], float] = time.time) -> None:
        self.buckets = buckets
        self._clock = clock  # wall time: the only clock the processes and hosts share

    def take(self, key: str, rate: RateLimit, tokens_taken: float = 1.0) -> float | None:
        """Take tokens from `key`'s bucket (one by default): None when allowed, else seconds
        to wait. More tokens than the burst are never there: the wait is for a full bucket."""
        refill = Refill(burst=rate.burst, per_second=rate.per_second)
        try:
            return self.buckets.take(key, refill, self._clock(), tokens_taken)
        except (SQLAlchemyError, OSError) as err:
            log.warning("rate limiter store unusable, not limiting: %s", err)
            return None
