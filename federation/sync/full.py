"""A sync that reads the whole source every run (file exports: `resumable = False`).

Collections and donors are few and held in memory; samples stream through to a new
generation in batches, so memory stays flat at any size, and the generation is published
in one step. A killed run leaves the previous generation serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from federation import faults
from federation.model.records import SCHEMAS, Collection, Donor
from federation.search.documents import Orphan, donor_ordinals, join_sample
from federation.search.warm import record_publish
from federation.sync.connector import ConfigError, SourceError, SourceRecord
from federation.sync.guards import SourceShrank, check_shrink
from federation.sync.pipeline import WRITE_BATCH, BiobankSync, Rejection, collection_json
from federation.sync.staging import FULL, Staging


@dataclass
class _References:
    """The collections and donors read so far, and why rejected donors were rejected."""

    collections: dict[str, Collection] = field(default_factory=dict)
    donors: dict[str, Donor] = field(default_factory=dict)
    rejected_donors: dict[str, str] = field(default_factory=dict)


class FullSync(BiobankSync):
    """Pull everything, validate, write and publish a whole generation, quarantine."""

    failures: ClassVar[tuple[type[Exception], ...]] = (
        SourceError,
        ConfigError,
        OSError,
        SourceShrank,
    )

    def execute(self) -> str | None:
        self.start(FULL)
        self.rejections: list[Rejection] = []
        self.partial: list[Rejection] = []  # records kept without some values
        self.references = _References()
        self.kept: set[str] = set()
        faults.reached("after_start")
        previous = self.backend.sample_ids(self.biobank_id)
        with self.backend.generation_writer(self.biobank_id) as writer:
            self._pull_references()
            collections = self.references.collections.values()
            writer.metadata = {"collections": [collection_json(c) for c in collections]}
            for batch in self._sample_batches():
                writer.add(batch)
            faults.reached("after_pull")
            self.check_not_empty(self.counts.read)
            self.counts.rejected = len(self.rejections)
            self.counts.partial = len(self.partial)
            self.counts.indexed = writer.count
            self.counts.deleted = len(previous - self.kept)
            check_shrink(
                self.biobank_id,
                len(previous),
                self.counts.deleted,
                self.request.max_shrink,
                # Confirming an empty read (--allow-empty) confirms the shrink to nothing.
                confirmed=self.request.allow_shrink
                or (self.request.allow_empty and self.counts.read == 0),
            )
            quarantine = [r.as_row() for r in (*self.rejections, *self.partial)]
            # Recorded before publishing, so a run killed right after its publish is
            # settled as the success it was (`federation.sync.recovery`).
            self.state.store.runs.prepare_publish(
                self.run_id, writer.generation, self.counts.as_dict(), quarantine
            )
            faults.reached("before_publish")
            info = writer.publish()
            self.published = info.generation
            record_publish(self.backend, self.state.store.publications)
            faults.reached("after_publish")
        self.counts.indexed = info.documents
        self.state.replace_quarantine(self.biobank_id, self.run_id, quarantine)
        # A biobank that moved from a network source to file exports: its staged
        # records describe a source it no longer has.
        Staging(self.state).forget(self.biobank_id)
        return info.generation

    def _records(self, kind: str) -> Iterator[tuple[SourceRecord, Any]]:
        """Valid canonical records of one kind, with their source; rejections are kept."""
        stream = self.stream(kind)
        if stream is None:
            return
        schema = SCHEMAS[kind]()
        seen: set[str] = set()
        for item in self.connector.pull(stream, None):
            if not isinstance(item, SourceRecord):
                continue  # a file read whole has no checkpoints to keep or tombstones to send
            self.count_read()
            record, rejection = self.validate(schema, item)
            if record is not None and rejection is not None:
                self.partial.append(rejection)  # kept; the row names the dropped values
            elif rejection is not None:
                self.rejections.append(rejection)
                if kind == "donor" and item.source_id:
                    self.references.rejected_donors[item.source_id] = rejection.reason
                continue
            if record.id in seen:
                self.rejections.append(
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

    def _pull_references(self) -> None:
        for _, collection in self._records("collection"):
            self.references.collections[collection.id] = collection
        for _, donor in self._records("donor"):
            self.references.donors[donor.id] = donor

    def _sample_batches(self) -> Iterator[list[dict[str, Any]]]:
        refs = self.references
        batch: list[dict[str, Any]] = []
        ordinals = donor_ordinals(refs.donors)
        for item, sample in self._records("sample"):
            row = join_sample(sample, refs.donors, refs.collections, refs.rejected_donors, ordinals)
            if isinstance(row, Orphan):
                self.rejections.append(
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
                self.counts.withdrawn += 1
                continue
            self.kept.add(row["sample_id"])
            batch.append(row)
            if len(batch) >= WRITE_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
