"""Stable error codes and how every failure becomes a GraphQL error a client can act on.

Clients branch on `extensions.code`, never on message text, so codes are part of the
public contract (see `ErrorCode`). Any `FederationError` a service raises is shown with
its `code` and message; messages name the argument and the value. An unexpected failure
is logged here with its traceback and reaches the client only as `INTERNAL_SERVER_ERROR`
with a generic message.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
from typing import Any

from graphql import DocumentNode, GraphQLError, ObjectValueNode, ValueNode, Visitor, visit
from graphql.language import ArgumentNode, ListValueNode

from federation.errors import BadInput, FederationError, RequestError
from federation.search.backend import BackendUnavailable
from federation.search.query import BadQuery, SampleQuery

log = logging.getLogger(__name__)


class ErrorCode(enum.StrEnum):
    """The values of `extensions.code`."""

    BAD_USER_INPUT = "BAD_USER_INPUT"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE"  # the Elasticsearch / OpenSearch cluster
    NOT_FOUND = "NOT_FOUND"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    # Access and limits (federation/gateway/auth.py, limits.py; see docs/access.md).
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no valid credentials (HTTP 401 when they were bad)
    FORBIDDEN = "FORBIDDEN"  # signed in, but the role does not allow it
    DEPTH_LIMIT_EXCEEDED = "DEPTH_LIMIT_EXCEEDED"
    COST_LIMIT_EXCEEDED = "COST_LIMIT_EXCEEDED"
    RATE_LIMITED = "RATE_LIMITED"  # HTTP 429 with Retry-After
    TOO_MANY_SEARCHES = "TOO_MANY_SEARCHES"  # more `search` fields than one request may carry
    TIMEOUT = "TIMEOUT"  # the request ran past its deadline
    # HTTP-level failures: the request never reached GraphQL.
    BAD_REQUEST = "BAD_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"


INTERNAL_MESSAGE = "internal error; it has been logged"
BACKEND_MESSAGE = "the search backend cannot answer right now; try again shortly"


class GatewayError(RequestError):
    """An expected failure of the gateway itself (a limit), shown with its code and message."""

    code: str = ErrorCode.INTERNAL_SERVER_ERROR


class AuthenticationFailed(FederationError):
    """Credentials were sent but do not verify; answered with 401 and `WWW-Authenticate`."""

    code = ErrorCode.UNAUTHENTICATED

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.error = error  # the RFC 6750 error code for the WWW-Authenticate header


class AuthenticationUnavailable(FederationError):
    """A token cannot be checked right now (the provider's keys cannot be fetched): 503."""

    code = ErrorCode.BACKEND_UNAVAILABLE


def camel(name: str) -> str:
    """`age_min` -> `ageMin`: the GraphQL spelling of a Python argument name."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# Reasons may mention sibling query fields in Python spelling ("greater than age_max"); a
# researcher reading the GraphQL error knows them as ageMax. Only field names are
# respelled: values such as the facet `material_type` are spelled as the client sends them.
_QUERY_FIELDS = re.compile(
    r"\b(" + "|".join(f.name for f in dataclasses.fields(SampleQuery) if "_" in f.name) + r")\b"
)


def bad_input(err: BadQuery, argument: str) -> BadInput:
    """Restate a service's BadQuery with the argument as the GraphQL request spells it."""
    reason = _QUERY_FIELDS.sub(lambda m: camel(m.group(0)), err.reason)
    return BadInput(argument, err.value, reason)


def error_body(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """One entry of a response's `errors` list."""
    return {"message": message, "extensions": {"code": str(code), **extensions}}


def execution_error(error: GraphQLError) -> dict[str, Any]:
    """Format an error raised while resolving fields; unexpected ones are logged, not shown."""
    original = error.original_error
    where: dict[str, Any] = {}
    if error.path is not None:
        where["path"] = list(error.path)
    if error.locations:
        where["locations"] = [loc.formatted for loc in error.locations]
    if isinstance(original, RequestError):
        body = error_body(str(original), original.code, **original.extensions)
    elif isinstance(original, BadQuery):
        # A resolver should restate it with `bad_input`; the service's wording still helps.
        body = error_body(str(original), ErrorCode.BAD_USER_INPUT, argument=original.argument)
    elif isinstance(original, BackendUnavailable):
        log.warning("search backend unavailable at %s: %s", error.path, original)
        message = BACKEND_MESSAGE
        if original.missing:  # never a silent undercount: say whose data is missing
            message += f" (not searchable now: {', '.join(original.missing)})"
        body = error_body(message, ErrorCode(original.error_code))
    elif isinstance(original, FederationError):
        # Any other room's expected failure: its code is the contract, its message is
        # written for the person who asked.
        body = error_body(str(original), original.code)
    else:
        log.error("unexpected error at %s", error.path, exc_info=original or error)
        body = error_body(INTERNAL_MESSAGE, ErrorCode.INTERNAL_SERVER_ERROR)
    return {**body, **where}


def document_error(error: GraphQLError, code: str, arguments: dict[int, str]) -> dict[str, Any]:
    """Format a parse, validation or variable error, naming the argument it is about."""
    body = error_body(error.message, code)
    argument = next((arguments[id(n)] for n in error.nodes or () if id(n) in arguments), None)
    if argument is not None:
        body["message"] = f"{argument}: {error.message}"
        body["extensions"]["argument"] = argument
    if error.locations:
        body["locations"] = [loc.formatted for loc in error.locations]
    return body


def argument_paths(document: DocumentNode) -> dict[int, str]:
    """Map every argument, input field and value node of a document to its dotted path.

    graphql-core's validation messages say what is wrong with a value ("Int cannot
    represent non-integer value") but not where; the path (`query.ageMin`) says where.
    """
    paths: dict[int, str] = {}

    class _Arguments(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            paths[id(node)] = node.name.value
            _value_paths(node.value, node.name.value, paths)

    visit(document, _Arguments())
    return paths


def _value_paths(value: ValueNode, path: str, paths: dict[int, str]) -> None:
    paths[id(value)] = path
    if isinstance(value, ObjectValueNode):
        for field in value.fields:
            inner = f"{path}.{field.name.value}"
            paths[id(field)] = inner  # an unknown input field is reported on this node
            _value_paths(field.value, inner, paths)
    elif isinstance(value, ListValueNode):
        # Items share the list's path: the argument is what a researcher fixes.
        for item in value.values:
            _value_paths(item, path, paths)
