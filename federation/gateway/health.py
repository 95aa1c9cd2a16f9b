"""Liveness and readiness probes for process managers and load balancers."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from federation.runtime import Runtime
from federation.search.backend import BackendUnavailable
from federation.settings import SettingsError

log = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)


@blueprint.route("/healthz", methods=["GET"])
def healthz() -> Response:
    """The process is alive and serving HTTP; says nothing about the backend."""
    return jsonify({"status": "ok"})


@blueprint.route("/readyz", methods=["GET"])
def readyz() -> Response | tuple[Response, int]:
    """Ready when the backend can answer searches and the network file loads."""
    runtime = current_app.extensions["biofed"]
    assert isinstance(runtime, Runtime)
    try:
        if not runtime.backend.ready():
            return _unavailable("the search backend is not ready")
        runtime.network()
    except (BackendUnavailable, SettingsError) as err:
        return _unavailable(str(err))
    except Exception:
        # A probe must answer, never crash: an unexpected failure means "not ready".
        log.exception("readiness check failed")
        return _unavailable("readiness check failed; see the server log")
    return jsonify({"status": "ready"})


def _unavailable(reason: str) -> tuple[Response, int]:
    return jsonify({"status": "unavailable", "reason": reason}), 503
