"""A Beacon request, from GET parameters or a POST body, read and checked field by field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.beacon import API_VERSION, BeaconRequestError
from federation.beacon.filters import query_fields
from federation.search.query import MAX_PAGE_SIZE, BadQuery, SampleQuery

GRANULARITIES = ("boolean", "count", "record")
# The spec's defaults: boolean answers, pages of 10, result sets with hits only.
DEFAULT_GRANULARITY = "boolean"
DEFAULT_LIMIT = 10
RESULTSET_CHOICES = ("ALL", "HIT", "MISS", "NONE")
_QUERY_KEYS = {
    "filters",
    "requestedGranularity",
    "pagination",
    "includeResultsetResponses",
    "testMode",
    "requestParameters",
}


@dataclass(frozen=True)
class BeaconRequest:
    """What a Beacon client asked: filters as the query model, granularity, a page."""

    query: SampleQuery
    filters: tuple[Any, ...] = ()
    granularity: str = DEFAULT_GRANULARITY
    skip: int = 0  # pages to skip, as the spec counts: records skip*limit onwards
    limit: int = DEFAULT_LIMIT
    include_resultsets: str = "HIT"
    test_mode: bool = False
    api_version: str = API_VERSION
    requested_schemas: tuple[Any, ...] = ()

    @property
    def offset(self) -> int:
        """The first record of the requested page."""
        return self.skip * self.limit

    def summary(self) -> dict[str, Any]:
        """`meta.receivedRequestSummary`: the request as this beacon understood it."""
        summary: dict[str, Any] = {
            "apiVersion": self.api_version,
            "requestedSchemas": list(self.requested_schemas),
            "pagination": {"skip": self.skip, "limit": self.limit},
            "requestedGranularity": self.granularity,
            "includeResultsetResponses": self.include_resultsets,
            "testMode": self.test_mode,
        }
        if self.filters:
            summary["filters"] = [_filter_id(f) for f in self.filters]
        return summary


UNREAD = BeaconRequest(SampleQuery())  # what an error response says when nothing was read


def from_get(args: Mapping[str, str]) -> BeaconRequest:
    """A request from query-string parameters (`filters` comma separated)."""
    known = {"filters", "requestedGranularity", "skip", "limit", "includeResultsetResponses"}
    known |= {"testMode", "requestedSchema"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise BeaconRequestError(unknown[0], args[unknown[0]], "not a parameter this beacon reads")
    text = args.get("filters") or ""
    filters = tuple(f.strip() for f in text.split(",") if f.strip())
    return _build(
        filters,
        {},
        {
            "granularity": args.get("requestedGranularity"),
            "skip": whole_number(args.get("skip"), "skip", 0),
            "limit": whole_number(args.get("limit"), "limit", DEFAULT_LIMIT),
            "include": args.get("includeResultsetResponses"),
            "test_mode": _boolean(args.get("testMode"), "testMode"),
        },
    )


def from_body(body: Any) -> BeaconRequest:
    """A request from a POST body (`beaconRequestBody`: `meta` and `query`)."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise BeaconRequestError("body", type(body).__name__, "must be a JSON object")
    meta = body.get("meta") or {}
    query = body.get("query") or {}
    for name, value in (("meta", meta), ("query", query)):
        if not isinstance(value, Mapping):
            raise BeaconRequestError(name, value, "must be an object")
    unknown = sorted(set(query) - _QUERY_KEYS)
    if unknown:
        raise BeaconRequestError(f"query.{unknown[0]}", query[unknown[0]], "not a query field")
    parameters = query.get("requestParameters") or {}
    if not isinstance(parameters, Mapping):
        raise BeaconRequestError("query.requestParameters", parameters, "must be an object")
    parameters = {k: v for k, v in parameters.items() if k != "$schema"}
    if parameters:
        name = sorted(parameters)[0]
        raise BeaconRequestError(
            f"query.requestParameters.{name}",
            parameters[name],
            "this beacon takes no request parameters (no genomic variants); use filters",
        )
    filters = query.get("filters") or []
    if not isinstance(filters, list):
        raise BeaconRequestError("query.filters", filters, "must be a list of filters")
    pagination = query.get("pagination") or {}
    if not isinstance(pagination, Mapping):
        raise BeaconRequestError("query.pagination", pagination, "must be an object")
    return _build(
        tuple(filters),
        meta,
        {
            "granularity": query.get("requestedGranularity"),
            "skip": whole_number(pagination.get("skip"), "query.pagination.skip", 0),
            "limit": whole_number(pagination.get("limit"), "query.pagination.limit", DEFAULT_LIMIT),
            "include": query.get("includeResultsetResponses"),
            "test_mode": _boolean(query.get("testMode"), "query.testMode"),
        },
    )


def _build(
    filters: tuple[Any, ...], meta: Mapping[str, Any], options: Mapping[str, Any]
) -> BeaconRequest:
    """The request from its filters, its `meta` and the options read from either form."""
    granularity = options["granularity"] or DEFAULT_GRANULARITY
    limit: int = options["limit"]
    include = options["include"]
    if granularity not in GRANULARITIES:
        raise BeaconRequestError(
            "requestedGranularity", granularity, f"one of {', '.join(GRANULARITIES)}"
        )
    if limit == 0:
        limit = MAX_PAGE_SIZE  # the spec's "all, or the most the beacon allows"
    if limit > MAX_PAGE_SIZE:
        raise BeaconRequestError("limit", limit, f"pages hold at most {MAX_PAGE_SIZE} records")
    include = include or "HIT"
    if include not in RESULTSET_CHOICES:
        raise BeaconRequestError(
            "includeResultsetResponses", include, f"one of {', '.join(RESULTSET_CHOICES)}"
        )
    try:
        query = SampleQuery.parse(query_fields(filters))
    except BadQuery as err:
        raise BeaconRequestError("filters", err.value, err.reason) from None
    schemas = meta.get("requestedSchemas") or ()
    if not isinstance(schemas, list | tuple):
        raise BeaconRequestError("meta.requestedSchemas", schemas, "must be a list")
    version = meta.get("apiVersion") or API_VERSION
    return BeaconRequest(
        query=query,
        filters=filters,
        granularity=granularity,
        skip=options["skip"],
        limit=limit,
        include_resultsets=include,
        test_mode=options["test_mode"],
        api_version=str(version),
        requested_schemas=tuple(schemas),
    )


def whole_number(value: Any, name: str, default: int) -> int:
    """A count or index parameter: a whole number >= 0, `default` when absent."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BeaconRequestError(name, value, "must be a whole number >= 0")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BeaconRequestError(name, value, "must be a whole number >= 0") from None
    if number < 0 or (isinstance(value, float) and value != number):
        raise BeaconRequestError(name, value, "must be a whole number >= 0")
    return number


def _boolean(value: Any, name: str) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BeaconRequestError(name, value, "must be true or false")


def _filter_id(item: Any) -> str:
    if isinstance(item, Mapping):
        text = str(item.get("id"))
        if "operator" in item or "value" in item:
            text = f"{text}{item.get('operator', '=')}{item.get('value')}"
        return text
    return str(item)
