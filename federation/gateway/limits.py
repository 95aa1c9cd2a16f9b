"""Request limits: depth, cost, page size, introspection, a deadline, and a rate limit.

Everything that can be judged from the document is judged after validation and before
execution (saleor's query cost validator is the model): the operation is walked the way
execution will walk it (graphql-core's own field collection, so aliases, named and inline
fragments and @skip/@include count exactly as they will run), and the walk stops as soon
as it passes the depth limit, so even a fragment cycle that validation had missed could
not make it run away. See docs/access.md for the numbers and the reasons behind them.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    get_argument_values,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields

from federation.disclosure.roles import Identity
from federation.errors import BadInput, Forbidden
from federation.gateway.errors import ErrorCode, GatewayError
from federation.search.query import FACETS, MAX_PAGE_SIZE
from federation.settings import SettingsError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_DEPTH = 10
DEFAULT_COST_BUDGET = 1000
DEFAULT_TIMEOUT_SECONDS = 10.0
# Executions run in a bounded pool per process so that a request can stop waiting at its
# deadline; a pool this size is a little above gunicorn's threads per worker (4).
DEFAULT_EXECUTION_THREADS = 8
RATE_LIMIT_FILE = "ratelimit.db"
PAGE_ARGUMENT = "first"
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class DepthLimitExceeded(GatewayError):
    """The operation nests fields deeper than the limit."""

    code = ErrorCode.DEPTH_LIMIT_EXCEEDED


class CostLimitExceeded(GatewayError):
    """The operation's computed cost is over the budget."""

    code = ErrorCode.COST_LIMIT_EXCEEDED


