"""A full sync of one biobank: pull, map, validate, quarantine, publish a new generation."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError

from federation.model.records import (
    SCHEMAS,
    Collection,
    Donor,
    consent_to_json,
    describe_errors,
)
from federation.search.backend import SearchBackend
from federation.search.documents import Orphan, donor_ordinals, join_sample
from federation.settings import BiobankSource
from federation.sync import registry
from federation.sync.connector import (
    Checkpoint,
    ConfigError,
    Connector,
    RecordRejected,
    SourceError,
    SourceRecord,
    Stream,
)
from federation.sync.locks import biobank_lock
from federation.sync.state import FAILED, SUCCEEDED, SyncRun, SyncState

log = logging.getLogger(__name__)

# Rows handed to the backend writer at once: large enough for columnar writes to be
# efficient, small enough to keep a sync's memory flat.
WRITE_BATCH = 50_000
PROGRESS_STEP = 10_000

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


class SyncFailed(RuntimeError):
    """A sync run failed; the previous generation keeps serving."""

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
) -> SyncRun:
    """Run a full sync of one biobank under its lock and record it; raise SyncFailed on error."""
    biobank_id = source.biobank.id
    with biobank_lock(locks_dir, biobank_id):
        run_id = state.start_run(biobank_id, "full", triggered_by)
        started = time.monotonic()
        counts = {"read": 0, "indexed": 0, "rejected": 0, "deleted": 0, "withdrawn": 0}
        pulled = _Pulled()
        try:
            connector = _connector(source)
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
            state.finish_run(
                run_id,
                SUCCEEDED,
                counts,
                duration_s=time.monotonic() - started,
                generation=info.generation,
            )
        except (SourceError, ConfigError, OSError) as err:
            log.warning("sync of %s failed: %s", biobank_id, err)
            counts["read"] = pulled.read
            state.finish_run(
                run_id, FAILED, counts, duration_s=time.monotonic() - started, error=str(err)
            )
            run = state.run(run_id)
            assert run is not None
            raise SyncFailed(run) from err
    run = state.run(run_id)
    assert run is not None
    return run


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
        if isinstance(item, Checkpoint):
            continue
        pulled.read += 1
        if progress and pulled.read % PROGRESS_STEP == 0:
            progress("read", PROGRESS_STEP)
        record = _validate(connector, schema, item, pulled)
        if record is None:
            if kind == "donor" and item.source_id:
                pulled.rejected_donors[item.source_id] = pulled.rejections[-1].reason
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


def _validate(connector: Connector, schema: Schema, item: SourceRecord, pulled: _Pulled) -> Any:
    """Map and validate one record; on failure keep it in the rejections with the reason."""
    mapped: Any = None
    try:
        mapped = connector.map(item)
        return schema.load(mapped)
    except RecordRejected as err:
        pulled.rejections.append(
            Rejection(
                item.stream,
                item.source_id,
                item.position,
                err.field,
                err.value,
                err.reason,
                item.payload,
            )
        )
    except ValidationError as err:
        lines = describe_errors(err.messages)
        first_field = lines[0].split(":", 1)[0] if lines else ""
        value = _value_at(mapped, first_field)
        pulled.rejections.append(
            Rejection(
                item.stream,
                item.source_id,
                item.position,
                first_field,
                value,
                "; ".join(lines),
                item.payload,
            )
        )
    return None


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
