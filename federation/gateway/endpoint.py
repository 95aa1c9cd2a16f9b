"""The `/graphql` HTTP endpoint: read a request, run it, answer with data and coded errors.

GraphQL errors (a syntax error, a wrong argument type, a failed resolver) come back as
200 with `errors`, per GraphQL over HTTP for `application/json`; a request that cannot be
read as GraphQL at all gets a 4xx with the same `errors` shape, so a client parses one shape.
Credentials that do not verify get 401 and a caller over its rate limit 429, before the
document is read; depth, cost and page sizes are checked before execution (docs/access.md).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, has_request_context, jsonify, request
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from federation.disclosure.roles import ANONYMOUS
from federation.errors import FederationError, RequestError
from federation.gateway.auth import Authenticator
from federation.gateway.context import GatewayContext
from federation.gateway.errors import (
    AuthenticationFailed,
    AuthenticationUnavailable,
    ErrorCode,
    argument_paths,
    document_error,
    error_body,
    execution_error,
)
from federation.gateway.language import localise_errors
from federation.gateway.limits import Limits, LimitsConfig, RequestTimeout, SearchesRateLimited
from federation.gateway.ratelimit import client_address
from federation.gateway.schema import schema
from federation.i18n import language_of
from federation.runtime import Runtime
from federation.search.audit import AuditLog, AuditUnavailable
from federation.search.audit_commit import deferred_audit

# Limits on what one request may ask the parser to do. The body cap is Flask's
# MAX_CONTENT_LENGTH (set in `create_app`); these bound GET requests as well.
MAX_QUERY_CHARS = 20_000
MAX_QUERY_TOKENS = 5_000
# Parsed and validated documents kept for repeated queries: this many, of at most this
# many characters each (the web UI's search is about 1,500).
DOCUMENT_CACHE_SIZE = 256
CACHED_QUERY_CHARS = 4_000

blueprint = Blueprint("graphql", __name__)


class BadRequest(FederationError):
    """The HTTP request is not a readable GraphQL request."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST, status: int = 400):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class GraphQLRequest:
    """A GraphQL request as read from GET parameters or a JSON body."""

    query: str
    variables: dict[str, Any]
    operation_name: str | None


# Where `create_app` keeps the per-process access services in `app.extensions`.
AUTH_EXTENSION = "biofed.auth"
LIMITS_EXTENSION = "biofed.limits"
AUDIT_EXTENSION = "biofed.audit"
# Where `run` leaves the request's operation in `flask.g`, for the latency label of
# gateway/metrics.py.
OPERATION_KEY = "graphql_operation"

_E = TypeVar("_E")


def _extension(name: str, kind: type[_E]) -> _E:
    value = current_app.extensions[name]
    assert isinstance(value, kind)
    return value


@blueprint.route("/graphql", methods=["GET", "POST"])
def graphql_endpoint() -> Response | tuple[Response, int]:
    """Run one GraphQL request."""
    limits = _extension(LIMITS_EXTENSION, Limits)
    client_ip = client_address(
        request.remote_addr,
        request.headers.get("X-Forwarded-For"),
        limits.config.trusted_proxy_hops,
    )
    misplaced = misplaced_key()
    if misplaced is not None:
        return _unauthenticated(AuthenticationFailed(misplaced, "invalid_request"))
    try:
        identity = _extension(AUTH_EXTENSION, Authenticator).authenticate(
            request.headers.get("Authorization"), request.headers.get("X-API-Key")
        )
    except AuthenticationFailed as err:
        # Failed attempts are charged to the address they come from, so guessing is slow.
        wait = limits.admit(ANONYMOUS, client_ip)
        return _rate_limited(wait) if wait is not None else _unauthenticated(err)
    except AuthenticationUnavailable as err:
        body = error_body(
            f"{err}, so the bearer token cannot be checked; try again shortly",
            ErrorCode.BACKEND_UNAVAILABLE,
        )
        return jsonify({"errors": [body]}), 503
    wait = limits.admit(identity, client_ip)
    if wait is not None:
        return _rate_limited(wait)
    try:
        graphql_request = _read_request()
    except BadRequest as err:
        return jsonify({"errors": [error_body(str(err), err.code)]}), err.status
    context = GatewayContext(
        _extension("biofed", Runtime),
        identity=identity,
        client_ip=client_ip,
        audit=_extension(AUDIT_EXTENSION, AuditLog),
        language=language_of(None, request.accept_languages),
    )
    try:
        body = run(
            schema.graphql_schema,
            graphql_request,
            context,
            queries_only=request.method == "GET",
            limits=limits,
        )
    except BadRequest as err:
        failed = {"errors": [error_body(str(err), err.code)]}
        return jsonify(localise_errors(failed, context.language)), err.status
    except SearchesRateLimited as err:
        return _rate_limited(err.wait)
    return jsonify(localise_errors(body, context.language))


