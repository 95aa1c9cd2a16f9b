"""Staged records of resumable connectors: the sync's own copy of what each source holds.

A resumable source (FHIR, Beacon, REST, the Directory) is read in pages, and a run may be
killed between any two. So its records are staged in the sync state store as they arrive,
each batch in one transaction together with the checkpoint after it: a killed run loses at
most the batch it was reading, and the next run resumes from the saved checkpoint. Records
are keyed by kind and canonical id, so reading one twice (a resumed page, a bookmark's
boundary) replaces it: no duplicates, and re-running changes nothing.

A staged record is `pending` from the moment it changes until it is published; publishing
joins pending samples (and the samples of pending donors and collections) into index rows,
hands them to the backend, and clears the flags. A record deleted at the source (a
tombstone, or absent from a full pass) stays staged without data until its deletion is
published. Donors keep a stable ordinal, so incremental changes count donors the same way
full generations do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from federation.model.records import Collection, ConsentField, Donor, Sample, consent_to_json
from federation.state.sync_records import now, quarantine_record, release_record, save_checkpoint
from federation.sync.state import SyncState

FULL, INCREMENTAL = "full", "incremental"


@dataclass(frozen=True)
class Pass:
    """One read of a source from start to publish, possibly spread over killed runs."""

    biobank_id: str
    number: int
    mode: str  # full | incremental
    started_at: str
    finished: bool
    version: int


@dataclass
class StagedChange:
    """What a batch does to the staged records; built by the run, written by `stage`."""

    kind: str
    stream: str
    source_id: str | None
    record: Collection | Donor | Sample | None = None  # None: a tombstone
    rejection: dict[str, Any] | None = None  # a quarantine row for an unusable record
    payload: Any = None  # the record as the source sent it
    position: str = ""
    dropped: dict[str, Any] | None = None  # a quarantine row for values the record lost


@dataclass
class PublishOutcome:
    """What a publish did with the staged samples; `Staging.published` records it."""

    # Sample ids now in the index, and kept out of it (orphaned, withdrawn).
    indexed: list[str] = dataclasses.field(default_factory=list)
    unindexed: list[str] = dataclasses.field(default_factory=list)
    orphans: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # quarantine rows
    # (stream, record key) of samples that joined, and of those deleted at the source.
    joined: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    gone: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class StagedSample:
    id: str
    stream: str
    source_id: str | None
    sample: Sample | None  # None: deleted at the source
    indexed: bool

    @property
    def record_key(self) -> str:
        return self.source_id or self.id


class Staging:
    """Staged records, passes and per-stream checkpoints in the state store."""

    def __init__(self, state: SyncState) -> None:
        self.state = state
        self.store = state.store

    # --- passes ------------------------------------------------------------------------------

    def current_pass(self, biobank_id: str) -> Pass | None:
        with self.store.read() as db:
            row = db.execute(
                text("SELECT * FROM sync_passes WHERE biobank_id = :b"), {"b": biobank_id}
            ).first()
        if row is None:
            return None
        r = row._mapping
        return Pass(
            r["biobank_id"],
            r["pass"],
            r["mode"],
            r["started_at"],
            bool(r["finished"]),
            r["version"],
        )

    def begin_pass(self, biobank_id: str, mode: str) -> Pass:
        """Start a new pass (the previous one is abandoned if it never finished)."""
        previous = self.current_pass(biobank_id)
        number = previous.number + 1 if previous else 1
        version = previous.version if previous else 1
        stamp = now()
        with self.store.write() as db:
            db.execute(
                text(
                    "INSERT INTO sync_passes (biobank_id, pass, mode, started_at, finished, "
                    "version) VALUES (:b, :n, :m, :s, 0, :v) ON CONFLICT (biobank_id) DO UPDATE "
                    "SET pass = excluded.pass, mode = excluded.mode, started_at = "
                    "excluded.started_at, finished = 0, version = excluded.version"
                ),
                {"b": biobank_id, "n": number, "m": mode, "s": stamp, "v": version},
            )
        return Pass(biobank_id, number, mode, stamp, False, version)

    def next_version(self, biobank_id: str) -> int:
        """A change version above every earlier one (engines order writes by it)."""
        current = self.current_pass(biobank_id)
        millis = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        version = max(millis, (current.version if current else 1) + 1)
        with self.store.write() as db:
            db.execute(
                text("UPDATE sync_passes SET version = :v WHERE biobank_id = :b"),
                {"v": version, "b": biobank_id},
            )
        return version

    # --- checkpoints ----------------------------------------------------------------------

    def stream_checkpoint(self, biobank_id: str, stream: str) -> dict[str, Any]:
        """`{pass, done, position, bookmark}` of a stream (empty when never read)."""
        return self.state.checkpoint(biobank_id, stream) or {}

    def complete_stream(
        self, biobank_id: str, stream: str, number: int, bookmark: Mapping[str, Any] | None
    ) -> None:
        self.state.save_checkpoint(
            biobank_id,
            stream,
            {"pass": number, "done": True, "position": None, "bookmark": bookmark},
        )

    def has_bookmarks(self, biobank_id: str, streams: Iterable[str]) -> bool:
        return all(
            self.stream_checkpoint(biobank_id, s).get("bookmark") is not None for s in streams
        )

    # --- staging a batch ------------------------------------------------------------------

    def stage(
        self,
        biobank_id: str,
        number: int,
        run_id: int,
        changes: list[StagedChange],
        checkpoint: tuple[str, dict[str, Any]] | None,
    ) -> list[StagedChange]:
        """Write a batch and the checkpoint after it in one transaction.

        Returns the changes refused as duplicates (another source record already has
        that canonical id in this pass); the caller counts them as rejected.
        """
        duplicates: list[StagedChange] = []
        with self.store.write() as db:
            next_ordinal = None
            for change in changes:
                if change.rejection is not None:
                    quarantine_record(db, biobank_id, run_id, change.rejection)
                    if change.source_id:
                        _mark_deleted_by_source(db, biobank_id, change.stream, change.source_id)
                    continue
                if change.record is None:
                    assert change.source_id is not None
                    _mark_deleted_by_source(db, biobank_id, change.stream, change.source_id)
                    release_record(db, biobank_id, change.stream, change.source_id)
                    continue
                record = change.record
                found = db.execute(
                    text(
                        "SELECT source_id, pass, ordinal, data FROM staged "
                        "WHERE biobank_id = :b AND kind = :k AND id = :i"
                    ),
                    {"b": biobank_id, "k": change.kind, "i": record.id},
                ).first()
                existing = found._mapping if found is not None else None
                if (
                    existing is not None
                    and existing["pass"] == number
                    and existing["data"] is not None
                    and existing["source_id"] != change.source_id
                ):
                    duplicates.append(change)
                    continue
                ordinal = existing["ordinal"] if existing is not None else None
                if change.kind == "donor" and ordinal is None:
                    if next_ordinal is None:
                        next_ordinal = int(
                            db.execute(
                                text(
                                    "SELECT coalesce(max(ordinal), -1) + 1 FROM staged "
                                    "WHERE biobank_id = :b AND kind = 'donor'"
                                ),
                                {"b": biobank_id},
                            ).scalar_one()
                        )
                    ordinal, next_ordinal = next_ordinal, next_ordinal + 1
                data = encode(record)
                changed = existing is None or existing["data"] != data
                db.execute(
                    text(
                        "INSERT INTO staged (biobank_id, kind, id, stream, source_id, donor_id, "
                        "collection_id, ordinal, data, pass, pending, indexed) "
                        "VALUES (:b, :k, :i, :s, :src, :d, :c, :o, :data, :n, 1, 0) "
                        "ON CONFLICT (biobank_id, kind, id) DO UPDATE SET stream = "
                        "excluded.stream, source_id = excluded.source_id, donor_id = "
                        "excluded.donor_id, collection_id = excluded.collection_id, ordinal = "
                        "excluded.ordinal, data = excluded.data, pass = excluded.pass, "
                        "pending = CASE WHEN :changed THEN 1 ELSE staged.pending END"
                    ),
                    {
                        "b": biobank_id,
                        "k": change.kind,
                        "i": record.id,
                        "s": change.stream,
                        "src": change.source_id,
                        "d": getattr(record, "donor_id", None),
                        "c": getattr(record, "collection_id", None),
                        "o": ordinal,
                        "data": data,
                        "n": number,
                        "changed": changed,
                    },
                )
                if change.source_id:
                    release_record(db, biobank_id, change.stream, change.source_id)
                if change.dropped is not None:
                    quarantine_record(db, biobank_id, run_id, change.dropped)
                if isinstance(record, Sample):
                    _check_references(db, biobank_id, run_id, change, record)
            if checkpoint is not None:
                stream, position = checkpoint
                previous = db.execute(
                    text("SELECT state FROM checkpoints WHERE biobank_id = :b AND stream = :s"),
                    {"b": biobank_id, "s": stream},
                ).scalar_one_or_none()
                bookmark = json.loads(previous).get("bookmark") if previous else None
                save_checkpoint(
                    db,
                    biobank_id,
                    stream,
                    {"pass": number, "done": False, "position": position, "bookmark": bookmark},
                )
        return duplicates

    def read_in_pass(self, biobank_id: str, number: int, started_at: str) -> int:
        """Records a pass has read so far, over all its runs: staged or quarantined."""
        with self.store.read() as db:
            staged = db.execute(
                text(
                    "SELECT count(*) FROM staged WHERE biobank_id = :b AND pass = :n "
                    "AND data IS NOT NULL"
                ),
                {"b": biobank_id, "n": number},
            ).scalar_one()
            rejected = db.execute(
                text("SELECT count(*) FROM quarantine WHERE biobank_id = :b AND last_seen >= :s"),
                {"b": biobank_id, "s": started_at},
            ).scalar_one()
        return int(staged) + int(rejected)

    def delete_unseen(self, biobank_id: str, number: int, started_at: str) -> int:
        """End of a full pass: records it did not see are gone from the source."""
        with self.store.write() as db:
            result = db.execute(
                text(
                    "UPDATE staged SET data = NULL, pending = 1 "
                    "WHERE biobank_id = :b AND pass != :n AND data IS NOT NULL"
                ),
                {"b": biobank_id, "n": number},
            )
            # Rejections not seen again in this pass were fixed or deleted at the source.
            db.execute(
                text(
                    "DELETE FROM quarantine WHERE biobank_id = :b AND last_seen < :s "
                    "AND coalesce(field, '') NOT IN ('donor_id', 'collection_id')"
                ),
                {"b": biobank_id, "s": started_at},
            )
            return int(result.rowcount)

    # --- reading for a publish ----------------------------------------------------------

    def collections(self, biobank_id: str) -> dict[str, Collection]:
        return {
            r.id: r
            for r in self._records(biobank_id, "collection", "data IS NOT NULL")
            if isinstance(r, Collection)
        }

    def donors(self, biobank_id: str) -> tuple[dict[str, Donor], dict[str, int]]:
        """Live donors and their ordinals."""
        donors: dict[str, Donor] = {}
        ordinals: dict[str, int] = {}
        with self.store.read() as db:
            rows = db.execute(
                text(
                    "SELECT id, ordinal, data FROM staged "
                    "WHERE biobank_id = :b AND kind = 'donor' AND data IS NOT NULL"
                ),
                {"b": biobank_id},
            )
            for row in rows:
                donors[row.id] = decode_donor(row.data)
                ordinals[row.id] = int(row.ordinal)
        return donors, ordinals

    def pending_references(self, biobank_id: str) -> bool:
        """Whether a collection changed (its metadata is published with a generation)."""
        with self.store.read() as db:
            row = db.execute(
                text(
                    "SELECT 1 FROM staged WHERE biobank_id = :b AND kind = 'collection' "
                    "AND pending = 1 LIMIT 1"
                ),
                {"b": biobank_id},
            ).first()
        return row is not None

    def samples(self, biobank_id: str, *, only_affected: bool) -> Iterator[StagedSample]:
        """Every staged sample, or those a publish must rewrite: pending ones and the
        samples of pending donors and collections."""
        query = (
            "SELECT id, stream, source_id, data, indexed FROM staged "
            "WHERE biobank_id = :b AND kind = 'sample'"
        )
        if only_affected:
            query += (
                " AND (pending = 1 OR donor_id IN (SELECT id FROM staged WHERE biobank_id = :b "
                "AND kind = 'donor' AND pending = 1) OR collection_id IN (SELECT id FROM staged "
                "WHERE biobank_id = :b AND kind = 'collection' AND pending = 1))"
            )
        query += " ORDER BY id"
        with self.store.read() as db:
            for row in db.execute(text(query), {"b": biobank_id}):
                sample = decode_sample(row.data) if row.data is not None else None
                yield StagedSample(row.id, row.stream, row.source_id, sample, bool(row.indexed))

    def rejected_donors(self, biobank_id: str, stream: str) -> dict[str, str]:
        """Donor source id -> why it is in the quarantine (its samples cannot be joined)."""
        with self.store.read() as db:
            rows = db.execute(
                text(
                    "SELECT record_key, reason FROM quarantine WHERE biobank_id = :b "
                    "AND stream = :s AND kept = 0"
                ),
                {"b": biobank_id, "s": stream},
            ).all()
        return {r.record_key: r.reason for r in rows}

    def published(self, biobank_id: str, run_id: int, outcome: PublishOutcome) -> None:
        """After the backend took the changes: flags cleared, deletions forgotten, the
        pass finished, join problems in the quarantine (and joins that now work out of it)."""
        mark = text(
            "UPDATE staged SET indexed = :flag WHERE biobank_id = :b AND kind = 'sample' "
            "AND id = :i"
        )
        with self.store.write() as db:
            for flag, ids in ((1, outcome.indexed), (0, outcome.unindexed)):
                if ids:
                    db.execute(mark, [{"flag": flag, "b": biobank_id, "i": i} for i in ids])
            bank = {"b": biobank_id}
            db.execute(text("DELETE FROM staged WHERE biobank_id = :b AND data IS NULL"), bank)
            db.execute(text("UPDATE staged SET pending = 0 WHERE biobank_id = :b"), bank)
            for orphan in outcome.orphans:
                quarantine_record(db, biobank_id, run_id, orphan, keep_payload=True)
            if outcome.joined:
                db.execute(
                    text(
                        "DELETE FROM quarantine WHERE biobank_id = :b AND stream = :s "
                        "AND record_key = :k AND field IN ('donor_id', 'collection_id')"
                    ),
                    [{"b": biobank_id, "s": s, "k": k} for s, k in outcome.joined],
                )
            for stream, key in outcome.gone:
                release_record(db, biobank_id, stream, key)
            db.execute(text("UPDATE sync_passes SET finished = 1 WHERE biobank_id = :b"), bank)

    def forget(self, biobank_id: str) -> None:
        """Drop a biobank's staged records and passes (its source is read whole now)."""
        with self.store.write() as db:
            db.execute(text("DELETE FROM staged WHERE biobank_id = :b"), {"b": biobank_id})
            db.execute(text("DELETE FROM sync_passes WHERE biobank_id = :b"), {"b": biobank_id})

    def _records(self, biobank_id: str, kind: str, where: str) -> list[Any]:
        with self.store.read() as db:
            rows = db.execute(
                text(f"SELECT data FROM staged WHERE biobank_id = :b AND kind = :k AND {where}"),
                {"b": biobank_id, "k": kind},
            ).all()
        return [DECODERS[kind](r.data) for r in rows]


