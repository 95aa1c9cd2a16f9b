"""The `/graphql` HTTP endpoint: read a request, run it, answer with data and coded errors.

GraphQL errors (a syntax error, a wrong argument type, a failed resolver) come back as
200 with `errors`, per GraphQL over HTTP for `application/json`; a request that cannot be
read as GraphQL at all gets a 4xx with the same `errors` shape, so a client parses one shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from graphql import (
    DocumentNode,
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

from federation.gateway.context import GatewayContext
from federation.gateway.errors import (
    ErrorCode,
    argument_paths,
    document_error,
    error_body,
    execution_error,
)
from federation.gateway.schema import schema
from federation.runtime import Runtime

# Limits on what one request may ask the parser to do. The body cap is Flask's
# MAX_CONTENT_LENGTH (set in `create_app`); these bound GET requests as well.
MAX_QUERY_CHARS = 20_000
MAX_QUERY_TOKENS = 5_000

blueprint = Blueprint("graphql", __name__)


class BadRequest(Exception):
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


@blueprint.route("/graphql", methods=["GET", "POST"])
def graphql_endpoint() -> Response | tuple[Response, int]:
    """Run one GraphQL request."""
    try:
        graphql_request = _read_request()
    except BadRequest as err:
        return jsonify({"errors": [error_body(str(err), err.code)]}), err.status
    runtime = current_app.extensions["biofed"]
    assert isinstance(runtime, Runtime)
    try:
        body = run(
            schema.graphql_schema,
            graphql_request,
            GatewayContext(runtime),
            queries_only=request.method == "GET",
        )
    except BadRequest as err:
        return jsonify({"errors": [error_body(str(err), err.code)]}), err.status
    return jsonify(body)


def run(
    graphql_schema: GraphQLSchema,
    graphql_request: GraphQLRequest,
    context: GatewayContext,
    *,
    queries_only: bool = False,
) -> dict[str, Any]:
    """Parse, validate and execute a request; return the response body with coded errors."""
    try:
        document = parse(graphql_request.query, max_tokens=MAX_QUERY_TOKENS)
    except GraphQLError as err:
        return {"errors": [document_error(err, ErrorCode.GRAPHQL_PARSE_FAILED, {})]}
    problems = validate(graphql_schema, document)
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
    result = execute_sync(
        graphql_schema,
        document,
        context_value=context,
        variable_values=graphql_request.variables,
        operation_name=graphql_request.operation_name,
    )
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [execution_error(e) for e in result.errors]
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
