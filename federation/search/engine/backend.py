"""The engine backend: answers questions and applies changes; writes through the index admin."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, TypeVar

from federation.model import expr as ex
from federation.search.backend import (
    ChangeOutcome,
    Fingerprints,
    GenerationInfo,
    GenerationWriter,
    SearchBackend,
)
from federation.search.documents import COLUMNS
from federation.search.engine.admin import IndexAdmin
from federation.search.engine.bulk import (
    BulkPayloads,
    donor_document,
    raise_for_bulk,
    sample_document,
)
from federation.search.engine.client import (
    EngineError,
    EngineUnavailable,
    PartialAnswer,
    Written,
    connect,
)
from federation.search.engine.compiler import answer_search, facet_groups, page_search
from federation.search.engine.config import EngineConfig
from federation.search.engine.layout import SAMPLE_KIND, donor_doc_id, sample_doc_id
from federation.search.engine.locks import Lease
from federation.search.engine.results import (
    covered_biobanks,
    read_counts,
    read_facet,
    read_page,
)
from federation.search.engine.writer import EngineGenerationWriter
from federation.search.fingerprint import DONOR_KEY_FIELD
from federation.search.query import (
    BackendAnswer,
    Criteria,
    FacetCell,
    PageRequest,
)
from federation.settings import Settings, SettingsError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Ids of one sample_ids / donor rebuild page.
# Ids of one sample_ids / donor rebuild page.
SCAN_PAGE = 10_000


class EngineBackend(SearchBackend):
    """Searches and stores generations in Elasticsearch or OpenSearch."""

    name = "engine"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        try:
            # Two clients: searches fail fast, writes wait long and are retried with backoff.
            self.reader = connect(config.distribution, config.client_options(bulk=False))
            self.writer = connect(config.distribution, config.client_options(bulk=True))
        except ValueError as err:
            raise SettingsError(str(err)) from None
        self.admin = IndexAdmin(config, self.writer)
        self.names = self.admin.names
        self.locks = self.admin.locks

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineBackend:
        """The backend for `settings.backend` elasticsearch / opensearch."""
        return cls(EngineConfig.from_settings(settings))

    # --- engine version and schema -------------------------------------------------------------

    def index_schema(self) -> dict[str, Any]:
        """Settings and mappings for the engine's version (asked once, on first write)."""
        return self.admin.index_schema()

    # --- reading -------------------------------------------------------------------------------

    def answer(
        self,
        criteria: Criteria,
        *,
        facets: Sequence[str] = (),
        page: PageRequest | None = None,
        segments: Mapping[str, ex.Expr] | None = None,
        page_filter: ex.Expr | None = None,
        fingerprints: Fingerprints = True,
    ) -> BackendAnswer:
        segments = dict(segments or {})
        expr = criteria.to_expr()
        read = self.names.read_alias
        groups = facet_groups(criteria, facets)
        searches: list[tuple[str, Mapping[str, Any]]] = [
            (
                read,
                answer_search(
                    c.to_expr(),
                    grouped,
                    segments if c == criteria else None,
                    fingerprints=fingerprints,
                ),
            )
            for c, grouped in groups.items()
        ]
        if page is not None:
            condition = expr if page_filter is None else ex.all_of(expr, page_filter)
            searches.append((read, page_search(condition, page)))
        # One round trip: the engine runs the searches side by side.
        try:
            responses = self.reader.msearch(searches)
        except EngineUnavailable as err:
            # Never a silent undercount: an answer without some shards is refused, naming
            # whose data is missing (shards not started: a node recovering after a restart).
            missing = self._unsearchable_or_none()
            if not missing and not isinstance(err, PartialAnswer):
                raise
            refused = PartialAnswer(
                f"an answer now would be incomplete: {err}; not searchable now: "
                f"{', '.join(missing) or 'unknown biobanks'}"
            )
            refused.missing = tuple(missing)
            raise refused from None
        by_biobank, split, generation = read_counts(responses[0], list(segments))
        cells: list[FacetCell] = []
        for grouped, response in zip(groups.values(), responses, strict=False):
            for facet in grouped:
                cells.extend(read_facet(facet, response))
        record_page = read_page(responses[-1], page) if page is not None else None
        covered = covered_biobanks(responses[0])
        return BackendAnswer(by_biobank, tuple(cells), record_page, generation, split, covered)

    def published(self) -> dict[str, GenerationInfo]:
        out = {}
        for mapping in self.reader.mappings(self.names.read_alias).values():
            meta = mapping.get("_meta") or {}
            if "documents" not in meta:
                continue
            out[meta["biobank_id"]] = GenerationInfo(
                meta["biobank_id"],
                meta["generation"],
                int(meta["documents"]),
                meta["published_at"],
                meta.get("metadata") or {},
            )
        return out

    def serves(self, generations: Mapping[str, str]) -> bool:
        """Each generation's index is behind the read alias now (one alias lookup: an index
        deleted behind the gateway's back takes its aliases with it)."""
        behind = self.reader.aliases(self.names.read_alias)
        return all(self.names.index(bb, g) in behind for bb, g in generations.items())

    def publication_scope(self) -> str:
        """The index prefix: every host on the engine reads the same, whatever URL it uses."""
        return f"engine:{self.names.prefix}"

    def sample_ids(self, biobank_id: str) -> set[str]:
        query = {"term": {"kind": SAMPLE_KIND}}
        return {
            str(hit["_source"]["sample_id"])
            for hit in self._scan(self.names.biobank_alias(biobank_id), query, ["sample_id"])
        }

    def _scan(
        self, index: str, query: Mapping[str, Any], fields: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """Every hit of a query, paged with search_after on the unique sample_id."""
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": SCAN_PAGE,
                "query": query,
                "sort": [{"sample_id": "asc"}],
                "_source": list(fields),
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            response = self.retrying("scan", partial(self.writer.search, index, body))
            hits = response["hits"]["hits"]
            yield from hits
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    def damaged(self) -> dict[str, str]:
        out = {biobank_id: "its index has shards not started" for biobank_id in self.unsearchable()}
        sample = {"query": {"term": {"kind": SAMPLE_KIND}}}
        for biobank_id, info in self.published().items():
            if biobank_id in out:
                continue
            held = self.reader.count(self.names.biobank_alias(biobank_id), sample)
            if held != info.documents:
                out[biobank_id] = f"its index holds {held} samples, {info.documents} were published"
        return out

    def _unsearchable_or_none(self) -> list[str]:
        try:
            return self.unsearchable()
        except (EngineUnavailable, EngineError):
            return []  # the engine is down altogether: nobody's data is searchable

    def unsearchable(self) -> list[str]:
        """Biobanks whose live index has shards not started (red), by id."""
        red = [
            i
            for i, status in self.reader.index_health(self.names.read_alias).items()
            if status == "red"
        ]
        if not red:
            return []
        mappings = self.reader.mappings(",".join(red))
        return sorted(
            str((mappings.get(i, {}).get("_meta") or {}).get("biobank_id", i)) for i in red
        )

    def ready(self) -> bool:
        try:
            return self.reader.health() in ("green", "yellow")
        except (EngineUnavailable, EngineError):
            return False

    # --- writing -------------------------------------------------------------------------------

    def generation_writer(self, biobank_id: str) -> GenerationWriter:
        return EngineGenerationWriter(self.admin, biobank_id)

    def live_indices(self, biobank_id: str) -> list[str]:
        """The index (normally one) behind the biobank's alias."""
        return self.admin.live_indices(biobank_id)

    def remove_biobank(self, biobank_id: str) -> None:
        with self.lock(biobank_id):
            indices = list(self.writer.aliases(self.names.generations(biobank_id)))
            self.retrying("delete indices", lambda: self.writer.delete_indices(indices))

    def apply_changes(
        self,
        biobank_id: str,
        upserts: Sequence[Mapping[str, Any]],
        deletes: Sequence[str],
        *,
        version: int,
    ) -> ChangeOutcome:
        """Upsert sample rows and delete samples by id in the live generation (incremental sync).

        `version` grows with every change at the source (e.g. the change feed position in
        epoch milliseconds); each write carries it as an external version, so a stale or
        replayed change loses to a newer one and is counted as a conflict, not applied.
        A withdrawn donor's row is deleted, never indexed. The donors concerned are rebuilt
        from their samples so donor counts stay exact. Live indices do not refresh on their
        own, so the batch (samples and donors) becomes searchable at one refresh at the end.
        """
        if version < 2:
            raise ValueError(f"version: {version!r} must be 2 or more (full syncs write 1)")
        with self.lock(biobank_id):
            live = self.live_indices(biobank_id)
            if not live:
                raise EngineError(f"{biobank_id} has no published generation; run a full sync")
            index = live[0]
            kept = [r for r in upserts if not r.get("withdrawn")]
            removed = [str(r["sample_id"]) for r in upserts if r.get("withdrawn")] + list(deletes)
            touched = [str(r["sample_id"]) for r in kept] + removed
            # The donors concerned as searches see them now: the samples' old donors and the
            # upserts' new ones, each with its current samples.
            donors = set(self._donors_of(index, touched)) | {str(r["donor_id"]) for r in kept}
            samples = self._samples_of(index, sorted(donors))
            versioned = {"version": version, "version_type": "external"}
            payloads = BulkPayloads()
            written: list[Written] = []
            for row in kept:
                action = {
                    "index": {
                        "_index": index,
                        "_id": sample_doc_id(str(row["sample_id"])),
                        **versioned,
                    }
                }
                if (full := payloads.add(action, sample_document(row))) is not None:
                    written += self._bulk(full)
            for sid in removed:
                action = {"delete": {"_index": index, "_id": sample_doc_id(sid), **versioned}}
                if (full := payloads.add(action, None)) is not None:
                    written += self._bulk(full)
            if (last := payloads.take()) is not None:
                written += self._bulk(last)
            # Apply to the donors' samples what the engine accepted (not what lost to a
            # newer version), then rewrite those donors.
            for row, outcome in zip(kept, written, strict=False):
                if outcome.status < 300:
                    _move(samples, str(row["sample_id"]), sample_document(row))
            for sid, outcome in zip(removed, written[len(kept) :], strict=True):
                if outcome.status < 300 or outcome.status == 404:
                    _move(samples, sid, None)
            mapping = self.writer.mappings(index)[index]
            # An index made before donor keys (issue 12) has no field for them: its donors
            # stay unkeyed (fingerprint 0) until a full sync makes a new index.
            keyed = DONOR_KEY_FIELD in mapping.get("properties", {})
            self._write_donors(biobank_id, index, samples, keyed=keyed)
            self.retrying("refresh", lambda: self.writer.refresh(index))
            documents = self.retrying(
                "count",
                lambda: self.writer.count(index, {"query": {"term": {"kind": SAMPLE_KIND}}}),
            )
            meta = mapping.get("_meta", {})
            self.retrying(
                "update metadata",
                lambda: self.writer.put_meta(index, {**meta, "documents": documents}),
            )
        deletions = written[len(kept) :]
        return ChangeOutcome(
            upserted=sum(1 for w in written[: len(kept)] if w.status < 300),
            deleted=sum(1 for w in deletions if w.status < 300),
            missing=sum(1 for w in deletions if w.status == 404),
            conflicts=sum(1 for w in written if w.status == 409),
            donors_rebuilt=len(samples),
        )

    def _bulk(self, payload: bytes) -> list[Written]:
        def attempt() -> list[Written]:
            written = self.writer.bulk(payload)
            raise_for_bulk(written, conflicts_ok=True)
            return written

        return self.retrying("bulk", attempt)

    def _donors_of(self, index: str, sample_ids: Sequence[str]) -> list[str]:
        donors: list[str] = []
        for start in range(0, len(sample_ids), SCAN_PAGE):
            ids = [sample_doc_id(s) for s in sample_ids[start : start + SCAN_PAGE]]
            query = {
                "bool": {"filter": [{"term": {"kind": SAMPLE_KIND}}, {"ids": {"values": ids}}]}
            }
            donors += [
                str(h["_source"]["donor_id"]) for h in self._scan(index, query, ["donor_id"])
            ]
        return donors

    def _samples_of(self, index: str, donors: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Donor id -> {sample id: sample document} for the given donors, as searchable now."""
        samples: dict[str, dict[str, Any]] = {d: {} for d in donors}
        for start in range(0, len(donors), 1000):
            chunk = list(donors[start : start + 1000])
            query = {
                "bool": {
                    "filter": [{"term": {"kind": SAMPLE_KIND}}, {"terms": {"donor_id": chunk}}]
                }
            }
            for hit in self._scan(index, query, ["kind", *COLUMNS]):
                source = hit["_source"]
                samples[str(source["donor_id"])][str(source["sample_id"])] = source
        return samples

    def _write_donors(
        self,
        biobank_id: str,
        index: str,
        samples: Mapping[str, Mapping[str, Any]],
        *,
        keyed: bool = True,
    ) -> None:
        """Rewrite each donor document with its samples (or delete it when none are left).

        Not versioned: a donor document is derived from its samples' documents as they now
        are (whatever versions won), and the biobank's lock keeps other writers out.
        """
        payloads = BulkPayloads()
        for donor, rows in samples.items():
            target = {"_index": index, "_id": donor_doc_id(donor)}
            if rows:
                ordered = [rows[sid] for sid in sorted(rows)]
                document = donor_document(biobank_id, donor, ordered, keyed=keyed)
                full = payloads.add({"index": target}, document)
            else:
                full = payloads.add({"delete": target}, None)
            if full is not None:
                self._bulk(full)
        if (last := payloads.take()) is not None:
            self._bulk(last)

    # --- locks and retries -----------------------------------------------------------------------

    def acquire_lock(self, biobank_id: str) -> Lease:
        """Take (or re-enter, in this process) the biobank's sync lock."""
        return self.admin.acquire_lock(biobank_id)

    def release_lock(self, biobank_id: str) -> None:
        """Leave the lock; the outermost holder releases it."""
        self.admin.release_lock(biobank_id)

    def sync_lock(self, biobank_id: str) -> AbstractContextManager[object]:
        """The engine-held lock: one sync per biobank across every host sharing the engine."""
        return self.admin.lock(biobank_id)

    def lock(self, biobank_id: str) -> AbstractContextManager[Lease]:
        """Hold the biobank's sync lock for the block (across hosts; re-entrant here)."""
        return self.admin.lock(biobank_id)

    def retrying(self, what: str, operation: Callable[[], T]) -> T:
        """Run an engine write, retrying outages with exponential backoff, then give up."""
        return self.admin.retrying(what, operation)

    def close(self) -> None:
        self.admin.close()
        self.reader.close()
        self.writer.close()


def _move(samples: dict[str, dict[str, Any]], sample_id: str, document: Any) -> None:
    """Take a sample from whichever donor holds it and, given its document, add it to its donor."""
    for rows in samples.values():
        rows.pop(sample_id, None)
    if document is not None:
        samples.setdefault(str(document["donor_id"]), {})[sample_id] = document
