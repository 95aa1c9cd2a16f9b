"""The GraphQL gateway: a Flask app serving the public GraphQL API and health probes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

from federation.gateway import beacon, endpoint, health, web
from federation.gateway.auth import Authenticator
from federation.gateway.auth_config import AuthConfig
from federation.gateway.errors import INTERNAL_MESSAGE, ErrorCode, error_body
from federation.gateway.limits import Limits, LimitsConfig
from federation.runtime import Runtime
from federation.settings import Settings, load_settings

log = logging.getLogger(__name__)

# Bodies larger than this are refused with 413 before they are read: a GraphQL request
# is a document and a few variables, never a data upload.
MAX_REQUEST_BYTES = 64 * 1024

# Paths whose HTTP errors (405, 413, ...) are answered as JSON with a code, because their
# clients are programs; other paths (the web UI) keep Flask's HTML error pages.
_API_PATHS = ("/graphql", "/healthz", "/readyz")

_HTTP_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the gateway app: defaults, then settings files and environment, then test_config.

    `test_config` may carry a ready `settings` object (a `Settings`) instead of having the
    settings loaded from `BIOFED_CONFIG`, `config/settings.yaml` and BIOFED_* variables.
    """
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES)
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # `data` before `errors`, `message` first: as GraphQL shows them
    overrides = dict(test_config or {})
    settings = overrides.pop("settings", None) or overrides.pop("SETTINGS", None)
    if settings is None:
        config_file = os.environ.get("BIOFED_CONFIG")
        settings = load_settings(config_file=Path(config_file) if config_file else None)
    if not isinstance(settings, Settings):
        raise TypeError(f"test_config['settings'] must be a Settings, got {type(settings)!r}")
    app.config["SECRET_KEY"] = settings.secret_key or None
    app.config.from_mapping(overrides)
    # One runtime per process: it holds the backend's connections, which gunicorn must
    # not fork (preload_app is off), so each worker builds its own here.
    runtime = Runtime(settings)
    app.extensions["biofed"] = runtime
    # Access: parsed here so a bad `auth` or `limits` section stops the worker at start.
    app.extensions[endpoint.AUTH_EXTENSION] = Authenticator(AuthConfig.parse(settings.auth))
    app.extensions[endpoint.LIMITS_EXTENSION] = Limits(
        LimitsConfig.parse(settings.limits), runtime.store.rate_buckets
    )
    # The log the runtime's search service writes every answered search to; read by
    # `auditLog` for operators.
    app.extensions[endpoint.AUDIT_EXTENSION] = runtime.audit

    app.register_blueprint(endpoint.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(web.blueprint)
    app.register_blueprint(beacon.blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _http_error(error: HTTPException) -> Response | HTTPException:
    if not request.path.startswith(_API_PATHS):
        return error
    status = error.code or 500
    code = _HTTP_CODES.get(status) or (
        ErrorCode.INTERNAL_SERVER_ERROR if status >= 500 else ErrorCode.BAD_REQUEST
    )
    response = jsonify({"errors": [error_body(error.description or error.name, code)]})
    response.status_code = status
    if isinstance(error, MethodNotAllowed):
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
    return response


def _unexpected_error(error: Exception) -> Response | HTTPException | tuple[Response, int]:
    # Flask sends HTTPExceptions to `_http_error` (the closer match); this sees the rest.
    log.error("unhandled error serving %s", request.path, exc_info=error)
    if not request.path.startswith(_API_PATHS):
        return InternalServerError(original_exception=error)
    body = error_body(INTERNAL_MESSAGE, ErrorCode.INTERNAL_SERVER_ERROR)
    return jsonify({"errors": [body]}), 500
