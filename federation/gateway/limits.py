"""Request limits: depth, cost, page size, introspection, a deadline, and a rate limit.

Everything that can be judged from the document is judged after validation and before
execution (federation/gateway/cost.py); a request runs under a deadline; each caller
draws from a rate limit bucket (federation/gateway/ratelimit.py). The `limits` settings
section is read with marshmallow. See docs/access.md for the numbers and the reasons.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql import DocumentNode, GraphQLResolveInfo, GraphQLSchema, OperationDefinitionNode
from marshmallow import ValidationError, fields, post_load

from federation.disclosure.roles import Identity
from federation.errors import Forbidden
from federation.gateway.cost import CostLimitExceeded, QueryCost, measure
from federation.gateway.errors import ErrorCode, GatewayError
from federation.gateway.ratelimit import RateLimit, RateLimiter, rate_key
from federation.model.config import (
    Flag,
    PositiveNumber,
    SectionSchema,
    WholeNumber,
    section_errors,
)
from federation.search.delivery import answering_within
from federation.settings import SettingsError
from federation.state.rate_buckets import RateBuckets

T = TypeVar("T")

DEFAULT_MAX_DEPTH = 10
DEFAULT_COST_BUDGET = 1000
DEFAULT_TIMEOUT_SECONDS = 10.0
# Executions run in a bounded pool per process so that a request can stop waiting at its
# deadline; a pool this size is a little above gunicorn's threads per worker (4).
DEFAULT_EXECUTION_THREADS = 8
# Searches one request may carry: each is a question of its own (its own rate-limit token and
# privacy budget), and aliases must not turn one request into an averaging attack.
DEFAULT_MAX_SEARCHES_PER_REQUEST = 5
DEFAULT_ANONYMOUS_RATE = RateLimit(per_minute=120, burst=60)
DEFAULT_SIGNED_IN_RATE = RateLimit(per_minute=600, burst=120)


class TooManySearches(GatewayError):
    """The operation carries more `search` fields (aliases included) than one request may."""

    code = ErrorCode.TOO_MANY_SEARCHES


class SearchesRateLimited(GatewayError):
    """The caller's bucket cannot pay for every search of the request: 429."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, wait: float) -> None:
        super().__init__(f"too many searches; try again in {wait:.0f} s")
        self.wait = wait


class RequestTimeout(GatewayError):
    """The request ran past its deadline."""

    code = ErrorCode.TIMEOUT


# --- configuration -------------------------------------------------------------------------


class _RateSchema(SectionSchema):
    per_minute = PositiveNumber(required=True, error_messages={"required": "missing"})
    burst = WholeNumber(1, load_default=1)

    @post_load
    def _rate(self, data: dict[str, Any], **kwargs: Any) -> RateLimit:
        return RateLimit(data["per_minute"], data["burst"])


class _RateLimitSchema(SectionSchema):
    enabled = Flag()
    anonymous = fields.Nested(_RateSchema, allow_none=True)
    signed_in = fields.Nested(_RateSchema, allow_none=True)


class _LimitsSchema(SectionSchema):
    max_depth = WholeNumber(1)
    cost_budget = WholeNumber(1)
    max_searches_per_request = WholeNumber(1)
    execution_threads = WholeNumber(1)
    trusted_proxy_hops = WholeNumber(0)
    timeout_seconds = PositiveNumber(allow_none=True)
    introspection = Flag()
    rate_limit = fields.Nested(_RateLimitSchema, allow_none=True)


@dataclass(frozen=True)
class LimitsConfig:
    """The `limits` settings section, validated."""

    max_depth: int = DEFAULT_MAX_DEPTH
    cost_budget: int = DEFAULT_COST_BUDGET
    max_searches_per_request: int = DEFAULT_MAX_SEARCHES_PER_REQUEST
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS
    execution_threads: int = DEFAULT_EXECUTION_THREADS
    introspection: bool = True
    # How many proxies in front of the gateway append to X-Forwarded-For; 0 = trust none.
    trusted_proxy_hops: int = 0
    rate_limit: bool = True
    anonymous: RateLimit = DEFAULT_ANONYMOUS_RATE
    signed_in: RateLimit = DEFAULT_SIGNED_IN_RATE

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> LimitsConfig:
        """Validate the `limits` section; errors name the setting and the value."""
        try:
            values: dict[str, Any] = _LimitsSchema().load(raw)
        except ValidationError as err:
            raise SettingsError("; ".join(section_errors(err.messages, "limits"))) from None
        rate = values.pop("rate_limit", None) or {}
        if "enabled" in rate:
            values["rate_limit"] = rate["enabled"]
        for name in ("anonymous", "signed_in"):
            if rate.get(name) is not None:
                values[name] = rate[name]
        return cls(**values)


# --- the deadline -------------------------------------------------------------------------


