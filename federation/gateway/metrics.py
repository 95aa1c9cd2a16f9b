"""`/metrics`: the gateway's and the syncs' series in the Prometheus text format.

Every request is timed by operation (the GraphQL operation kind and its field, `beacon`,
`web`, ...) and backend; errors are counted by code and rate-limit refusals by operation.
The search service counts searches, the answer cache and the privacy budget
(`search/metrics.py`); the sync series are read from the state store at scrape time
(`sync/metrics.py`). Under gunicorn the gunicorn settings give every worker one private
multiprocess folder, so a scrape answered by any worker reports them all. Only the network
operator's key, or a client address in `metrics_allow`, may scrape (docs/metrics.md).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from graphql import FieldNode, OperationDefinitionNode
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from federation.disclosure.roles import ANONYMOUS
from federation.gateway.auth import Authenticator
from federation.gateway.endpoint import (
    AUTH_EXTENSION,
    LIMITS_EXTENSION,
    OPERATION_KEY,
    misplaced_key,
)
from federation.gateway.errors import (
    AuthenticationFailed,
    AuthenticationUnavailable,
    ErrorCode,
    error_body,
)
from federation.gateway.limits import Limits
from federation.gateway.ratelimit import client_address
from federation.runtime import Runtime
from federation.search import metrics as search_metrics
from federation.search.metrics import LATENCY_BUCKETS
from federation.state import StateStore
from federation.sync.metrics import SyncCollector

# Set by the gunicorn settings in the master before it forks the workers.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_EXTENSION = "biofed.metrics"

REGISTRY = CollectorRegistry(auto_describe=True)
REQUEST_SECONDS = Histogram(
    "biofed_request_duration_seconds",
    "Time to answer one HTTP request, by operation and backend.",
    ["operation", "backend"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "biofed_errors",
    "Errors answered, by code: the GraphQL `extensions.code`, else HTTP_<status>.",
    ["code"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "biofed_rate_limit_refusals",
    "Requests refused with 429 because the caller's rate-limit bucket was empty.",
    ["operation"],
    registry=REGISTRY,
)

# Operation labels of what is not a GraphQL operation, by the blueprint that served it.
_BLUEPRINT_OPERATIONS = {"beacon": "beacon", "web": "web", "health": "health", "metrics": "metrics"}
# A GraphQL request that never reached a valid operation (bad credentials, a syntax error).
UNPARSED_GRAPHQL = "graphql"
# Documents asking several different top-level fields share one label, so a client cannot
# mint label values by combining fields.
SEVERAL_FIELDS = "several"

blueprint = Blueprint("metrics", __name__)


class MetricsAccess:
    """Who may scrape: the operator's key, or a client address in `metrics_allow`."""

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow)

    def allows_address(self, address: str) -> bool:
        """Whether the client address is in one of the allowed networks."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


class _Registered(Collector):
    """The in-process metrics of one registry, when no multiprocess folder is set."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()


def init_app(app: Flask, runtime: Runtime) -> None:
    """Time every request and serve `/metrics` for this app."""
    settings = runtime.settings
    backend = settings.backend

    def store() -> StateStore:
        # The runtime's store, opened on first use: a store that failed to open (a
        # PostgreSQL server down) is tried again on the next scrape.
        return runtime.store

    def biobanks() -> list[str]:
        return [source.biobank.id for source in runtime.network().biobanks]

    app.extensions[METRICS_EXTENSION] = (
        MetricsAccess(settings.metrics_allow),
        SyncCollector(store, biobanks),
    )

    @app.before_request
    def start_timer() -> None:
        g.biofed_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.get("biofed_started")
        if started is None:
            return response
        operation = _operation_label()
        REQUEST_SECONDS.labels(operation=operation, backend=backend).observe(
            time.perf_counter() - started
        )
        if response.status_code == 429:
            RATE_LIMITED.labels(operation=operation).inc()
        for code in _error_codes(response):
            ERRORS.labels(code=code).inc()
        return response

    app.register_blueprint(blueprint)


