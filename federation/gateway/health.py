"""Liveness and readiness probes for process managers and load balancers."""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

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
            return _unavailable("the search backend is not ready" + _damage(runtime))
        runtime.network()
        reason = searches_answerable(runtime)
        if reason is not None:
            return _unavailable(reason)
    except (BackendUnavailable, SettingsError) as err:
        return _unavailable(str(err))
    except Exception:
        # A probe must answer, never crash: an unexpected failure means "not ready".
        log.exception("readiness check failed")
        return _unavailable("readiness check failed; see the server log")
    return jsonify({"status": "ready"})


def _damage(runtime: Runtime) -> str:
    """Which biobanks are not searchable whole, when the backend can tell."""
    try:
        damaged = runtime.backend.damaged()
    except BackendUnavailable:
        return ""
    return "".join(f"; {b}: {why}" for b, why in sorted(damaged.items()))


def searches_answerable(runtime: Runtime) -> str | None:
    """Why searches cannot be answered correctly now, or None when they can.

    Every biobank of the network that a sync published must be served whole (a node
    restarted on empty data serves 0 for all, which is no answer), and the audit log must
    take a write: a search it cannot record is refused, so a full data disk fails them all.
    """
    unwritable = _audit_unwritable(runtime)
    if unwritable is not None:
        return unwritable
    published = runtime.backend.published()
    network = {source.biobank.id for source in runtime.network().biobanks}
    try:
        expected = runtime.state.published_biobanks()
    except SQLAlchemyError as err:
        return f"the sync state database {runtime.state.path} cannot be read: {err}"
    missing = sorted(b for b in expected if b in network and b not in published)
    if missing:
        return (
            f"published generations missing from the search backend: {', '.join(missing)} "
            "(resync them: biofed sync --biobank ID)"
        )
    damaged = runtime.backend.damaged()
    if damaged:
        return "generations not whole: " + "; ".join(
            f"{b}: {w}" for b, w in sorted(damaged.items())
        )
    return _audit_unwritable(runtime)


# Written and removed by each readiness check: a full disk refuses even this much.
PROBE_BYTES = 4096


def _audit_unwritable(runtime: Runtime) -> str | None:
    store = runtime.store
    audit = store.file
    if audit is None:
        # A database server: it must answer; its disks are its operator's to watch.
        try:
            with store.read() as db:
                db.execute(text("SELECT 1"))
        except SQLAlchemyError as err:
            return f"the state store {store.location} (the audit log) cannot be reached: {err}"
        return None
    probe = audit.parent / f".readyz-probe-{os.getpid()}"
    try:
        audit.parent.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
        if audit.exists() and not os.access(audit, os.W_OK):
            return f"the audit log {audit} is not writable"
    except OSError as err:
        return f"the audit log's folder {audit.parent} takes no writes: {err}"
    finally:
        probe.unlink(missing_ok=True)
    return None


def _unavailable(reason: str) -> tuple[Response, int]:
    return jsonify({"status": "unavailable", "reason": reason}), 503
