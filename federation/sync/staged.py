"""A staged sync of a network source (`resumable = True`), full or incremental.

Records are staged in the sync state store batch by batch with the checkpoint after each
(`federation.sync.staging`). A killed or failed run is resumed by the next one from its
last checkpoint. A *full* pass reads everything and ends by marking what it did not see
as deleted (an id comparison), then publishes a whole generation; an *incremental* pass
reads from each stream's bookmark, applies tombstones, and publishes only the changed
samples (`apply_changes`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from federation.model.records import SCHEMAS, Collection
from federation.search.backend import BackendUnavailable
from federation.search.documents import Orphan, join_sample
from federation.search.warm import record_publish
from federation.sync.completeness import EmptyRead
from federation.sync.connector import (
    RECORD_KINDS,
    Checkpoint,
    ConfigError,
    SourceError,
    Stream,
    Tombstone,
)
from federation.sync.pipeline import BiobankSync, Rejection, batched
from federation.sync.staging import (
    FULL,
    INCREMENTAL,
    Pass,
    PublishOutcome,
    StagedChange,
    StagedSample,
    Staging,
    encode,
)

log = logging.getLogger(__name__)

# Staged records written per transaction when a page is larger than this.
STAGE_BATCH = 5_000


@dataclass
class _Publish:
    """A publish in progress: what the staging store records, and what the backend deletes."""

    collections: dict[str, Collection]
    outcome: PublishOutcome = field(default_factory=PublishOutcome)
    deletes: list[str] = field(default_factory=list)  # ids the backend must drop
    removed: list[str] = field(default_factory=list)  # indexed samples deleted at the source


class StagedSync(BiobankSync):
    """Stage every stream from its checkpoint, then publish what the pass changed."""

    failures: ClassVar[tuple[type[Exception], ...]] = (
        SourceError,
        ConfigError,
        OSError,
        BackendUnavailable,
        ValueError,
    )

    def execute(self) -> str | None:
        self.staging = Staging(self.state)
        sync_pass = self._choose_pass()
        for kind in RECORD_KINDS:
            stream = self.stream(kind)
            if stream is None:
                continue
            checkpoint = self.staging.stream_checkpoint(self.biobank_id, stream.name)
            if checkpoint.get("pass") == sync_pass.number:
                if checkpoint.get("done"):
                    continue
                start = checkpoint.get("position")
            else:
                start = checkpoint.get("bookmark") if sync_pass.mode == INCREMENTAL else None
            bookmark = self._stage_stream(stream, start, sync_pass.number)
            self.staging.complete_stream(self.biobank_id, stream.name, sync_pass.number, bookmark)
        if sync_pass.mode == FULL:
            self._check_not_empty(sync_pass)
            self.staging.delete_unseen(self.biobank_id, sync_pass.number, sync_pass.started_at)
        return self._publish(sync_pass.mode)

    def _check_not_empty(self, sync_pass: Pass) -> None:
        """A full pass that read nothing after a successful one that read some fails; the
        next run then reads the source again rather than resuming the empty pass."""
        read = self.staging.read_in_pass(self.biobank_id, sync_pass.number, sync_pass.started_at)
        try:
            self.check_not_empty(read + self.counts.tombstones)
        except EmptyRead:
            self.staging.begin_pass(self.biobank_id, FULL)
            raise

    def _choose_pass(self) -> Pass:
        """Resume an unfinished pass, else begin one: incremental when it can be, else full."""
        biobank_id, mode = self.biobank_id, self.request.mode
        current = self.staging.current_pass(biobank_id)
        if (
            current is not None
            and not current.finished
            and not (mode == FULL and current.mode == INCREMENTAL)
        ):
            self.start(current.mode)
            log.info("%s: resuming pass %d from its checkpoints", biobank_id, current.number)
            return current
        streams = [s.name for s in self.connector.streams]
        can_increment = (
            mode != FULL
            and current is not None
            and current.finished
            and self.connector.incremental()
            and self.staging.has_bookmarks(biobank_id, streams)
            and biobank_id in self.backend.published()
        )
        sync_pass = self.staging.begin_pass(biobank_id, INCREMENTAL if can_increment else FULL)
        self.start(sync_pass.mode)
        return sync_pass

    def _stage_stream(
        self, stream: Stream, start: Mapping[str, Any] | None, number: int
    ) -> dict[str, Any] | None:
        """Pull one stream into the staging store; return its final checkpoint (the bookmark)."""
        schema = SCHEMAS[stream.record]()
        batch: list[StagedChange] = []
        bookmark: dict[str, Any] | None = None
        for item in self.connector.pull(stream, start):
            if isinstance(item, Checkpoint):
                self._flush(batch, number, (stream.name, item.state))
                bookmark = item.state
                continue
            if isinstance(item, Tombstone):
                batch.append(StagedChange(stream.record, item.stream, item.source_id))
                self.counts.tombstones += 1  # the source said so: not silence
                continue
            self.count_read()
            record, rejection = self.validate(schema, item)
            kept = record is not None and rejection is not None
            self.counts.partial += kept
            batch.append(
                StagedChange(
                    stream.record,
                    item.stream,
                    item.source_id,
                    record,
                    rejection.as_row() if rejection and not kept else None,
                    item.payload,
                    item.position,
                    dropped=rejection.as_row() if rejection and kept else None,
                )
            )
            if len(batch) >= STAGE_BATCH:
                self._flush(batch, number, None)  # staged; the position moves at a checkpoint
        if batch:
            self._flush(batch, number, None)
        return bookmark

    def _flush(
        self, batch: list[StagedChange], number: int, position: tuple[str, dict[str, Any]] | None
    ) -> None:
        """Stage a batch (and the checkpoint after it); quarantine duplicates; empty it."""
        duplicates = self.staging.stage(self.biobank_id, number, self.run_id, batch, position)
        self.counts.rejected += sum(1 for c in batch if c.rejection is not None)
        if duplicates:
            rows = [
                StagedChange(c.kind, c.stream, c.source_id, rejection=_duplicate_row(c))
                for c in duplicates
            ]
            self.staging.stage(self.biobank_id, number, self.run_id, rows, None)
            self.counts.rejected += len(rows)
        batch.clear()

    def _publish(self, mode: str) -> str | None:
        """Join the staged samples a publish must (re)write and hand them to the backend."""
        biobank_id, backend = self.biobank_id, self.backend
        whole = (
            mode == FULL
            or biobank_id not in backend.published()
            or self.staging.pending_references(biobank_id)  # collections go with a generation
        )
        publish = _Publish(collections=self.staging.collections(biobank_id))
        generation: str | None
        if whole:
            collections = publish.collections
            rows = self._rows(publish, only_affected=False)
            generation, self.counts.indexed = self.write_generation(collections, batched(rows))
        else:
            upserts = list(self._rows(publish, only_affected=True))
            if upserts or publish.deletes:
                version = self.staging.next_version(biobank_id)
                backend.apply_changes(biobank_id, upserts, publish.deletes, version=version)
                record_publish(backend, self.state.store.publications)
            self.counts.indexed = len(upserts)
            published = backend.published().get(biobank_id)
            generation = published.generation if published else None
        self.counts.deleted = len(publish.removed)
        self.counts.rejected += len(publish.outcome.orphans)
        self.staging.published(biobank_id, self.run_id, publish.outcome)
        return generation

    def _rows(self, publish: _Publish, *, only_affected: bool) -> Iterator[dict[str, Any]]:
        """Index rows of the staged samples, noting in `publish` what happened to each."""
        biobank_id, collections = self.biobank_id, publish.collections
        donors, ordinals = self.staging.donors(biobank_id)
        donor_stream = self.stream("donor")
        rejected_donors = (
            self.staging.rejected_donors(biobank_id, donor_stream.name) if donor_stream else {}
        )
        outcome = publish.outcome
        for staged in self.staging.samples(biobank_id, only_affected=only_affected):
            key = (staged.stream, staged.record_key)
            if staged.sample is None:
                outcome.gone.append(key)
                if staged.indexed:
                    publish.deletes.append(staged.id)
                    publish.removed.append(staged.id)
                continue
            row = join_sample(staged.sample, donors, collections, rejected_donors, ordinals)
            if isinstance(row, Orphan):
                outcome.orphans.append(_orphan_row(staged, row))
                self._unindex(publish, staged)
                continue
            outcome.joined.append(key)
            if row["withdrawn"]:
                self.counts.withdrawn += 1
                self._unindex(publish, staged)
                continue
            outcome.indexed.append(staged.id)
            yield row

    @staticmethod
    def _unindex(publish: _Publish, staged: StagedSample) -> None:
        publish.outcome.unindexed.append(staged.id)
        if staged.indexed:
            publish.deletes.append(staged.id)


def _orphan_row(staged: StagedSample, orphan: Orphan) -> dict[str, Any]:
    assert staged.sample is not None
    return Rejection(
        staged.stream,
        staged.source_id,
        "",
        orphan.field,
        orphan.value,
        orphan.reason,
        encode(staged.sample),
    ).as_row()


def _duplicate_row(change: StagedChange) -> dict[str, Any]:
    record = change.record
    assert record is not None
    return Rejection(
        change.stream,
        change.source_id,
        change.position,
        "id",
        record.id,
        f"duplicate id {record.id!r}: another source record has it",
        change.payload if change.payload is not None else {},
    ).as_row()
