"""Sync history, quarantine, checkpoints and the queue of requested syncs in the store."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, func, insert, select, text, union, update

from federation.state.database import POSTGRESQL, reading, upsert, writing
from federation.state.schema import (
    checkpoints,
    pending_quarantine,
    quarantine,
    sync_requests,
    sync_runs,
)

# Raw payloads are kept so an admin sees what the source sent, but a pathological row
# (a whole file in one cell) must not fill the disk.
MAX_PAYLOAD_BYTES = 8192

RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
# A sync that did not start because another held the biobank's lock.
REFUSED = "refused"
COUNTS = ("read", "indexed", "rejected", "deleted", "withdrawn")


def now() -> str:
    """The current UTC time as the store writes it (ISO 8601, milliseconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def cap_payload(payload: Mapping[str, Any] | str) -> str:
    """A raw source payload as text, cut at MAX_PAYLOAD_BYTES with a note of its size."""
    text_ = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, default=str, ensure_ascii=False)
    )
    raw = text_.encode()
    if len(raw) <= MAX_PAYLOAD_BYTES:
        return text_
    return raw[: MAX_PAYLOAD_BYTES - 32].decode(errors="ignore") + f"... [{len(raw)} bytes, cut]"


@dataclass(frozen=True)
class SyncRun:
    """One recorded sync run of one biobank."""

    id: int
    biobank_id: str
    kind: str
    triggered_by: str
    started_at: str
    finished_at: str | None
    outcome: str
    read: int
    indexed: int
    rejected: int
    deleted: int
    withdrawn: int
    duration_s: float | None
    generation: str | None
    error: str | None
    partial: int = 0  # records kept with some values dropped (each has a quarantine row)
    notes: str | None = None  # how the source was read (a detected paging style, ...)
    # Where the run's process ran, so a run whose process died shows as such at once.
    host: str | None = None
    pid: int | None = None

    @property
    def accepted(self) -> int:
        """Records taken whole: read minus those rejected and those partly accepted."""
        return max(self.read - self.rejected - self.partial, 0)


@dataclass(frozen=True)
class RunEnd:
    """How a run ended: outcome, counts and the generation it published."""

    outcome: str
    counts: Mapping[str, int]
    duration_s: float
    generation: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class QuarantinedRecord:
    """A source record kept out of the index, with the reason, for the biobank's admin."""

    biobank_id: str
    stream: str
    source_id: str | None
    position: str | None
    field: str | None
    value: str | None
    reason: str
    payload: str
    run_id: int
    first_seen: str
    last_seen: str
    kept: int = 0  # 1: the record is indexed without the value named here


@dataclass(frozen=True)
class SyncRequest:
    """A sync asked for by a biobank admin, waiting for (or taken by) the worker."""

    id: int
    biobank_id: str
    mode: str
    requested_by: str
    requested_at: str
    claimed_at: str | None


def _run(row: Row[Any]) -> SyncRun:
    return SyncRun(**row._asdict())