class RequestTimeout(GatewayError):
    """The request ran past its deadline."""

    code = ErrorCode.TIMEOUT


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `burst` requests at once, refilled at `per_minute`."""

    per_minute: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True)
class LimitsConfig:
    """The `limits` settings section, validated."""

    max_depth: int = DEFAULT_MAX_DEPTH
    cost_budget: int = DEFAULT_COST_BUDGET
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS
    execution_threads: int = DEFAULT_EXECUTION_THREADS
    introspection: bool = True
    # How many proxies in front of the gateway append to X-Forwarded-For; 0 = trust none.
    trusted_proxy_hops: int = 0
    rate_limit: bool = True
    anonymous: RateLimit = RateLimit(per_minute=120, burst=60)
    signed_in: RateLimit = RateLimit(per_minute=600, burst=120)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> LimitsConfig:
        """Validate the `limits` section; errors name the setting and the value."""
        names = (
            "max_depth",
            "cost_budget",
            "timeout_seconds",
            "execution_threads",
            "introspection",
            "trusted_proxy_hops",
            "rate_limit",
        )
        _known(raw, "limits", names)
        default = cls()
        values: dict[str, Any] = {}
        for name in ("max_depth", "cost_budget", "execution_threads"):
            values[name] = _number(raw, name, getattr(default, name), "limits", low=1)
        values["trusted_proxy_hops"] = _number(
            raw, "trusted_proxy_hops", default.trusted_proxy_hops, "limits", low=0
        )
        timeout = raw.get("timeout_seconds", default.timeout_seconds)
        if timeout is not None:
            timeout = _positive(timeout, "limits.timeout_seconds")
        values["timeout_seconds"] = timeout
        introspection = raw.get("introspection", default.introspection)
        if not isinstance(introspection, bool):
            raise SettingsError(f"limits.introspection: {introspection!r} is not true or false")
        values["introspection"] = introspection
        rate = raw.get("rate_limit")
        if rate is not None:
            _known(rate, "limits.rate_limit", ("enabled", "anonymous", "signed_in"))
            enabled = rate.get("enabled", True)
            if not isinstance(enabled, bool):
                raise SettingsError(f"limits.rate_limit.enabled: {enabled!r} is not true or false")
            values["rate_limit"] = enabled
            for name in ("anonymous", "signed_in"):
                if rate.get(name) is not None:
                    values[name] = _rate(rate[name], f"limits.rate_limit.{name}")
        return cls(**values)


def _known(raw: Any, where: str, names: tuple[str, ...]) -> None:
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise SettingsError(f"{where}: unknown setting {unknown[0]!r}")


def _number(raw: Mapping[str, Any], name: str, default: int, where: str, *, low: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SettingsError(f"{where}.{name}: {value!r} is not a whole number >= {low}")
    return value


def _positive(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{where}: {value!r} is not a number") from None
    if not number > 0 or math.isinf(number):
        raise SettingsError(f"{where}: {value!r} must be more than 0")
    return number


def _rate(raw: Any, where: str) -> RateLimit:
    _known(raw, where, ("per_minute", "burst"))
    per_minute = _positive(raw.get("per_minute"), f"{where}.per_minute")
    return RateLimit(per_minute, _number(raw, "burst", 1, where, low=1))


# --- the cost map -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldCost:
    """What one selection of a field costs: `complexity` per item, children once per item.

    Items are counted by the page argument when the field has one (`records(first: 50)` is
    50 items), else assumed to be `items` (a list whose length no argument bounds).
    """

    complexity: int = 1
    page_argument: str | None = None
    items: int = 1

    def price(self, args: Mapping[str, Any]) -> tuple[int, int]:
        """(the field's own cost, the multiplier for its children's cost)."""
        count = self.items
        if self.page_argument is not None:
            count = int(args.get(self.page_argument) or 0)
        return self.complexity * count, count


@dataclass(frozen=True)
class FacetsCost(FieldCost):
    """Facets: `per_facet` for each facet named, `all_facets` when all are asked for."""

    per_facet: int = 5
    all_facets: int = 20

    def price(self, args: Mapping[str, Any]) -> tuple[int, int]:
        names = args.get("names")
        if names is None:
            return self.all_facets, len(FACETS)
        # The service computes all facets in one pass, so naming many costs no more than all.
        return min(self.per_facet * len(set(names)), self.all_facets), max(len(set(names)), 1)


# Lists no argument bounds: a network has tens to a thousand biobanks, a biobank a handful
# of collections. The estimate only has to make nesting them (biobank -> collections ->
# biobank -> ...) grow the cost the way it grows the work.
NETWORK_LIST_ITEMS = 10

# Costs by type and field (GraphQL names). A field not listed costs 0 when it returns a
# scalar or enum and 1 when it returns an object (or a list of them), with its children
# counted once. Each selection counts, so aliases repeating a field pay for every copy.
COST_MAP: Mapping[str, Mapping[str, FieldCost]] = {
    "Query": {
        "search": FieldCost(10),  # a backend round of counts, per biobank and consent split
        "diseases": FieldCost(1, PAGE_ARGUMENT),
        "syncRuns": FieldCost(1, PAGE_ARGUMENT),
        "quarantine": FieldCost(1, PAGE_ARGUMENT),
        "auditLog": FieldCost(1, PAGE_ARGUMENT),
        "biobanks": FieldCost(1, items=NETWORK_LIST_ITEMS),
        "collections": FieldCost(1, items=NETWORK_LIST_ITEMS),
    },
    "Biobank": {"collections": FieldCost(1, items=NETWORK_LIST_ITEMS)},
    "SearchResult": {
        "facets": FacetsCost(),
        "records": FieldCost(1, PAGE_ARGUMENT),  # a record costs 1, and so does each object in it
    },
}


@dataclass(frozen=True)
class QueryCost:
    """An operation's computed cost against the budget; reported as `extensions.cost`."""

    requested: int
    budget: int

    def as_extension(self) -> dict[str, int]:
        """The `extensions.cost` entry of a response."""
        return {"requested": self.requested, "budget": self.budget}


@dataclass(frozen=True)
class Shape:
    """What walking an operation found: its cost, depth and whether it introspects."""

    cost: int
    depth: int
    introspection: bool


def measure(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
    *,
    max_depth: int,
    cost_map: Mapping[str, Mapping[str, FieldCost]] = COST_MAP,
) -> Shape:
    """Walk an operation as execution would; raise on depth or page size, else its shape.

    Fields under `__schema` and `__type` are not counted: introspection is bounded by the
    schema's own size and has its own switch.
    """
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = schema.get_root_type(operation.operation)
    if root is None:
        return Shape(0, 0, False)
    walk = _Walk(schema, fragments, dict(variables), max_depth, cost_map)
    fields = collect_fields(schema, fragments, walk.variables, root, operation.selection_set)
    introspection = any(nodes[0].name.value in INTROSPECTION_FIELDS for nodes in fields.values())
    cost, depth = walk.fields(root, fields, 1, ())
    return Shape(cost, depth, introspection)


