"""gunicorn settings for the GraphQL gateway: `gunicorn -c python:federation.gunicorn_conf`.

Bind address and worker count come from the biofed settings (the package's defaults, the
file named by BIOFED_CONFIG, then BIOFED_HOST / BIOFED_PORT / BIOFED_WORKERS), so the
gateway and `biofed` agree on them; the defaults are 127.0.0.1:8000 with 2 workers.
"""

import os
import shutil
import tempfile
from pathlib import Path

from federation.settings import load_settings

_config_file = os.environ.get("BIOFED_CONFIG")
_settings = load_settings(config_file=Path(_config_file) if _config_file else None)

wsgi_app = "federation.gateway.wsgi:app"
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers

# Threads serve concurrent requests inside a worker: searches wait on the backend, and
# the embedded backend gives each thread its own DuckDB cursor.
worker_class = "gthread"
threads = 4

# Searches are sub-second; a request still running after 30 s is stuck, not slow.
timeout = 30
graceful_timeout = 20
keepalive = 5

# Each worker must open its own backend: DuckDB connections (and SQLite handles) do not
# survive a fork, so the app is built after forking, never in the master.
preload_app = False

# GET /graphql carries the document in the URL; allow the longest line gunicorn permits.
limit_request_line = 8190

# One line per request on stdout, for the container's log collector.
accesslog = "-"
errorlog = "-"
# The path without its query string (%(U)s, not the request line %(r)s): a client that puts
# a credential in the URL (`?api_key=`, refused) must not have it written to the log.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'

# gunicorn >= 25 opens a control socket at one fixed per-user path by default: several
# gateways on one host would fight over it, and a read-only home breaks startup. Older
# gunicorn ignores the setting.
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    """Build the disease name index (with Japanese names, about a second) before serving,
    so the first researcher to type in the search box does not wait for it; and watch for
    publishes, so the first search after one does not wait for the new snapshot and warm
    answer to be read (federation/search/warm.py)."""
    from federation.model.disease_names import default_names
    from federation.search.warm import PublishedAnswers

    default_names()
    app = getattr(worker, "wsgi")  # noqa: B009
    source = app.extensions["biofed"].search.source
    if isinstance(source, PublishedAnswers):
        source.watch()


# /metrics in multiprocess mode (docs/metrics.md): each worker writes its counters to files
# in one folder and a scrape sums them. The folder is private to this gunicorn (mode 0700
# from mkdtemp), made empty at each start so no counts of an earlier run are summed in,
# and removed at exit. Set in the master before any worker forks and imports the client.
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server: object) -> None:
    """Give this gunicorn's workers a fresh private folder for their metrics."""
    folder = tempfile.mkdtemp(prefix="biofed-metrics-")
    os.environ[METRICS_ENV] = folder
    getattr(server, "log").info("metrics folder: %s", folder)  # noqa: B009


def child_exit(server: object, worker: object) -> None:
    """Drop the live gauges of a worker that ended; its counters stay summed in."""
    from prometheus_client import multiprocess

    pid = getattr(worker, "pid")  # noqa: B009
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def on_exit(server: object) -> None:
    """Remove the metrics folder of this gunicorn."""
    folder = os.environ.pop(METRICS_ENV, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