class SyncRuns:
    """The history of sync runs, newest first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self, biobank_id: str, kind: str, triggered_by: str) -> int:
        """Record a run as running; return its id."""
        with writing(self.engine) as db:
            # The caller holds the biobank's sync lock, so a run still marked running was
            # killed before it could record its end.
            db.execute(
                update(sync_runs)
                .where(sync_runs.c.biobank_id == biobank_id, sync_runs.c.outcome == RUNNING)
                .values(outcome=INTERRUPTED, error="the sync process ended without finishing")
            )
            run_id = db.execute(
                insert(sync_runs)
                .values(
                    biobank_id=biobank_id,
                    kind=kind,
                    triggered_by=triggered_by,
                    started_at=now(),
                    outcome=RUNNING,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
                .returning(sync_runs.c.id)
            ).scalar_one()
        return int(run_id)

    def refused(self, biobank_id: str, triggered_by: str, reason: str) -> int:
        """Record a sync refused before it started (another holds the lock); its id."""
        stamp = now()
        with writing(self.engine) as db:
            run_id = db.execute(
                insert(sync_runs)
                .values(
                    biobank_id=biobank_id,
                    kind="full",
                    triggered_by=triggered_by,
                    started_at=stamp,
                    finished_at=stamp,
                    outcome=REFUSED,
                    duration_s=0,
                    error=reason,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
                .returning(sync_runs.c.id)
            ).scalar_one()
        return int(run_id)

    def prepare_publish(
        self,
        run_id: int,
        generation: str,
        counts: Mapping[str, int],
        rejections: list[dict[str, Any]] | None,
    ) -> None:
        """Before publishing: the generation about to serve, its counts and quarantine.

        A run killed between its publish and its record is then settled truthfully from
        these (`federation.sync.recovery`). `rejections` None: the run's quarantine is
        kept elsewhere (a staged sync's staging tables).
        """
        values = {name: int(counts.get(name, 0)) for name in COUNTS}
        with writing(self.engine) as db:
            db.execute(
                update(sync_runs)
                .where(sync_runs.c.id == run_id)
                .values(generation=generation, **values)
            )
            if rejections is None:
                return
            records = json.dumps(
                [{**r, "payload": cap_payload(r["payload"])} for r in rejections],
                ensure_ascii=False,
                default=str,
            )
            biobank_id = db.execute(
                select(sync_runs.c.biobank_id).where(sync_runs.c.id == run_id)
            ).scalar_one_or_none()
            if biobank_id is None:
                return
            statement = upsert(db, pending_quarantine).values(
                run_id=run_id, biobank_id=biobank_id, records=records
            )
            db.execute(
                statement.on_conflict_do_update(
                    index_elements=["run_id"], set_={"records": records}
                )
            )

    def pending_quarantine(self, run_id: int) -> list[dict[str, Any]] | None:
        """The quarantine a run recorded before publishing, if it did."""
        query = select(pending_quarantine.c.records).where(pending_quarantine.c.run_id == run_id)
        with reading(self.engine) as db:
            records = db.execute(query).scalar_one_or_none()
        return None if records is None else list(json.loads(records))

    def settle(self, run_id: int, outcome: str, error: str, *, published: bool) -> None:
        """End a run whose process died: `published` keeps its generation, else clears it."""
        values: dict[str, Any] = {"finished_at": now(), "outcome": outcome, "error": error}
        if not published:
            values["generation"] = None
        with writing(self.engine) as db:
            db.execute(
                update(sync_runs)
                .where(sync_runs.c.id == run_id, sync_runs.c.outcome == RUNNING)
                .values(**values)
            )
            db.execute(delete(pending_quarantine).where(pending_quarantine.c.run_id == run_id))

    def annotate(self, run_id: int, notes: list[str], partial: int = 0) -> None:
        """Say how the source was read, and how many records were kept in part."""
        with writing(self.engine) as db:
            db.execute(
                update(sync_runs)
                .where(sync_runs.c.id == run_id)
                .values(notes="; ".join(notes) or None, partial=partial)
            )

    def finish(self, run_id: int, end: RunEnd) -> None:
        """Record how a run ended."""
        counts = {name: int(end.counts.get(name, 0)) for name in COUNTS}
        with writing(self.engine) as db:
            db.execute(
                update(sync_runs)
                .where(sync_runs.c.id == run_id)
                .values(
                    finished_at=now(),
                    outcome=end.outcome,
                    duration_s=round(end.duration_s, 3),
                    generation=end.generation,
                    error=end.error,
                    **counts,
                )
            )
            db.execute(delete(pending_quarantine).where(pending_quarantine.c.run_id == run_id))

    def history(self, biobank_id: str | None = None, limit: int = 50) -> list[SyncRun]:
        """The latest runs, of one biobank or of all."""
        query = select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit)
        if biobank_id is not None:
            query = query.where(sync_runs.c.biobank_id == biobank_id)
        with reading(self.engine) as db:
            return [_run(r) for r in db.execute(query)]

    def get(self, run_id: int) -> SyncRun | None:
        """One run by id."""
        with reading(self.engine) as db:
            row = db.execute(select(sync_runs).where(sync_runs.c.id == run_id)).first()
        return _run(row) if row is not None else None

    def last_success(self, biobank_id: str, kind: str) -> SyncRun | None:
        """The biobank's most recent succeeded run of this kind (full or incremental)."""
        query = (
            select(sync_runs)
            .where(
                sync_runs.c.biobank_id == biobank_id,
                sync_runs.c.kind == kind,
                sync_runs.c.outcome == SUCCEEDED,
            )
            .order_by(sync_runs.c.id.desc())
            .limit(1)
        )
        with reading(self.engine) as db:
            row = db.execute(query).first()
        return _run(row) if row is not None else None

    def published_biobanks(self) -> set[str]:
        """Biobanks that some run published a generation of: the backend must serve them."""
        query = (
            select(sync_runs.c.biobank_id)
            .where(sync_runs.c.outcome == SUCCEEDED, sync_runs.c.generation.is_not(None))
            .distinct()
        )
        with reading(self.engine) as db:
            return {str(r) for r in db.execute(query).scalars()}

    def biobank_ids(self) -> list[str]:
        """Biobanks with a sync history or quarantined records."""
        query = union(select(sync_runs.c.biobank_id), select(quarantine.c.biobank_id))
        with reading(self.engine) as db:
            return sorted(str(r) for r in db.execute(query).scalars())


class Quarantine:
    """Records each biobank's syncs kept out of the index, with the reason."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def replace(self, biobank_id: str, run_id: int, records: list[dict[str, Any]]) -> None:
        """After a full sync: what it rejected is the quarantine; fixed records leave it."""
        stamp = now()
        with writing(self.engine) as db:
            if db.dialect.name == POSTGRESQL:
                # Two full syncs of one biobank never overlap (the sync lock), but a
                # concurrent publish of its staged records must wait for this one.
                db.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                    {"key": f"quarantine:{biobank_id}"},
                )
            first_seen = {
                (r.stream, r.record_key): r.first_seen
                for r in db.execute(
                    select(
                        quarantine.c.stream, quarantine.c.record_key, quarantine.c.first_seen
                    ).where(quarantine.c.biobank_id == biobank_id)
                )
            }
            db.execute(delete(quarantine).where(quarantine.c.biobank_id == biobank_id))
            rows: dict[tuple[str, str], dict[str, Any]] = {}
            for r in records:
                key = (r["stream"], r["record_key"])
                # The last rejection of a record wins, as it did before the store.
                rows[key] = {
                    "biobank_id": biobank_id,
                    "stream": r["stream"],
                    "record_key": r["record_key"],
                    "source_id": r["source_id"],
                    "position": r["position"],
                    "field": r["field"],
                    "value": r["value"],
                    "reason": r["reason"],
                    "payload": cap_payload(r["payload"]),
                    "run_id": run_id,
                    "first_seen": first_seen.get(key, stamp),
                    "last_seen": stamp,
                    "kept": int(r.get("kept", 0)),
                }
            if rows:
                db.execute(insert(quarantine), list(rows.values()))

    def page(
        self, biobank_id: str, *, limit: int = 100, offset: int = 0, stream: str | None = None
    ) -> list[QuarantinedRecord]:
        """A page of a biobank's quarantined records, by stream and record key."""
        columns = [c for c in quarantine.c if c.name != "record_key"]
        query = select(*columns).where(quarantine.c.biobank_id == biobank_id)
        if stream:
            query = query.where(quarantine.c.stream == stream)
        query = (
            query.order_by(quarantine.c.stream, quarantine.c.record_key).limit(limit).offset(offset)
        )
        with reading(self.engine) as db:
            return [QuarantinedRecord(**r._asdict()) for r in db.execute(query)]

    def count(self, biobank_id: str) -> int:
        """How many of a biobank's records are in quarantine."""
        query = select(func.count()).where(quarantine.c.biobank_id == biobank_id)
        with reading(self.engine) as db:
            return int(db.execute(query).scalar_one())


class Checkpoints:
    """Per-stream positions and bookmarks of resumable connectors."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, biobank_id: str, stream: str) -> dict[str, Any] | None:
        """The saved state of a stream, or None."""
        query = select(checkpoints.c.state).where(
            checkpoints.c.biobank_id == biobank_id, checkpoints.c.stream == stream
        )
        with reading(self.engine) as db:
            value = db.execute(query).scalar_one_or_none()
        return json.loads(value) if value is not None else None

    def save(self, biobank_id: str, stream: str, state: Mapping[str, Any]) -> None:
        """Replace the saved state of a stream."""
        with writing(self.engine) as db:
            save_checkpoint(db, biobank_id, stream, state)


def save_checkpoint(db: Any, biobank_id: str, stream: str, state: Mapping[str, Any]) -> None:
    """Write a checkpoint inside the caller's transaction (staging saves one per batch)."""
    values = {"state": json.dumps(dict(state), sort_keys=True), "updated_at": now()}
    statement = upsert(db, checkpoints).values(biobank_id=biobank_id, stream=stream, **values)
    db.execute(
        statement.on_conflict_do_update(index_elements=["biobank_id", "stream"], set_=values)
    )


def quarantine_record(
    db: Connection,
    biobank_id: str,
    run_id: int,
    row: Mapping[str, Any],
    *,
    keep_payload: bool = False,
) -> None:
    """Put one record in the quarantine inside the caller's transaction (staging).

    A record quarantined before keeps its first sighting; `keep_payload` keeps the payload
    recorded then (a join problem found at publish has no payload of its own).
    """
    stamp = now()
    values = {
        "source_id": row["source_id"],
        "position": row["position"],
        "field": row["field"],
        "value": row["value"],
        "reason": row["reason"],
        "payload": cap_payload(row["payload"]),
        "run_id": run_id,
        "last_seen": stamp,
        "kept": int(row.get("kept", 0)),
    }
    statement = upsert(db, quarantine).values(
        biobank_id=biobank_id,
        stream=row["stream"],
        record_key=row["record_key"],
        first_seen=stamp,
        **values,
    )
    changed = {k: v for k, v in values.items() if not (keep_payload and k == "payload")}
    db.execute(
        statement.on_conflict_do_update(
            index_elements=["biobank_id", "stream", "record_key"], set_=changed
        )
    )


def release_record(db: Connection, biobank_id: str, stream: str, record_key: str) -> None:
    """Take one record out of the quarantine inside the caller's transaction."""
    db.execute(
        delete(quarantine).where(
            quarantine.c.biobank_id == biobank_id,
            quarantine.c.stream == stream,
            quarantine.c.record_key == record_key,
        )
    )


def _request(row: Row[Any]) -> SyncRequest:
    return SyncRequest(**row._asdict())


class SyncRequests:
    """Syncs asked for through the gateway, taken by `biofed worker`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def request(self, biobank_id: str, requested_by: str, mode: str = "auto") -> SyncRequest:
        """Queue a sync; the open request for the biobank if there is one already."""
        open_request = select(sync_requests).where(
            sync_requests.c.biobank_id == biobank_id, sync_requests.c.claimed_at.is_(None)
        )
        with writing(self.engine) as db:
            if db.dialect.name == POSTGRESQL:
                # Without it, two gateways asked at once would both find no open request.
                db.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                    {"key": f"sync-request:{biobank_id}"},
                )
            row = db.execute(open_request.order_by(sync_requests.c.id)).first()
            if row is None:
                row = db.execute(
                    insert(sync_requests)
                    .values(
                        biobank_id=biobank_id,
                        mode=mode,
                        requested_by=requested_by,
                        requested_at=now(),
                    )
                    .returning(*sync_requests.c)
                ).one()
        return _request(row)

    def claim(self) -> list[SyncRequest]:
        """Take every open request (each is taken by exactly one worker)."""
        with writing(self.engine) as db:
            rows = db.execute(
                update(sync_requests)
                .where(sync_requests.c.claimed_at.is_(None))
                .values(claimed_at=now())
                .returning(*sync_requests.c)
            ).all()
        return sorted((_request(r) for r in rows), key=lambda r: r.id)

    def pending(self) -> list[SyncRequest]:
        """Open requests, oldest first."""
        query = (
            select(sync_requests)
            .where(sync_requests.c.claimed_at.is_(None))
            .order_by(sync_requests.c.id)
        )
        with reading(self.engine) as db:
            return [_request(r) for r in db.execute(query)]