class _Walk:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        max_depth: int,
        cost_map: Mapping[str, Mapping[str, FieldCost]],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.max_depth = max_depth
        self.cost_map = cost_map
        # A fragment spread many times is walked once per parent type: without this a
        # document of nested, repeated fragments costs exponential time to measure.
        self._memo: dict[tuple[str, tuple[int, ...]], tuple[int, int]] = {}

    def fields(
        self,
        parent: GraphQLObjectType,
        fields: Mapping[str, list[FieldNode]],
        level: int,
        path: tuple[str, ...],
    ) -> tuple[int, int]:
        """(cost, height) of a selection set's fields at `level` (the root's fields are 1)."""
        cost, height = 0, 0
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name.startswith("__"):
                continue  # __typename costs nothing; introspection has its own switch
            if level > self.max_depth:
                shown = ".".join((*path, key))
                raise DepthLimitExceeded(
                    f"the query nests fields more than {self.max_depth} deep (at {shown})",
                    depth={"limit": self.max_depth},
                )
            definition = parent.fields.get(name)
            if definition is None:
                continue  # validation has reported it already
            own, multiplier = self._price(parent, definition, nodes[0], level)
            child_cost, child_height = self._children(definition, nodes, level, (*path, key))
            cost += own + multiplier * child_cost
            height = max(height, 1 + child_height)
        return cost, height

    def _price(
        self, parent: GraphQLObjectType, definition: GraphQLField, node: FieldNode, level: int
    ) -> tuple[int, int]:
        args = get_argument_values(definition, node, self.variables)
        if PAGE_ARGUMENT in definition.args:
            args[PAGE_ARGUMENT] = _page_size(definition, node, args, top_level=level == 1)
        field_cost = self.cost_map.get(parent.name, {}).get(node.name.value)
        if field_cost is not None:
            return field_cost.price(args)
        return (0 if is_leaf_type(get_named_type(definition.type)) else 1), 1

    def _children(
        self,
        definition: GraphQLField,
        nodes: list[FieldNode],
        level: int,
        path: tuple[str, ...],
    ) -> tuple[int, int]:
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0, 0
        types = (
            self.schema.get_possible_types(named)  # type: ignore[arg-type]
            if is_abstract_type(named)
            else [named]
        )
        cost, height = 0, 0
        for object_type in types:
            assert isinstance(object_type, GraphQLObjectType)
            key = (object_type.name, tuple(id(n) for n in nodes))
            known = self._memo.get(key)
            if known is None or known[1] > self.max_depth - level:
                sub = collect_sub_fields(
                    self.schema, self.fragments, self.variables, object_type, nodes
                )
                known = self.fields(object_type, sub, level + 1, path)
                self._memo[key] = known
            cost, height = max(cost, known[0]), max(height, known[1])
        return cost, height


def _page_size(
    definition: GraphQLField, node: FieldNode, args: Mapping[str, Any], *, top_level: bool
) -> int:
    """The page argument's value, checked against the cap; null means the default."""
    value = args.get(PAGE_ARGUMENT)
    if value is None:
        default = definition.args[PAGE_ARGUMENT].default_value
        value = default if isinstance(default, int) else 1
    if not 1 <= value <= MAX_PAGE_SIZE:
        argument = PAGE_ARGUMENT if top_level else f"{node.name.value}.{PAGE_ARGUMENT}"
        raise BadInput(argument, value, f"must be between 1 and {MAX_PAGE_SIZE}")
    return int(value)


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
        """Middleware: run the resolver unless the deadline has passed."""
        if self.expired():
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
    future = _pool(threads).submit(contextvars.copy_context().run, function)
    try:
        return future.result(timeout=remaining)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise deadline.error() from None


# --- the rate limit -----------------------------------------------------------------------


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
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_BUCKETS)
            self._ready = True
        return db

    def take(self, key: str, rate: RateLimit) -> float | None:
        """Take one token from `key`'s bucket: None when allowed, else seconds to wait."""
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
            if tokens < 1.0:
                db.execute("ROLLBACK")
                return (1.0 - tokens) / rate.per_second
            db.execute(
                "INSERT INTO buckets (key, tokens, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, "
                "updated = excluded.updated",
                (key, tokens - 1.0, now),
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


# --- the limits of one app ----------------------------------------------------------------


@dataclass
class Limits:
    """One app's limits: the document checks, the deadline and the rate limiter."""

    config: LimitsConfig
    data_dir: Path | None  # where the rate limit's store lives; None: no rate limit
    rate_limiter: RateLimiter | None = field(init=False)

    def __post_init__(self) -> None:
        self.rate_limiter = None
        if self.config.rate_limit and self.data_dir is not None:
            self.rate_limiter = RateLimiter(Path(self.data_dir) / RATE_LIMIT_FILE)

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
        cost = QueryCost(shape.cost, self.config.cost_budget)
        if cost.requested > cost.budget:
            raise CostLimitExceeded(
                f"the query costs {cost.requested}, over the budget of {cost.budget} "
                "(search 10 each; records, syncRuns and quarantine 1 per item asked for with "
                "`first`; facets 5 each or 20 for all); split it or ask for fewer items",
                cost=cost.as_extension(),
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
