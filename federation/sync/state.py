"""Sync state shared by sync processes and servers: runs, quarantine, checkpoints.

It lives in the state store (`federation/state/`: `state.db` in the data folder, or the
PostgreSQL database `state_url` names); this is the sync's view of it, plus the space kept
in reserve so that a run that filled the disk can still record why it failed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from federation.settings import Settings
from federation.state import StateStore, open_state_store
from federation.state.database import SQLITE
from federation.state.sync_records import (
    FAILED,
    INTERRUPTED,
    REFUSED,
    RUNNING,
    SUCCEEDED,
    QuarantinedRecord,
    RunEnd,
    SyncRun,
    cap_payload,
    now,
)

__all__ = [
    "FAILED",
    "INTERRUPTED",
    "REFUSED",
    "RUNNING",
    "SUCCEEDED",
    "QuarantinedRecord",
    "SyncRun",
    "SyncState",
    "cap_payload",
    "now",
]

# Space kept in a file beside the SQLite database and freed when the disk is full, so the
# run that hit the full disk can still record why it failed.
RESERVE_BYTES = 1 << 20


class SyncState:
    """Sync runs, quarantined records and checkpoints in the state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        database = store.engine.url.database
        embedded = store.engine.dialect.name == SQLITE and database is not None
        # Where the state is, for messages: the SQLite file, or the database's URL.
        self.path: Path | str = Path(database) if embedded and database else store.location
        # A full disk under a database server is its operator's; the reserve is for the
        # embedded file, which shares the data folder's disk with the index.
        self.reserve = (
            self.path.with_name(self.path.name + ".reserve")
            if isinstance(self.path, Path)
            else None
        )
        # Set when the reserve had to be freed: the disk is full, and the space freed is for
        # recording runs, not for a sync to fill again.
        self.reserve_spent = False
        self._keep_reserve()

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncState:
        """The sync state of the store the settings name (`state_url`, else the data folder)."""
        return cls(open_state_store(settings.state_url, settings.data_dir))

    def _keep_reserve(self) -> None:
        if self.reserve is None or self.reserve.exists():
            return
        try:
            with self.reserve.open("wb") as handle:
                handle.write(b"\0" * RESERVE_BYTES)  # written, not sparse: real blocks
        except OSError:  # the disk is full already: try again next time
            self.reserve.unlink(missing_ok=True)

    def despite_full_disk(self, write: Callable[[], None]) -> None:
        """Run a state write; if the disk is full, free the reserve and run it once more."""
        try:
            write()
        except OperationalError:
            if self.reserve is None or not self.reserve.exists() or not self.disk_full():
                raise
            self.reserve.unlink(missing_ok=True)
            self.reserve_spent = True
            write()

    def disk_full(self) -> bool:
        """Whether the database's disk has less room left than the reserve holds.

        SQLite reports a full disk as "database or disk is full", or, when it cannot even
        create its shared-memory file, as a "disk I/O error"; the free space tells them apart.
        """
        if not isinstance(self.path, Path):
            return False
        return shutil.disk_usage(self.path.parent).free < RESERVE_BYTES

    # --- runs -----------------------------------------------------------------------------

    def start_run(self, biobank_id: str, kind: str, triggered_by: str) -> int:
        """Record a run as running (one left running by a killed process is interrupted)."""
        return self.store.runs.start(biobank_id, kind, triggered_by)

    def record_refused(self, biobank_id: str, triggered_by: str, reason: str) -> int:
        """Record a sync that was refused before it started (another holds the lock)."""
        return self.store.runs.refused(biobank_id, triggered_by, reason)

    def pending_quarantine(self, run_id: int) -> list[dict[str, Any]] | None:
        """The quarantine a run recorded before publishing, if it did."""
        return self.store.runs.pending_quarantine(run_id)

    def settle_run(self, run_id: int, outcome: str, error: str, *, published: bool) -> None:
        """End a run whose process died: `published` keeps its generation, else clears it."""
        self.store.runs.settle(run_id, outcome, error, published=published)

    def finish_run(
        self,
        run_id: int,
        outcome: str,
        counts: Mapping[str, int],
        *,
        duration_s: float,
        generation: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record how a run ended."""
        end = RunEnd(outcome, counts, duration_s, generation, error)
        self.store.runs.finish(run_id, end)

    def annotate_run(self, run_id: int, notes: list[str], partial: int = 0) -> None:
        """Say how the source was read, and how many records were kept in part."""
        self.store.runs.annotate(run_id, notes, partial)

    def last_success(self, biobank_id: str, kind: str) -> SyncRun | None:
        """The biobank's most recent succeeded run of this kind (full or incremental)."""
        return self.store.runs.last_success(biobank_id, kind)

    def runs(self, biobank_id: str | None = None, limit: int = 50) -> list[SyncRun]:
        """The latest runs, newest first, of one biobank or of all."""
        return self.store.runs.history(biobank_id, limit)

    def published_biobanks(self) -> set[str]:
        """Biobanks that some run published a generation of: the backend must serve them."""
        return self.store.runs.published_biobanks()

    def run(self, run_id: int) -> SyncRun | None:
        """One run by id."""
        return self.store.runs.get(run_id)

    # --- quarantine -----------------------------------------------------------------------

    def replace_quarantine(
        self, biobank_id: str, run_id: int, records: list[dict[str, Any]]
    ) -> None:
        """After a full sync: what it rejected is the quarantine; fixed records leave it."""
        self.store.quarantine.replace(biobank_id, run_id, records)

    def quarantine(
        self, biobank_id: str, *, limit: int = 100, offset: int = 0, stream: str | None = None
    ) -> list[QuarantinedRecord]:
        """A page of a biobank's quarantined records, by stream and record key."""
        return self.store.quarantine.page(biobank_id, limit=limit, offset=offset, stream=stream)

    def biobank_ids(self) -> list[str]:
        """Biobanks with a sync history or quarantined records."""
        return self.store.runs.biobank_ids()

    def quarantine_count(self, biobank_id: str) -> int:
        """How many of a biobank's records are in quarantine."""
        return self.store.quarantine.count(biobank_id)

    # --- checkpoints ----------------------------------------------------------------------

    def checkpoint(self, biobank_id: str, stream: str) -> dict[str, Any] | None:
        """The saved state of a stream, or None."""
        return self.store.checkpoints.get(biobank_id, stream)

    def save_checkpoint(self, biobank_id: str, stream: str, state: Mapping[str, Any]) -> None:
        """Replace the saved state of a stream."""
        self.store.checkpoints.save(biobank_id, stream, state)