# Where clients commonly put an API key that this service does not read from: answered with
# where the key goes, never silently taken as anonymous.
MISPLACED_KEY_PARAMETERS = ("api_key", "apikey", "api-key", "key", "access_token")
MISPLACED_KEY_HEADERS = ("Api-Key", "Apikey")
KEY_GOES = "send the API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`"


def misplaced_key() -> str | None:
    """Where the request put a key that is never read there, as a message; else None."""
    for name in request.args:
        if name.lower() in MISPLACED_KEY_PARAMETERS:
            return f"{KEY_GOES}, never in the URL (got a `{name}` query parameter)"
    for name in MISPLACED_KEY_HEADERS:
        if request.headers.get(name):
            return f"{KEY_GOES} (got an `{name}` header, which is not read)"
    return None


# RFC 6750 allows only these characters in an error_description.
_DESCRIPTION_CHARS = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _asked_language(body: dict[str, Any]) -> dict[str, Any]:
    """An early refusal (before a request context exists) in the Accept-Language's language."""
    return localise_errors(body, language_of(None, request.accept_languages))


def _unauthenticated(err: AuthenticationFailed) -> tuple[Response, int]:
    body = {"errors": [error_body(str(err), ErrorCode.UNAUTHENTICATED)]}
    response = jsonify(_asked_language(body))
    description = _DESCRIPTION_CHARS.sub("", str(err))
    response.headers["WWW-Authenticate"] = (
        f'Bearer realm="biofed", error="{err.error}", error_description="{description}"'
    )
    return response, 401


def _rate_limited(wait: float) -> tuple[Response, int]:
    seconds = max(1, math.ceil(wait))
    body = error_body(
        f"too many requests; try again in {seconds} s", ErrorCode.RATE_LIMITED, retryAfter=seconds
    )
    response = jsonify(_asked_language({"errors": [body]}))
    response.headers["Retry-After"] = str(seconds)
    return response, 429


def _checked_document(
    graphql_schema: GraphQLSchema, query: str
) -> tuple[DocumentNode, tuple[GraphQLError, ...]]:
    """A query's document and validation errors; those of short queries are remembered.

    Validation was most of the gateway's own CPU (about 7 of 10 ms for a search), and
    clients send the same few documents again and again with different variables. The
    result depends only on the schema and the text; a parse error is raised, not cached.
    Long texts are not kept, so a client cannot fill memory with big distinct documents.
    """
    if len(query) <= CACHED_QUERY_CHARS:
        return _remembered_document(graphql_schema, query)
    return _parse_and_validate(graphql_schema, query)


def _parse_and_validate(
    graphql_schema: GraphQLSchema, query: str
) -> tuple[DocumentNode, tuple[GraphQLError, ...]]:
    document = parse(query, max_tokens=MAX_QUERY_TOKENS)
    return document, tuple(validate(graphql_schema, document))


_remembered_document = functools.lru_cache(maxsize=DOCUMENT_CACHE_SIZE)(_parse_and_validate)


