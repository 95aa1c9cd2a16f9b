"""The steps every sync of one biobank shares: pull, validate, quarantine, publish, record.

`BiobankSync` holds one run's parts (connector, backend, state store, what was asked)
and its `RunCounts`; `FullSync` (`federation.sync.full`) and `StagedSync`
(`federation.sync.staged`) supply the read-and-publish step between starting the run
record and finishing it.
"""

from __future__ import annotations

import abc
import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NoReturn

from marshmallow import Schema, ValidationError
from sqlalchemy.exc import OperationalError

from federation import faults
from federation.errors import FederationError
from federation.model.records import QUICK_LOADERS, Collection, describe_errors
from federation.model.salvage import (
    dropped_by_connector,
    load_keeping_good_values,
    quarantine_text,
)
from federation.search.backend import SearchBackend

# Published with each generation's metadata; re-exported for the sync runs.
from federation.search.documents import collection_json as collection_json
from federation.search.warm import record_publish
from federation.sync.completeness import check_not_empty
from federation.sync.connector import Connector, RecordRejected, SourceRecord, Stream
from federation.sync.state import FAILED, SUCCEEDED, SyncRun, SyncState

log = logging.getLogger(__name__)

# Rows handed to the backend writer at once: large enough for columnar writes to be
# efficient, small enough to keep a sync's memory flat.
WRITE_BATCH = 50_000
PROGRESS_STEP = 10_000

Progress = Callable[[str, int], None]


@dataclass
class RunCounts:
    """What one run did, as recorded with it (`biofed runs`, the admin API)."""

    read: int = 0
    indexed: int = 0
    rejected: int = 0
    deleted: int = 0
    withdrawn: int = 0
    partial: int = 0  # records kept without some values (each with a quarantine row)
    tombstones: int = 0  # deletions the source reported (so a read of them is not silence)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class RunRequest:
    """What a caller asked of a sync: the mode, who started it, where progress goes."""

    mode: str = "auto"
    triggered_by: str = "cli"
    progress: Progress | None = None
    # Publish a full read of zero records where the last successful run read some.
    allow_empty: bool = False
    # The shrink guard (`federation.sync.guards`): the largest fraction of the indexed
    # samples a full sync may delete, and whether an admin confirmed a larger shrink.
    max_shrink: float = 0.5
    allow_shrink: bool = False


@dataclass
class Rejection:
    """A record that cannot be used: where it came from, which field and value, why."""

    stream: str
    source_id: str | None
    position: str
    field: str
    value: Any
    reason: str
    payload: Any
    kept: bool = False  # the record is indexed; only the values named here were dropped

    def as_row(self) -> dict[str, Any]:
        return {
            "kept": int(self.kept),
            "stream": self.stream,
            "record_key": self.source_id or self.position,
            "source_id": self.source_id,
            "position": self.position,
            "field": self.field,
            "value": None if self.value is None else str(self.value)[:500],
            "reason": self.reason,
            "payload": dict(self.payload) if hasattr(self.payload, "items") else self.payload,
        }


class SyncFailed(FederationError, RuntimeError):
    """A sync run failed; the previous generation keeps serving."""

    code = "SYNC_FAILED"

    def __init__(self, run: SyncRun) -> None:
        super().__init__(f"sync of {run.biobank_id} failed: {run.error}")
        self.run = run


class StateDiskFull(FederationError, OSError):
    """The sync state database could not be written: its disk is full."""

    code = "STATE_DISK_FULL"