def _operation_label() -> str:
    operation = g.get(OPERATION_KEY)
    if isinstance(operation, OperationDefinitionNode):
        fields = {
            s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)
        }
        name = fields.pop() if len(fields) == 1 else SEVERAL_FIELDS
        return f"{operation.operation.value}.{name}"
    if request.blueprint == "graphql":
        return UNPARSED_GRAPHQL
    return _BLUEPRINT_OPERATIONS.get(request.blueprint or "", "other")


def _error_codes(response: Response) -> list[str]:
    """The codes of the errors a response carries."""
    if response.is_json and not response.direct_passthrough:
        data = response.get_data()
        if b'"errors"' in data:
            try:
                body = json.loads(data)
            except ValueError:
                body = None
            errors = body.get("errors") if isinstance(body, dict) else None
            if isinstance(errors, list) and errors:
                return [_code(e) for e in errors]
    return [f"HTTP_{response.status_code}"] if response.status_code >= 400 else []


def _code(error: Any) -> str:
    extensions = error.get("extensions") if isinstance(error, dict) else None
    code = extensions.get("code") if isinstance(extensions, dict) else None
    # Codes come from ErrorCode; anything else would be a new label value per message.
    return code if isinstance(code, str) and code in ErrorCode.__members__ else "UNKNOWN"


@blueprint.route("/metrics", methods=["GET"])
def metrics_endpoint() -> Response | tuple[Response, int]:
    """The Prometheus text exposition of every series, for the operator or an allowed address."""
    access, sync_collector = current_app.extensions[METRICS_EXTENSION]
    refused = _refusal(access)
    if refused is not None:
        return refused
    registry = CollectorRegistry(auto_describe=False)
    folder = os.environ.get(MULTIPROCESS_ENV)
    if folder:
        registry.register(MultiProcessCollector(None, path=folder))  # type: ignore[no-untyped-call]
    else:
        registry.register(_Registered(REGISTRY))
        registry.register(_Registered(search_metrics.REGISTRY))
    registry.register(sync_collector)
    # The format the scraper asks for: Prometheus sends Accept with OpenMetrics first;
    # without an Accept header the classic text format (0.0.4).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(encode(registry), mimetype=None)
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


NEEDS = (
    "/metrics is for the network operator: send the operator's API key as "
    "`Authorization: Bearer <key>` or `X-API-Key: <key>`, or scrape from an address "
    "listed in the `metrics_allow` setting"
)


def _refusal(access: MetricsAccess) -> tuple[Response, int] | None:
    limits = current_app.extensions[LIMITS_EXTENSION]
    assert isinstance(limits, Limits)
    client_ip = client_address(
        request.remote_addr,
        request.headers.get("X-Forwarded-For"),
        limits.config.trusted_proxy_hops,
    )
    if access.allows_address(client_ip):
        return None
    misplaced = misplaced_key()
    if misplaced is not None:
        return _unauthenticated(misplaced)
    authorization = request.headers.get("Authorization")
    api_key = request.headers.get("X-API-Key")
    if not authorization and not api_key:
        return _unauthenticated(f"{NEEDS} (got no credentials from {client_ip})")
    authenticator = current_app.extensions[AUTH_EXTENSION]
    assert isinstance(authenticator, Authenticator)
    try:
        identity = authenticator.authenticate(authorization, api_key)
    except AuthenticationFailed as err:
        # Failed attempts are charged to the address, as on /graphql, so guessing is slow.
        limits.admit(ANONYMOUS, client_ip)
        return _unauthenticated(f"{err}; {NEEDS}")
    except AuthenticationUnavailable as err:
        body = error_body(f"{err}; try again shortly", ErrorCode.BACKEND_UNAVAILABLE)
        return jsonify({"errors": [body]}), 503
    if not identity.operator:
        body = error_body(
            f"{NEEDS} ({identity.subject} is not the network operator)", ErrorCode.FORBIDDEN
        )
        return jsonify({"errors": [body]}), 403
    return None


def _unauthenticated(message: str) -> tuple[Response, int]:
    response = jsonify({"errors": [error_body(message, ErrorCode.UNAUTHENTICATED)]})
    response.headers["WWW-Authenticate"] = 'Bearer realm="biofed"'
    return response, 401
