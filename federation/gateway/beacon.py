"""The Beacon v2 API at `/beacon/`: read the request, ask federation.beacon, answer JSON.

The same access path as `/graphql`: credentials through the gateway's Authenticator (API
keys, bearer tokens), the same rate limit and deadline, and every answered question in the
audit log. Figures come from the same search service (federation/beacon/answer.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from federation.beacon import ENTRY_TYPES, BeaconRequestError, responses
from federation.beacon import request as beacon_request
from federation.beacon.answer import BeaconSearch, EntryPage
from federation.beacon.documents import dataset
from federation.beacon.request import BeaconRequest
from federation.beacon.responses import BeaconInfo
from federation.disclosure.policy import RoleRule
from federation.disclosure.roles import ANONYMOUS, Identity, Role
from federation.gateway.auth import Authenticator
from federation.gateway.context import GatewayContext
from federation.gateway.endpoint import AUDIT_EXTENSION, AUTH_EXTENSION, LIMITS_EXTENSION
from federation.gateway.errors import AuthenticationFailed, AuthenticationUnavailable
from federation.gateway.limits import Limits, RequestTimeout
from federation.gateway.ratelimit import client_address
from federation.runtime import Runtime
from federation.search.audit import AuditLog, AuditUnavailable
from federation.search.backend import BackendUnavailable

log = logging.getLogger(__name__)

PREFIX = "/beacon"
BEACON_EXTENSION = "biofed.beacon"
blueprint = Blueprint("beacon", __name__, url_prefix=PREFIX)

_E = TypeVar("_E")


class _Refused(Exception):
    """An answer that is an error response (status, message, extra headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@blueprint.record_once
def _setup(state: BlueprintSetupState) -> None:
    runtime = state.app.extensions["biofed"]
    assert isinstance(runtime, Runtime)
    # Parsed here so a bad `beacon` settings section stops the worker at start.
    state.app.extensions[BEACON_EXTENSION] = (
        BeaconInfo.parse(runtime.settings.beacon),
        BeaconSearch(),
    )


def _extension(name: str, kind: type[_E]) -> _E:
    value = current_app.extensions[name]
    assert isinstance(value, kind)
    return value


def _beacon() -> tuple[BeaconInfo, BeaconSearch]:
    info, search = current_app.extensions[BEACON_EXTENSION]
    return info, search


def _runtime() -> Runtime:
    return _extension("biofed", Runtime)


def _rule_for(identity: Identity) -> Callable[[str], RoleRule]:
    service = _runtime().search
    return lambda biobank_id: service.policies(biobank_id).rule(identity.role_for(biobank_id))


def _levels() -> dict[str, str]:
    service = _runtime().search

    def rule(biobank_id: str, role: Role) -> RoleRule:
        return service.policies(biobank_id).rule(role)

    return responses.security_levels(list(service.record_biobanks()), rule)


# --- informational endpoints --------------------------------------------------------------


@blueprint.route("/", methods=["GET"])
@blueprint.route("/info", methods=["GET"])
def info() -> Response:
    """Who this beacon is (`beaconInfoResponse`)."""
    return jsonify(responses.beacon_info(_beacon()[0]))


@blueprint.route("/service-info", methods=["GET"])
def service_info() -> Response:
    """GA4GH service-info."""
    return jsonify(responses.service_info(_beacon()[0]))


@blueprint.route("/configuration", methods=["GET"])
def configuration() -> Response:
    """Entry types, maturity and security levels."""
    return jsonify(responses.configuration(_beacon()[0], _levels()))


@blueprint.route("/map", methods=["GET"])
def beacon_map() -> Response:
    """Endpoints per entry type with their security levels."""
    root = request.url_root.rstrip("/") + PREFIX
    return jsonify(responses.beacon_map(_beacon()[0], root, _levels()))


@blueprint.route("/entry_types", methods=["GET"])
def entry_types() -> Response:
    """The entry types served."""
    return jsonify(responses.entry_types(_beacon()[0]))


@blueprint.route("/filtering_terms", methods=["GET"])
def filtering_terms() -> Response | tuple[Response, int]:
    """Every filter accepted; paged when `limit` is given."""
    try:
        skip = beacon_request.whole_number(request.args.get("skip"), "skip", 0)
        limit = beacon_request.whole_number(request.args.get("limit"), "limit", 0)
    except BeaconRequestError as err:
        return _error(beacon_request.UNREAD, err.status, str(err))
    return jsonify(responses.filtering_terms_response(_beacon()[0], skip, limit or None))


# --- entry types --------------------------------------------------------------------------


@blueprint.route("/individuals", methods=["GET", "POST"])
def individuals() -> Response | tuple[Response, int]:
    """Donors: boolean, count or records, as the role's policy allows."""
    return _answer("individual")


@blueprint.route("/biosamples", methods=["GET", "POST"])
def biosamples() -> Response | tuple[Response, int]:
    """Samples: boolean, count or records, as the role's policy allows."""
    return _answer("biosample")


@blueprint.route("/datasets", methods=["GET", "POST"])
def datasets() -> Response | tuple[Response, int]:
    """The collections of the network (one dataset per collection)."""
    return _datasets(None)


@blueprint.route("/datasets/<dataset_id>", methods=["GET"])
def one_dataset(dataset_id: str) -> Response | tuple[Response, int]:
    """One collection by id."""
    return _datasets(dataset_id)


@blueprint.route("/<path:rest>", methods=["GET", "POST"])
def unknown(rest: str) -> tuple[Response, int]:
    """Anything else under /beacon: a Beacon error, not an HTML page."""
    known = ", ".join(["info", "service-info", "configuration", "map", "entry_types"])
    message = f"/beacon/{rest}: no such endpoint (known: {known}, filtering_terms, " + (
        ", ".join(ENTRY_TYPES) + ")"
    )
    return _error(beacon_request.UNREAD, 404, message)


def _answer(entry: str) -> Response | tuple[Response, int]:
    parsed = beacon_request.UNREAD
    try:
        identity, client_ip = _admitted()
        parsed = _read()
        info, search = _beacon()
        limits = _extension(LIMITS_EXTENSION, Limits)

        # The service bound to this request's audit row, as GraphQL's resolvers get it:
        # every search a Beacon request makes is recorded (never its records).
        service = GatewayContext(
            _runtime(),
            identity=identity,
            client_ip=client_ip,
            audit=_extension(AUDIT_EXTENSION, AuditLog),
        ).search

        def ask() -> EntryPage:
            if parsed.granularity != "record":
                return search.counts(service, parsed.query, identity)
            window = (service, parsed.query, identity, parsed.offset, parsed.limit)
            if entry == "individual":
                return search.individuals(*window)
            return search.biosamples(*window)

        page = limits.run(ask, limits.deadline())
        return jsonify(responses.entry_response(info, parsed, entry, page, _rule_for(identity)))
    except BeaconRequestError as err:
        return _error(parsed, err.status, str(err))
    except _Refused as err:
        return _error(parsed, err.status, str(err), err.headers)
    except RequestTimeout as err:
        return _error(parsed, 504, str(err))
    except (BackendUnavailable, AuditUnavailable):
        return _error(parsed, 503, "the search backend cannot answer right now; try again shortly")


def _datasets(dataset_id: str | None) -> Response | tuple[Response, int]:
    parsed = beacon_request.UNREAD
    try:
        parsed = _read()
        if parsed.filters:
            raise BeaconRequestError(
                "filters",
                [str(f) for f in parsed.filters],
                "datasets (collections) are listed, not searched: filter individuals or "
                "biosamples, whose records name their dataset",
            )
        runtime = _runtime()
        published = runtime.backend.published()
        found = [
            dataset(biobank_id, collection)
            for biobank_id in sorted(published)
            for collection in published[biobank_id].metadata.get("collections", ())
            if dataset_id is None or collection.get("id") == dataset_id
        ]
        if dataset_id is not None and not found:
            raise BeaconRequestError("id", dataset_id, "no dataset (collection) with this id", 404)
        return jsonify(responses.datasets_response(_beacon()[0], parsed, found))
    except BeaconRequestError as err:
        return _error(parsed, err.status, str(err))
    except BackendUnavailable:
        return _error(parsed, 503, "the search backend cannot answer right now; try again shortly")


# --- the request --------------------------------------------------------------------------


def _admitted() -> tuple[Identity, str]:
    """The caller, authenticated as `/graphql` authenticates, and charged to the rate limit."""
    limits = _extension(LIMITS_EXTENSION, Limits)
    client_ip = client_address(
        request.remote_addr,
        request.headers.get("X-Forwarded-For"),
        limits.config.trusted_proxy_hops,
    )
    try:
        identity = _extension(AUTH_EXTENSION, Authenticator).authenticate(
            request.headers.get("Authorization"), request.headers.get("X-API-Key")
        )
    except AuthenticationFailed as err:
        wait = limits.admit(ANONYMOUS, client_ip)
        if wait is not None:
            raise _rate_limited(wait) from None
        raise _Refused(
            401, str(err), {"WWW-Authenticate": f'Bearer realm="biofed", error="{err.error}"'}
        ) from None
    except AuthenticationUnavailable as err:
        raise _Refused(
            503, f"{err}, so the bearer token cannot be checked; try again shortly"
        ) from None
    wait = limits.admit(identity, client_ip)
    if wait is not None:
        raise _rate_limited(wait)
    return identity, client_ip


def _rate_limited(wait: float) -> _Refused:
    seconds = max(1, math.ceil(wait))
    return _Refused(
        429, f"too many requests; try again in {seconds} s", {"Retry-After": str(seconds)}
    )


def _read() -> BeaconRequest:
    if request.method == "GET":
        return beacon_request.from_get(request.args)
    if request.mimetype != "application/json":
        # Only JSON: a form or text/plain POST is what a cross-site page can send unasked.
        raise BeaconRequestError(
            "Content-Type", request.mimetype or None, "send the request as application/json", 415
        )
    body: Any = request.get_json(silent=True)
    if body is None and request.get_data(cache=True).strip():
        raise BeaconRequestError("body", "(unreadable)", "not valid JSON")
    return beacon_request.from_body(body)


def _error(
    parsed: BeaconRequest, status: int, message: str, headers: dict[str, str] | None = None
) -> tuple[Response, int]:
    response = jsonify(responses.error(_beacon()[0], parsed, status, message))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response, status
