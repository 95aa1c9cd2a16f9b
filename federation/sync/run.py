"""A sync of one biobank: pull, map, validate, quarantine, publish.

Two paths, by what the connector can do:

- **Read whole** (file exports: `resumable = False`): every run pulls everything;
  collections and donors are held in memory, samples stream to a new generation, which is
  published in one step. A killed run leaves the previous generation serving.
- **Staged** (network sources: `resumable = True`): records are staged in the sync state
  store batch by batch with the checkpoint after each (`federation.sync.staging`). A killed
  or failed run is resumed by the next one from its last checkpoint. A *full* pass reads
  everything and ends by marking what it did not see as deleted (an id comparison), then
  publishes a whole generation; an *incremental* pass reads from each stream's bookmark,
  applies tombstones, and publishes only the changed samples (`apply_changes`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from marshmallow import Schema, ValidationError

from federation.errors import FederationError
from federation.model.records import (
    QUICK_LOADERS,
    SCHEMAS,
    Collection,
    Donor,
    consent_to_json,
    describe_errors,
)
from federation.search.backend import BackendUnavailable, SearchBackend
from federation.search.documents import Orphan, donor_ordinals, join_sample
from federation.settings import BiobankSource
from federation.sync import registry
from federation.sync.connector import (
    RECORD_KINDS,
    Checkpoint,
    ConfigError,
    Connector,
    RecordRejected,
    SourceError,
    SourceRecord,
    Stream,
    Tombstone,
)
from federation.sync.locks import SyncAlreadyRunning, biobank_lock
from federation.sync.staging import FULL, INCREMENTAL, StagedChange, Staging, encode
from federation.sync.state import FAILED, SUCCEEDED, SyncRun, SyncState

log = logging.getLogger(__name__)

# Rows handed to the backend writer at once: large enough for columnar writes to be
# efficient, small enough to keep a sync's memory flat.
WRITE_BATCH = 50_000
PROGRESS_STEP = 10_000
# Staged records written per transaction when a page is larger than this.
STAGE_BATCH = 5_000
AUTO = "auto"

Progress = Callable[[str, int], None]


@dataclass
class Rejection:
    stream: str
    source_id: str | None
    position: str
    field: str
    value: Any
    reason: str
    payload: Any

    def as_row(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "record_key": self.source_id or self.position,
            "source_id": self.source_id,
            "position": self.position,
            "field": self.field,
            "value": None if self.value is None else str(self.value)[:500],
            "reason": self.reason,
            "payload": dict(self.payload) if hasattr(self.payload, "items") else self.payload,
        }


@dataclass
class _Pulled:
    collections: dict[str, Collection] = field(default_factory=dict)
    donors: dict[str, Donor] = field(default_factory=dict)
    rejected_donors: dict[str, str] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    read: int = 0


class SyncFailed(FederationError, RuntimeError):
    """A sync run failed; the previous generation keeps serving."""

    code = "SYNC_FAILED"

    def __init__(self, run: SyncRun) -> None:
        super().__init__(f"sync of {run.biobank_id} failed: {run.error}")
        self.run = run


def sync_biobank(
    source: BiobankSource,
    backend: SearchBackend,
    state: SyncState,
    *,
    locks_dir: Any,
    triggered_by: str = "cli",
    progress: Progress | None = None,
    mode: str = AUTO,
) -> SyncRun:
    """Sync one biobank under its lock and record the run; raise SyncFailed on error.

    `mode` is `auto` (incremental when the source can and a full pass has published,
    else full), `full` or `incremental` (falls back to full when it cannot be done).
    """
    if mode not in (AUTO, FULL, INCREMENTAL):
        raise ValueError(f"mode: {mode!r} is not auto, full or incremental")
    biobank_id = source.biobank.id
    with biobank_lock(locks_dir, biobank_id), _engine_lock(backend, biobank_id):
        try:
            connector = _connector(source)
        except ConfigError as err:
            run_id = state.start_run(biobank_id, FULL, triggered_by)
            _fail(state, run_id, biobank_id, {}, time.monotonic(), err)
        if connector.resumable:
            return _staged_sync(source, connector, backend, state, triggered_by, progress, mode)
        run_id = state.start_run(biobank_id, FULL, triggered_by)
        started = time.monotonic()
        counts = {"read": 0, "indexed": 0, "rejected": 0, "deleted": 0, "withdrawn": 0}
        pulled = _Pulled()
        try:
            previous = backend.sample_ids(biobank_id)
            kept: set[str] = set()
            try:
                with backend.generation_writer(biobank_id) as writer:
                    # Collections and donors are few and held in memory; samples stream
                    # through to the writer in batches, so memory stays flat at any size.
                    _pull_references(connector, pulled, progress)
                    writer.metadata = {
                        "collections": [_collection_json(c) for c in pulled.collections.values()]
                    }
                    for batch in _sample_batches(connector, pulled, counts, kept, progress):
                        writer.add(batch)
                    info = writer.publish()
            finally:
                connector.close()
            counts["read"] = pulled.read
            counts["rejected"] = len(pulled.rejections)
            counts["indexed"] = info.documents
            counts["deleted"] = len(previous - kept)
            state.replace_quarantine(biobank_id, run_id, [r.as_row() for r in pulled.rejections])
            # A biobank that moved from a network source to file exports: its staged
            # records describe a source it no longer has.
            Staging(state).forget(biobank_id)
            state.finish_run(
                run_id,
                SUCCEEDED,
                counts,
                duration_s=time.monotonic() - started,
                generation=info.generation,
            )
        except (SourceError, ConfigError, OSError) as err:
            counts["read"] = pulled.read
            _fail(state, run_id, biobank_id, counts, started, err)
    run = state.run(run_id)
    assert run is not None
    return run


def _fail(
    state: SyncState,
    run_id: int,
    biobank_id: str,
    counts: dict[str, int],
    started: float,
    err: Exception,
) -> NoReturn:
    log.warning("sync of %s failed: %s", biobank_id, err)
    state.finish_run(run_id, FAILED, counts, duration_s=time.monotonic() - started, error=str(err))
    run = state.run(run_id)
    assert run is not None
    raise SyncFailed(run) from err


# --- staged syncs (resumable connectors) -------------------------------------------------


def _staged_sync(
    source: BiobankSource,
    connector: Connector,
    backend: SearchBackend,
    state: SyncState,
    triggered_by: str,
    progress: Progress | None,
    mode: str,
) -> SyncRun:
    biobank_id = source.biobank.id
    staging = Staging(state)
    current = staging.current_pass(biobank_id)
    started = time.monotonic()
    counts = {"read": 0, "indexed": 0, "rejected": 0, "deleted": 0, "withdrawn": 0}
    run_id = 0
    try:
        resume = (
            current is not None
            and not current.finished
            and not (mode == FULL and current.mode == INCREMENTAL)
        )
        if resume:
            assert current is not None
            sync_pass = current
        else:
            streams = [s.name for s in connector.streams]
            can_increment = (
                mode != FULL
                and current is not None
                and current.finished
                and connector.incremental()
                and staging.has_bookmarks(biobank_id, streams)
                and biobank_id in backend.published()
            )
            sync_pass = staging.begin_pass(biobank_id, INCREMENTAL if can_increment else FULL)
        run_id = state.start_run(biobank_id, sync_pass.mode, triggered_by)
        if resume:
            log.info("%s: resuming pass %d from its checkpoints", biobank_id, sync_pass.number)
        for kind in RECORD_KINDS:
            stream = _stream(connector, kind)
            if stream is None:
                continue
            checkpoint = staging.stream_checkpoint(biobank_id, stream.name)
            if checkpoint.get("pass") == sync_pass.number:
                if checkpoint.get("done"):
                    continue
                start = checkpoint.get("position")
            else:
                start = checkpoint.get("bookmark") if sync_pass.mode == INCREMENTAL else None
            bookmark = _stage_stream(
                connector, stream, kind, start, staging, sync_pass.number, run_id, counts, progress
            )
            staging.complete_stream(biobank_id, stream.name, sync_pass.number, bookmark)
        if sync_pass.mode == FULL:
            staging.delete_unseen(biobank_id, sync_pass.number, sync_pass.started_at)
        generation = _publish_staged(
            connector, biobank_id, backend, staging, run_id, sync_pass.mode, counts
        )
        state.finish_run(
            run_id,
            SUCCEEDED,
            counts,
            duration_s=time.monotonic() - started,
            generation=generation,
        )
    except (SourceError, ConfigError, OSError, BackendUnavailable, ValueError) as err:
        if not run_id:
            run_id = state.start_run(biobank_id, FULL, triggered_by)
        _fail(state, run_id, biobank_id, counts, started, err)
    finally:
        connector.close()
    run = state.run(run_id)
    assert run is not None
    return run


def _stage_stream(
    connector: Connector,
    stream: Stream,
    kind: str,
    start: Mapping[str, Any] | None,
    staging: Staging,
    number: int,
    run_id: int,
    counts: dict[str, int],
    progress: Progress | None,
) -> dict[str, Any] | None:
    """Pull one stream into the staging store; return its final checkpoint (the bookmark)."""
    schema = SCHEMAS[kind]()
    biobank_id = connector.biobank_id
    batch: list[StagedChange] = []
    bookmark: dict[str, Any] | None = None

    def flush(position: tuple[str, dict[str, Any]] | None) -> None:
        duplicates = staging.stage(biobank_id, number, run_id, batch, position)
        counts["rejected"] += sum(1 for c in batch if c.rejection is not None)
        if duplicates:
            rows = [_duplicate_row(c) for c in duplicates]
            staging.stage(
                biobank_id,
                number,
                run_id,
                [StagedChange(c.kind, c.stream, c.source_id, rejection=r) for c, r in rows],
                None,
            )
            counts["rejected"] += len(rows)
        batch.clear()

    for item in connector.pull(stream, start):
        if isinstance(item, Checkpoint):
            flush((stream.name, item.state))
            bookmark = item.state
            continue
        if isinstance(item, Tombstone):
            batch.append(StagedChange(kind, item.stream, item.source_id))
            continue
        counts["read"] += 1
        if progress and counts["read"] % PROGRESS_STEP == 0:
            progress("read", PROGRESS_STEP)
        record, rejection = _validate(connector, schema, item)
        batch.append(
            StagedChange(
                kind,
                item.stream,
                item.source_id,
                record,
                rejection.as_row() if rejection else None,
                item.payload,
                item.position,
            )
        )
        if len(batch) >= STAGE_BATCH:
            flush(None)  # staged, but the position advances only at a checkpoint
    if batch:
        flush(None)
    return bookmark


def _duplicate_row(change: StagedChange) -> tuple[StagedChange, dict[str, Any]]:
    record = change.record
    assert record is not None
    rejection = Rejection(
        change.stream,
        change.source_id,
        change.position,
        "id",
        record.id,
        f"duplicate id {record.id!r}: another source record has it",
        change.payload if change.payload is not None else {},
    )
    return change, rejection.as_row()


def _publish_staged(
    connector: Connector,
    biobank_id: str,
    backend: SearchBackend,
    staging: Staging,
    run_id: int,
    mode: str,
    counts: dict[str, int],
) -> str | None:
    """Join the staged samples a publish must (re)write and hand them to the backend."""
    whole = (
        mode == FULL
        or biobank_id not in backend.published()
        or staging.pending_references(biobank_id)  # collections travel with a generation
    )
    collections = staging.collections(biobank_id)
    donors, ordinals = staging.donors(biobank_id)
    donor_stream = _stream(connector, "donor")
    rejected_donors = staging.rejected_donors(biobank_id, donor_stream.name) if donor_stream else {}
    indexed: list[str] = []
    unindexed: list[str] = []
    deletes: list[str] = []
    orphans: list[dict[str, Any]] = []
    joined: list[tuple[str, str]] = []
    gone: list[tuple[str, str]] = []
    removed: list[str] = []  # indexed samples deleted at the source

    def rows() -> Iterator[dict[str, Any]]:
        for staged in staging.samples(biobank_id, only_affected=not whole):
            key = (staged.stream, staged.record_key)
            if staged.sample is None:
                gone.append(key)
                if staged.indexed:
                    deletes.append(staged.id)
                    removed.append(staged.id)
                continue
            row = join_sample(staged.sample, donors, collections, rejected_donors, ordinals)
            if isinstance(row, Orphan):
                orphans.append(
                    Rejection(
                        staged.stream,
                        staged.source_id,
                        "",
                        row.field,
                        row.value,
                        row.reason,
                        encode(staged.sample),
                    ).as_row()
                )
                unindexed.append(staged.id)
                if staged.indexed:
                    deletes.append(staged.id)
                continue
            joined.append(key)
            if row["withdrawn"]:
                counts["withdrawn"] += 1
                unindexed.append(staged.id)
                if staged.indexed:
                    deletes.append(staged.id)
                continue
            indexed.append(staged.id)
            yield row

    generation: str | None
    if whole:
        with backend.generation_writer(biobank_id) as writer:
            writer.metadata = {"collections": [_collection_json(c) for c in collections.values()]}
            batch: list[dict[str, Any]] = []
            for row in rows():
                batch.append(row)
                if len(batch) >= WRITE_BATCH:
                    writer.add(batch)
                    batch = []
            writer.add(batch)
            info = writer.publish()
        counts["indexed"] = info.documents
        generation = info.generation
    else:
        upserts = list(rows())
        if upserts or deletes:
            backend.apply_changes(
                biobank_id, upserts, deletes, version=staging.next_version(biobank_id)
            )
        counts["indexed"] = len(upserts)
        published = backend.published().get(biobank_id)
        generation = published.generation if published else None
    counts["deleted"] = len(removed)
    counts["rejected"] += len(orphans)
    staging.published(biobank_id, run_id, indexed, unindexed, orphans, joined, gone)
    return generation


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


def _stream(connector: Connector, kind: str) -> Stream | None:
    return next((s for s in connector.streams if s.record == kind), None)


def _records(
    connector: Connector, kind: str, pulled: _Pulled, progress: Progress | None
) -> Iterator[tuple[SourceRecord, Any]]:
    """Valid canonical records of one kind, with their source; rejections are kept."""
    stream = _stream(connector, kind)
    if stream is None:
        return
    schema = SCHEMAS[kind]()
    seen: set[str] = set()
    for item in connector.pull(stream, None):
        if not isinstance(item, SourceRecord):
            continue  # a file read whole has no checkpoints to keep or tombstones to send
        pulled.read += 1
        if progress and pulled.read % PROGRESS_STEP == 0:
            progress("read", PROGRESS_STEP)
        record, rejection = _validate(connector, schema, item)
        if rejection is not None:
            pulled.rejections.append(rejection)
            if kind == "donor" and item.source_id:
                pulled.rejected_donors[item.source_id] = rejection.reason
            continue
        if record.id in seen:
            pulled.rejections.append(
                Rejection(
                    item.stream,
                    item.source_id,
                    item.position,
                    "id",
                    record.id,
                    f"duplicate id {record.id!r}: an earlier row has it",
                    item.payload,
                )
            )
            continue
        seen.add(record.id)
        yield item, record


def _pull_references(connector: Connector, pulled: _Pulled, progress: Progress | None) -> None:
    for _, collection in _records(connector, "collection", pulled, progress):
        pulled.collections[collection.id] = collection
    for _, donor in _records(connector, "donor", pulled, progress):
        pulled.donors[donor.id] = donor


def _sample_batches(
    connector: Connector,
    pulled: _Pulled,
    counts: dict[str, int],
    kept: set[str],
    progress: Progress | None,
) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    ordinals = donor_ordinals(pulled.donors)
    for item, sample in _records(connector, "sample", pulled, progress):
        row = join_sample(
            sample, pulled.donors, pulled.collections, pulled.rejected_donors, ordinals
        )
        if isinstance(row, Orphan):
            pulled.rejections.append(
                Rejection(
                    item.stream,
                    item.source_id,
                    item.position,
                    row.field,
                    row.value,
                    row.reason,
                    item.payload,
                )
            )
            continue
        if row["withdrawn"]:
            # Withdrawn consent: never indexed, so never counted or returned for any role.
            counts["withdrawn"] += 1
            continue
        kept.add(row["sample_id"])
        batch.append(row)
        if len(batch) >= WRITE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _validate(
    connector: Connector, schema: Schema, item: SourceRecord
) -> tuple[Any, Rejection | None]:
    """Map and validate one record: the canonical record, or why it cannot be used."""
    mapped: Any = None
    try:
        mapped = connector.map(item)
        # Most rows are plain valid text: built without marshmallow; the rest (and every
        # rejection) go through the schema.
        quick = QUICK_LOADERS.get(type(schema))
        record = quick(mapped) if quick is not None else None
        if record is not None:
            return record, None
        return schema.load(mapped), None
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


def _collection_json(collection: Collection) -> dict[str, Any]:
    return {
        "id": collection.id,
        "name": collection.name,
        "types": list(collection.types),
        "description": collection.description,
        "default_consent": consent_to_json(collection.default_consent)
        if collection.default_consent
        else None,
    }