def _check_references(
    db: Connection, biobank_id: str, run_id: int, change: StagedChange, sample: Sample
) -> None:
    """Quarantine a sample whose donor or collection is not staged, with its raw payload.

    The publish that follows decides for good (a later page may bring the donor); this
    keeps what the source sent for the admin to see.
    """
    for kind, field, value in (
        ("donor", "donor_id", sample.donor_id),
        ("collection", "collection_id", sample.collection_id),
    ):
        found = db.execute(
            text(
                "SELECT 1 FROM staged WHERE biobank_id = :b AND kind = :k AND id = :i "
                "AND data IS NOT NULL"
            ),
            {"b": biobank_id, "k": kind, "i": value},
        ).first()
        if found is None:
            row = {
                "stream": change.stream,
                "record_key": change.source_id or sample.id,
                "source_id": change.source_id,
                "position": change.position,
                "field": field,
                "value": value,
                "reason": f"no such {kind} at the source",
                "payload": change.payload if change.payload is not None else {},
            }
            quarantine_record(db, biobank_id, run_id, row)
            return


def _mark_deleted_by_source(db: Connection, biobank_id: str, stream: str, source_id: str) -> None:
    db.execute(
        text(
            "UPDATE staged SET data = NULL, pending = 1 "
            "WHERE biobank_id = :b AND stream = :s AND source_id = :src AND data IS NOT NULL"
        ),
        {"b": biobank_id, "s": stream, "src": source_id},
    )