def run(
    graphql_schema: GraphQLSchema,
    graphql_request: GraphQLRequest,
    context: GatewayContext,
    *,
    queries_only: bool = False,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Parse, validate, check limits and execute a request; the response body, coded errors.

    Without `limits` the default limits apply (no rate limit: that is the endpoint's).
    """
    limits = limits or Limits(LimitsConfig(rate_limit=False), None)
    try:
        document, problems = _checked_document(graphql_schema, graphql_request.query)
    except GraphQLError as err:
        return {"errors": [document_error(err, ErrorCode.GRAPHQL_PARSE_FAILED, {})]}
    if problems:
        paths = argument_paths(document)
        return {
            "errors": [
                document_error(e, ErrorCode.GRAPHQL_VALIDATION_FAILED, paths) for e in problems
            ]
        }
    operation = _operation(document, graphql_request.operation_name)
    if isinstance(operation, dict):
        return operation
    if has_request_context():
        setattr(g, OPERATION_KEY, operation)
    if operation.operation is OperationType.SUBSCRIPTION:
        message = "subscription operations are not supported: send a query or a mutation"
        return {"errors": [error_body(message, ErrorCode.GRAPHQL_VALIDATION_FAILED)]}
    if queries_only and operation.operation is not OperationType.QUERY:
        # GET must stay safe to repeat and to cache; changes go over POST.
        raise BadRequest(
            f"{operation.operation.value} operations need POST",
            ErrorCode.METHOD_NOT_ALLOWED,
            405,
        )
    coerced = get_variable_values(
        graphql_schema, operation.variable_definitions or (), graphql_request.variables
    )
    if isinstance(coerced, list):
        # graphql-core's messages already name the variable and the path inside it.
        return {"errors": [document_error(e, ErrorCode.BAD_USER_INPUT, {}) for e in coerced]}
    try:
        cost = limits.check(graphql_schema, document, operation, coerced, context.identity)
    except RequestError as err:
        rejected: dict[str, Any] = {"errors": [error_body(str(err), err.code, **err.extensions)]}
        if "cost" in err.extensions:
            rejected["extensions"] = {"cost": err.extensions["cost"]}
        return rejected
    # Each search is a question of its own: the first rode on the request's token.
    limits.charge_searches(context.identity, context.client_ip or "unknown", cost.searches)
    deadline = limits.deadline()

    def execute() -> ExecutionResult:
        return execute_sync(
            graphql_schema,
            document,
            context_value=context,
            variable_values=graphql_request.variables,
            operation_name=graphql_request.operation_name,
            middleware=[deadline] if deadline.seconds is not None else None,
        )

    # A query's searches commit their audit rows while the answer is built, and the answer
    # waits for them below; a mutation may store what a search found, so its searches wait
    # for their row before going on (federation/search/audit_commit.py).
    deferring = deferred_audit() if operation.operation is OperationType.QUERY else nullcontext()
    try:
        with deferring as receipts:
            result = limits.run(execute, deadline)
    except RequestTimeout as err:
        return {
            "data": None,
            "errors": [error_body(str(err), err.code, **err.extensions)],
            "extensions": {"cost": cost.as_extension()},
        }
    if receipts is not None and not receipts.all_written():
        # Fail-closed: nothing of an answer whose search the log could not record leaves.
        refused = AuditUnavailable()
        return {"data": None, "errors": [error_body(str(refused), refused.code)]}
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [execution_error(e) for e in result.errors]
    body["extensions"] = {"cost": cost.as_extension()}
    if context.budget:
        # What is left of each privacy budget this request's searches spent from.
        body["extensions"]["privacyBudget"] = [s.as_extension() for s in context.budget.values()]
    return body


def _operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | dict[str, Any]:
    operation = get_operation_ast(document, operation_name)
    if operation is not None:
        return operation
    named = [
        d.name.value
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode) and d.name is not None
    ]
    if operation_name is not None:
        message = f"operationName: the document has no operation {operation_name!r}"
    elif named:
        message = f"operationName: required when a document has several operations ({named})"
    else:
        message = "the document has no operation to run"
    return {"errors": [error_body(message, ErrorCode.GRAPHQL_VALIDATION_FAILED)]}


def _read_request() -> GraphQLRequest:
    if request.method == "GET":
        return _graphql_request(dict(request.args), variables_as_text=True)
    if request.mimetype != "application/json":
        # Only JSON: a form or text/plain POST is what a cross-site page can send unasked.
        raise BadRequest(
            f"send the request as application/json (got {request.mimetype or 'no type'!r})",
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            415,
        )
    try:
        payload = json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object with `query`")
    return _graphql_request(payload, variables_as_text=False)


def _graphql_request(raw: Mapping[str, Any], *, variables_as_text: bool) -> GraphQLRequest:
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("`query` is missing: send the GraphQL document as `query`")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"`query` is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    variables = raw.get("variables")
    if variables_as_text and isinstance(variables, str):
        try:
            variables = json.loads(variables) if variables.strip() else None
        except ValueError:
            raise BadRequest("`variables` is not valid JSON") from None
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("`variables` must be a JSON object")
    operation_name = raw.get("operationName") or None
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("`operationName` must be a string")
    return GraphQLRequest(query, variables or {}, operation_name)