def disk_full(err: OperationalError) -> bool:
    """Whether the state database failed because its disk is full (SQLite says SQLITE_FULL)."""
    code = getattr(err.orig, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "full" in str(err.orig)


class BiobankSync(abc.ABC):
    """One run of one biobank: start the run record, `execute`, finish or fail it."""

    # Errors that end a run as failed (recorded, SyncFailed raised); others propagate.
    failures: ClassVar[tuple[type[Exception], ...]]

    def __init__(
        self,
        connector: Connector,
        backend: SearchBackend,
        state: SyncState,
        request: RunRequest,
    ) -> None:
        self.connector = connector
        self.backend = backend
        self.state = state
        self.request = request
        self.counts = RunCounts()
        self.run_id = 0
        self.started = time.monotonic()
        # Set once the new generation serves: a later failure must not hide that.
        self.published: str | None = None

    @property
    def biobank_id(self) -> str:
        return self.connector.biobank_id

    def run(self) -> SyncRun:
        """Do the sync and record it; raise SyncFailed (after recording) on a failure."""
        try:
            if self.state.reserve_spent:
                raise self.state_full("its disk is full")
            generation = self.execute()
            self.annotate()
            self.state.finish_run(
                self.run_id,
                SUCCEEDED,
                self.counts.as_dict(),
                duration_s=time.monotonic() - self.started,
                generation=generation,
            )
            faults.reached("after_record")
        except self.failures as err:
            self.fail(err)
        except OperationalError as err:
            if not (disk_full(err) or self.state.disk_full()):
                raise
            self.fail(self.state_full(str(err.orig)))
        finally:
            self.connector.close()
        return self.recorded()

    def state_full(self, why: str) -> StateDiskFull:
        """The error of a run stopped because the state database's disk is full."""
        return StateDiskFull(
            errno.ENOSPC, f"the sync state database cannot be written: {why}", str(self.state.path)
        )

    @abc.abstractmethod
    def execute(self) -> str | None:
        """Read the source and publish; start the run record; return the generation."""

    def start(self, kind: str) -> None:
        self.run_id = self.state.start_run(self.biobank_id, kind, self.request.triggered_by)

    def fail(self, err: Exception) -> NoReturn:
        """Record the run as failed with the counts so far and raise SyncFailed."""
        log.warning("sync of %s failed: %s", self.biobank_id, err)
        error = str(err)
        if self.published is not None:
            error = f"published generation {self.published}, then failed: {error}"

        def record() -> None:
            if not self.run_id:
                self.start("full")
            self.annotate()
            self.state.finish_run(
                self.run_id,
                FAILED,
                self.counts.as_dict(),
                duration_s=time.monotonic() - self.started,
                generation=self.published,
                error=error,
            )

        # On a full disk the state database may be full too: the space it keeps in
        # reserve is freed for this record.
        self.state.despite_full_disk(record)
        raise SyncFailed(self.recorded()) from err

    def annotate(self) -> None:
        """Record how the source was read (the connector's notes) and the partly accepted."""
        self.state.annotate_run(self.run_id, self.connector.notes, self.counts.partial)

    def check_not_empty(self, read: int) -> None:
        """Fail a full read of zero records after a successful one of some (unless allowed)."""
        check_not_empty(self.state, self.biobank_id, read, allow_empty=self.request.allow_empty)

    def recorded(self) -> SyncRun:
        run = self.state.run(self.run_id)
        assert run is not None
        return run

    def count_read(self) -> None:
        self.counts.read += 1
        if self.request.progress and self.counts.read % PROGRESS_STEP == 0:
            self.request.progress("read", PROGRESS_STEP)

    def stream(self, kind: str) -> Stream | None:
        return stream_of(self.connector, kind)

    def validate(self, schema: Schema, item: SourceRecord) -> tuple[Any, Rejection | None]:
        """Map and validate one record: the canonical record, or why it cannot be used."""
        return validate(self.connector, schema, item)

    def write_generation(
        self, collections: Mapping[str, Collection], rows: Iterable[list[dict[str, Any]]]
    ) -> tuple[str, int]:
        """Write batches of rows as a new generation and publish it: (generation, rows)."""
        with self.backend.generation_writer(self.biobank_id) as writer:
            writer.metadata = {"collections": [collection_json(c) for c in collections.values()]}
            for batch in rows:
                writer.add(batch)
            # As FullSync does: a run killed after this publish is settled as a success.
            self.state.store.runs.prepare_publish(
                self.run_id, writer.generation, self.counts.as_dict(), None
            )
            info = writer.publish()
            self.published = info.generation
            record_publish(self.backend, self.state.store.publications)
        return info.generation, info.documents


def stream_of(connector: Connector, kind: str) -> Stream | None:
    """The connector's stream of one record kind, if it has one."""
    return next((s for s in connector.streams if s.record == kind), None)


def batched(rows: Iterable[dict[str, Any]], size: int = WRITE_BATCH) -> Iterable[list[Any]]:
    """Rows in lists of `size` (the last one possibly empty when nothing is left)."""
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    yield batch


def validate(
    connector: Connector, schema: Schema, item: SourceRecord
) -> tuple[Any, Rejection | None]:
    """Map and validate one record: the canonical record, or why it cannot be used.

    A record kept without some of its values comes with a Rejection (`kept`) naming them.
    """
    mapped: Any = None
    try:
        mapped = connector.map(item)
        dropped = dropped_by_connector(mapped)
        # Most rows are plain valid text: built without marshmallow; the rest (and every
        # rejection) go through the schema.
        quick = QUICK_LOADERS.get(type(schema))
        record = quick(mapped) if quick is not None else None
        if record is None:
            try:
                record = schema.load(mapped)
            except ValidationError as err:
                record, invalid = load_keeping_good_values(schema, mapped, err)
                dropped += invalid
        if not dropped:
            return record, None
        fields_, values, reason = quarantine_text(dropped)
        return record, Rejection(
            item.stream, item.source_id, item.position, fields_, values, reason, item.payload, True
        )
    except RecordRejected as err:
        return None, Rejection(
            item.stream,
            item.source_id,
            item.position,
            err.field,
            err.value,
            err.reason,
            item.payload,
        )
    except ValidationError as err:
        lines = describe_errors(err.messages)
        first_field = lines[0].split(":", 1)[0] if lines else ""
        return None, Rejection(
            item.stream,
            item.source_id,
            item.position,
            first_field,
            _value_at(mapped, first_field),
            "; ".join(lines),
            item.payload,
        )


def _value_at(mapped: Any, path: str) -> Any:
    """The mapped value an error path like `diagnoses[1]` points at."""
    base, _, rest = path.partition("[")
    value = mapped.get(base.split(".", 1)[0]) if isinstance(mapped, dict) else None
    if rest and isinstance(value, list):
        index = rest.split("]", 1)[0]
        if index.isdigit() and int(index) < len(value):
            return value[int(index)]
    return value
