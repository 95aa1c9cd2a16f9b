"""A sync of one biobank: pull, map, validate, quarantine, publish.

Two paths, by what the connector can do:

- **Read whole** (file exports: `resumable = False`): `FullSync` (`federation.sync.full`)
  pulls everything every run and publishes a new generation in one step.
- **Staged** (network sources: `resumable = True`): `StagedSync` (`federation.sync.staged`)
  stages records with checkpoints, resumes a killed run, and publishes a whole generation
  after a full pass or only the changed samples after an incremental one.

Both share the steps in `federation.sync.pipeline` and count into one `RunCounts`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from federation.search.backend import SearchBackend
from federation.search.warm import record_publish
from federation.settings import BiobankSource
from federation.sync import registry
from federation.sync.connector import ConfigError, Connector
from federation.sync.full import FullSync
from federation.sync.locks import SyncAlreadyRunning, biobank_lock
from federation.sync.pipeline import (
    Rejection,
    RunCounts,
    RunRequest,
    SyncFailed,
)
from federation.sync.recovery import settle_locked
from federation.sync.staged import StagedSync
from federation.sync.staging import FULL, INCREMENTAL
from federation.sync.state import FAILED, SyncRun, SyncState

log = logging.getLogger(__name__)

AUTO = "auto"
# An automatic-mode sync started from the CLI, without progress reports.
DEFAULT_REQUEST = RunRequest()

__all__ = ["AUTO", "Rejection", "RunCounts", "RunRequest", "SyncFailed", "sync_biobank"]


def sync_biobank(
    source: BiobankSource,
    backend: SearchBackend,
    state: SyncState,
    *,
    locks_dir: str | Path,
    request: RunRequest = DEFAULT_REQUEST,
) -> SyncRun:
    """Sync one biobank under its lock and record the run; raise SyncFailed on error.

    `request.mode` is `auto` (incremental when the source can and a full pass has
    published, else full), `full` or `incremental` (falls back to full when it cannot be
    done); `request` also says who started the run and where progress goes.
    """
    if request.mode not in (AUTO, FULL, INCREMENTAL):
        raise ValueError(f"mode: {request.mode!r} is not auto, full or incremental")
    biobank_id = source.biobank.id
    if source.allow_empty and not request.allow_empty:
        request = replace(request, allow_empty=True)  # the network file confirms it
    try:
        with biobank_lock(Path(locks_dir), biobank_id), _engine_lock(backend, biobank_id):
            # Under the lock, every run of this biobank still marked running is dead.
            if settle_locked(state, backend.published, biobank_id):
                # A dead run may have published without counting it: count it now.
                record_publish(backend, state.store.publications)
            return _locked_sync(source, backend, state, request)
    except SyncAlreadyRunning as err:
        # Refused attempts are recorded, so an admin sees who tried and what held the lock.
        state.record_refused(biobank_id, request.triggered_by, str(err))
        raise


def _locked_sync(
    source: BiobankSource, backend: SearchBackend, state: SyncState, request: RunRequest
) -> SyncRun:
    try:
        connector = _connector(source)
    except ConfigError as err:
        _record_unusable(state, source.biobank.id, request, err)
    sync = StagedSync if connector.resumable else FullSync
    return sync(connector, backend, state, request).run()


def _record_unusable(
    state: SyncState, biobank_id: str, request: RunRequest, err: ConfigError
) -> NoReturn:
    """A connector that cannot be built fails its run before reading anything."""
    log.warning("sync of %s failed: %s", biobank_id, err)
    run_id = state.start_run(biobank_id, FULL, request.triggered_by)
    state.finish_run(run_id, FAILED, RunCounts().as_dict(), duration_s=0.0, error=str(err))
    run = state.run(run_id)
    assert run is not None
    raise SyncFailed(run) from err


@contextlib.contextmanager
def _engine_lock(backend: SearchBackend, biobank_id: str) -> Iterator[None]:
    """The backend's cross-host lock; held elsewhere means a sync already runs there."""
    try:
        with backend.sync_lock(biobank_id):
            yield
    except BlockingIOError as err:
        raise SyncAlreadyRunning(
            f"a sync of {biobank_id} is running on another host: {err}"
        ) from None


def _connector(source: BiobankSource) -> Connector:
    cls = registry.connector_class(source.connector)
    return cls(source.biobank.id, source.options, base_dir=str(source.base_dir))