class Deadline:
    """A wall-clock deadline for one request; also a GraphQL middleware that enforces it.

    As middleware it refuses to start any resolver once the deadline has passed, so an
    execution the request has stopped waiting for does no further backend rounds.
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._at = None if seconds is None else clock() + seconds
        # Who settled the request first: a search claiming delivery of its answer, or the
        # waiter giving up at the deadline (federation/search/delivery.py).
        self._settle = threading.Lock()
        self._claimed = False
        self._abandoned = False

    def claim(self) -> bool:
        """A search's answer is about to be spent and audited: True if it will be delivered."""
        with self._settle:
            if self._abandoned or self.expired():
                self._abandoned = True
                return False
            self._claimed = True
            return True

    def abandon(self) -> bool:
        """The waiter stops waiting: True unless a search already claimed delivery."""
        with self._settle:
            if self._claimed:
                return False
            self._abandoned = True
            return True

    def remaining(self) -> float | None:
        """Seconds left, never negative; None without a deadline."""
        return None if self._at is None else max(0.0, self._at - self._clock())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self._at is not None and self._clock() >= self._at

    def error(self) -> RequestTimeout:
        """The TIMEOUT error for this deadline."""
        return RequestTimeout(
            f"the request took longer than {self.seconds:g} s and was stopped; "
            "narrow the query or ask for fewer records",
            timeout={"seconds": self.seconds},
        )

    def resolve(
        self, next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo, **args: Any
    ) -> Any:
        """Middleware: run the resolver unless the deadline has passed.

        Past it, the fields of an answer already claimed for delivery (spent and audited)
        still resolve, so the client receives what the audit log says it was answered;
        no new top-level field starts.
        """
        if self.expired() and (info.path.prev is None or not self._claimed):
            raise self.error()
        return next_(root, info, **args)


_pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    # One pool per process and size, built after gunicorn forks (the app is built there).
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = concurrent.futures.ThreadPoolExecutor(threads, "biofed-graphql")
            _pools[threads] = pool
        return pool


def run_with_deadline(function: Callable[[], T], deadline: Deadline, threads: int) -> T:
    """Run `function` in the execution pool; stop waiting for it at the deadline.

    A thread cannot be killed, so a backend call in flight runs to its end in the pool (the
    engine client has its own timeout; an embedded DuckDB query is bounded by the data
    size). The pool's size bounds how many such leftovers a process can hold; a request
    queued behind them waits only until its own deadline and is then dropped unrun.
    """
    remaining = deadline.remaining()
    if remaining is None:
        return function()

    def within() -> T:
        with answering_within(deadline):
            return function()

    future = _pool(threads).submit(contextvars.copy_context().run, within)
    try:
        return future.result(timeout=remaining)
    except concurrent.futures.TimeoutError:
        if not deadline.abandon():
            # A search already spent its budget and was audited as answered: deliver it
            # (later fields were refused by the middleware and carry TIMEOUT errors).
            return future.result()
        future.cancel()
        raise deadline.error() from None


# --- the limits of one app ----------------------------------------------------------------


@dataclass
class Limits:
    """One app's limits: the document checks, the deadline and the rate limiter."""

    config: LimitsConfig
    buckets: RateBuckets | None  # the state store's rate-limit buckets; None: no rate limit
    rate_limiter: RateLimiter | None = field(init=False)

    def __post_init__(self) -> None:
        self.rate_limiter = None
        if self.config.rate_limit and self.buckets is not None:
            self.rate_limiter = RateLimiter(self.buckets)

    def check(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
        identity: Identity,
    ) -> QueryCost:
        """Judge a validated operation before it runs; raise the first limit it breaks."""
        shape = measure(schema, document, operation, variables, max_depth=self.config.max_depth)
        if shape.introspection and not self.config.introspection and not identity.operator:
            raise Forbidden(
                "introspection (__schema, __type) is switched off on this server; the schema "
                "is published as schema/schema.graphql"
            )
        cost = QueryCost(shape.cost, self.config.cost_budget, shape.searches)
        if cost.requested > cost.budget:
            raise CostLimitExceeded(
                f"the query costs {cost.requested}, over the budget of {cost.budget} "
                "(search 10 each; records, syncRuns and quarantine 1 per item asked for with "
                "`first`; facets 5 each or 20 for all); split it or ask for fewer items",
                cost=cost.as_extension(),
            )
        limit = self.config.max_searches_per_request
        if shape.searches > limit:
            raise TooManySearches(
                f"the request carries {shape.searches} `search` fields (aliases count one "
                f"each); at most {limit} are allowed per request: send the others separately",
                searches={"limit": limit, "sent": shape.searches},
            )
        return cost

    def deadline(self) -> Deadline:
        """A new deadline for a request starting now."""
        return Deadline(self.config.timeout_seconds)

    def run(self, function: Callable[[], T], deadline: Deadline) -> T:
        """Run an execution under the deadline (see `run_with_deadline`)."""
        return run_with_deadline(function, deadline, self.config.execution_threads)

    def admit(self, identity: Identity, client_ip: str) -> float | None:
        """Charge one request to the caller's bucket: None to go ahead, else Retry-After."""
        if self.rate_limiter is None:
            return None
        rate = self.config.signed_in if identity.authenticated else self.config.anonymous
        return self.rate_limiter.take(rate_key(identity, client_ip), rate)

    def charge_searches(self, identity: Identity, client_ip: str, searches: int) -> None:
        """Charge every search after the first (which `admit` paid with the request) to the
        caller's bucket; raise `SearchesRateLimited` when the bucket cannot pay."""
        if self.rate_limiter is None or searches <= 1:
            return
        rate = self.config.signed_in if identity.authenticated else self.config.anonymous
        wait = self.rate_limiter.take(rate_key(identity, client_ip), rate, searches - 1)
        if wait is not None:
            raise SearchesRateLimited(wait)