# --- canonical records as JSON ----------------------------------------------------------


def encode(record: Collection | Donor | Sample) -> str:
    """A canonical record as compact JSON (equal records give equal text)."""
    data: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name in ("consent", "default_consent"):
            value = consent_to_json(value) if value is not None else None
        elif isinstance(value, (dt.date, dt.datetime)):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        data[name] = value
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _consent(value: Any) -> Any:
    return ConsentField().deserialize(value) if value else None


def decode_collection(text: str) -> Collection:
    data = json.loads(text)
    data["types"] = tuple(data["types"])
    data["default_consent"] = _consent(data.get("default_consent"))
    return Collection(**data)


def decode_donor(text: str) -> Donor:
    data = json.loads(text)
    data["diagnoses"] = tuple(data["diagnoses"])
    data["orpha"] = tuple(data["orpha"])
    data["consent"] = _consent(data.get("consent"))
    if data.get("birth_date"):
        data["birth_date"] = dt.date.fromisoformat(data["birth_date"])
    return Donor(**data)


def decode_sample(text: str) -> Sample:
    data = json.loads(text)
    data["diagnoses"] = tuple(data["diagnoses"])
    data["data_categories"] = tuple(data["data_categories"])
    if data.get("collection_date"):
        data["collection_date"] = dt.date.fromisoformat(data["collection_date"])
    if data.get("last_updated"):
        data["last_updated"] = dt.datetime.fromisoformat(data["last_updated"])
    return Sample(**data)


DECODERS = {"collection": decode_collection, "donor": decode_donor, "sample": decode_sample}
