"""The embedded backend: immutable Parquet generations queried in-process with DuckDB.

Why this shape (measurements in docs/embedded-backend.md): DuckDB gives exact distinct
donor counts over a million rows fastest among the stores measured here, but a DuckDB
database file takes one writing process or many read-only ones. So a sync never writes
into what servers read: it writes a new Parquet file per biobank generation and publishes
it by atomically replacing `manifest.json` (the embedded equivalent of an alias swap).
The publishing process then builds one read-only DuckDB snapshot of all live generations
(`snapshot.py`) and names it in the manifest. Each server process notices the new manifest
on its next search and opens that file read-only (milliseconds, no copy of the rows);
searches in flight finish on the snapshot they started with.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from federation.model import expr as ex
from federation.search import metrics
from federation.search.backend import (
    BackendUnavailable,
    ChangeOutcome,
    Fingerprints,
    GenerationInfo,
    GenerationWriter,
    SearchBackend,
    decode_cursor,
    encode_cursor,
)
from federation.search.documents import COLUMNS, RECORD_COLUMNS
from federation.search.embedded.snapshot import (
    TABLE,
    Snapshot,
    orphaned,
    pending_publish,
    publish_snapshot,
)
from federation.search.embedded.sql import Holds, summary_sql, to_sql
from federation.search.embedded.store import EmbeddedStore, ParquetGenerationWriter
from federation.search.facets import FACET
from federation.search.fingerprint import fingerprint
from federation.search.query import (
    BackendAnswer,
    Cell,
    Criteria,
    FacetCell,
    PageRequest,
    RecordPage,
    missing_sort_value,
    sort_position,
)

log = logging.getLogger(__name__)

_RECORD_COLUMNS = ", ".join(RECORD_COLUMNS)


class AnswerCache:
    """Answers of one loaded table, least recently used out first; size 0 keeps none.

    Thread-safe: a server process's searches share it. The backend clears it whenever it
    loads a newly published manifest, and keys entries by the table they were read from, so
    an answer finished on the previous table after the switch is never served.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"answer cache size must not be negative (got {size})")
        self.size = size
        self._entries: OrderedDict[Hashable, BackendAnswer] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> BackendAnswer | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is None:
                self.misses += 1
            else:
                self._entries.move_to_end(key)
                self.hits += 1
        metrics.answer_cache_lookup(hit=answer is not None)
        return answer

    def put(self, key: Hashable, answer: BackendAnswer) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class EmbeddedBackend(SearchBackend):
    """Searches the published snapshot of every biobank's generation with in-process DuckDB."""

    name = "embedded"

    def __init__(
        self,
        root: Path,
        *,
        threads: int | None = None,
        answer_cache: int = 0,
    ) -> None:
        self.store = EmbeddedStore(root)
        # Repeated questions are answered from here until the next publish (DESIGN.md); the
        # runtime sizes it from the `embedded_answer_cache` setting.
        self.answers = AnswerCache(answer_cache)
        self._threads = threads
        self._lock = threading.Lock()
        # Held by the one thread opening a new snapshot; the others keep searching the
        # current one meanwhile instead of waiting.
        self._opening = threading.Lock()
        self._current: Snapshot | None = None
        self._manifest_stamp: tuple[int, int] | None = None
        self._manifest: dict[str, Any] = {"version": 0, "biobanks": {}}
        self._covered: frozenset[str] = frozenset()
        # Set while a sync of many biobanks runs in this process: its publishes become
        # searchable together at `settle()`, one snapshot build instead of one each.
        self._holding = False

    # --- reading side -----------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.store.manifest_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def _current_enough(self) -> bool:
        """Whether the open snapshot is the one the manifest named when last read."""
        return self._current is not None and self._stamp() == self._manifest_stamp

    def _refresh(self) -> None:
        """Follow the manifest: open the snapshot it names when that is a new one."""
        if self._current_enough():
            return
        # The first search of a process waits for the opening; later ones search the
        # current snapshot while one thread opens the next.
        if not self._opening.acquire(blocking=self._current is None):
            return
        try:
            if self._current_enough():
                return
            stamp = self._stamp()
            manifest = self.store.read_manifest()
            record = manifest.get("snapshot")
            version = int(manifest.get("version", 0))
            behind = record is None or int(record["version"]) < version
            if (
                self._current is None
                and behind
                and (record is not None or manifest["biobanks"])
                and orphaned(self.store)
            ):
                # A process starting on a store whose last publisher was killed before its
                # build (or that predates snapshots): build, as the publisher would have.
                # A running server never builds in a search: it serves its snapshot until
                # the next publish builds one that covers the killed publisher's too.
                publish_snapshot(self.store, at_least=version)
                stamp, manifest = self._stamp(), self.store.read_manifest()
                record = manifest.get("snapshot")
            current = self._current
            if current is not None and record is not None and current.name == record["file"]:
                self._changed(current, manifest, stamp)
                return
            try:
                snapshot = (
                    Snapshot.open(self.store, record, self._threads) if record else Snapshot.empty()
                )
            except duckdb.Error as err:
                # Collected between reading the manifest and opening it: a newer manifest
                # names its successor; keep serving the open one and follow next time.
                if current is None:
                    raise BackendUnavailable(f"embedded snapshot unreadable: {err}") from None
                log.info("embedded snapshot: opening deferred (%s)", err)
                return
            self._changed(snapshot, manifest, stamp)
        finally:
            self._opening.release()

    def _changed(
        self, snapshot: Snapshot, manifest: dict[str, Any], stamp: tuple[int, int] | None
    ) -> None:
        """The published state changed: search `snapshot` from now on, forget old answers.

        Searches in flight finish on the snapshot they started with, closed by the last.
        """
        # Served: the snapshot's biobanks the manifest still names, whose generation files
        # (the source of truth) still exist; the others are reported as not searchable.
        built = snapshot.record["biobanks"]
        covered = frozenset(
            bb
            for bb, generation in built.items()
            if bb in manifest["biobanks"] and self.store.generation_path(bb, generation).exists()
        )
        # A biobank published after the snapshot was built (its build is coming) is
        # answered as the previous state had it, without rows: not a generation gone.
        if int(snapshot.record.get("version", 0)) < int(manifest.get("version", 0)):
            covered |= frozenset(manifest["biobanks"]) - frozenset(built)
        with self._lock:
            old = self._current
            if old is not snapshot or covered != self._covered:
                self.answers.clear()
            self._current, self._manifest, self._manifest_stamp = snapshot, manifest, stamp
            self._covered = covered
            if old is not None and old is not snapshot:
                old.retired = True
                if old.users == 0:
                    old.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[tuple[Snapshot, duckdb.DuckDBPyConnection, frozenset[str]]]:
        self._refresh()
        with self._lock:
            snapshot = self._current
            assert snapshot is not None
            snapshot.users += 1
            covered = self._covered
        cursor = snapshot.db.cursor()  # one per thread: DuckDB connections are not shared
        try:
            yield snapshot, cursor, covered
        finally:
            cursor.close()
            with self._lock:
                snapshot.users -= 1
                if snapshot.retired and snapshot.users == 0:
                    snapshot.close()

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
        # The store sums keys per donor as it groups them anyway: all biobanks or none.
        fingerprints = bool(fingerprints)
        with self._reading() as (snapshot, db, covered):
            table = TABLE
            asked = _answer_key(
                (snapshot.name, covered, fingerprints),
                criteria,
                facets,
                page,
                segments,
                page_filter,
            )
            cached = self.answers.get(asked) if asked is not None else None
            if cached is not None:
                return cached
            names = list(segments or {})
            filters = [segments[name] for name in names] if segments else []
            # Without a biobank (country) clause, the biobank (country) facet counts the very
            # rows the per-biobank counts do: it is copied from them instead of grouped again.
            copied = [
                f for f in ("biobank", "country") if f in facets and criteria.without(f) == criteria
            ]
            grouped = [facet for facet in facets if facet not in copied]
            sql, params = summary_sql(
                table,
                criteria,
                grouped,
                filters,
                fingerprints=fingerprints,
                holds=Holds(snapshot.donor_keys, snapshot.donor_tables, snapshot.consent_table),
            )
            by_biobank: dict[str, Cell] = {}
            split: dict[str, dict[str, Cell]] = {}
            cells: list[FacetCell] = []
            for row in db.execute(sql, params).fetchall():
                facet, biobank_id, key = row[:3]
                if facet is None:
                    by_biobank[biobank_id] = _cell(row[3:6])
                    split[biobank_id] = {
                        name: _cell(row[6 + 3 * n : 9 + 3 * n]) for n, name in enumerate(names)
                    }
                else:
                    label = FACET[facet].bucket_key(key)
                    cells.append(FacetCell(facet, label, biobank_id, *_cell(row[3:6]).figures))
            cells += [
                FacetCell(facet, biobank_id, biobank_id, *cell.figures)
                for facet in copied
                for biobank_id, cell in by_biobank.items()
                if biobank_id is not None
            ]
            order = {facet: n for n, facet in enumerate(dict.fromkeys(facets))}
            cells.sort(key=lambda cell: order[cell.facet])
            # Served: the snapshot's biobanks whose generations the manifest still names and
            # whose files exist (`_changed`); rows of others are left out here and the
            # service names those biobanks as not searchable.
            if not covered.issuperset(by_biobank):
                by_biobank = {bb: c for bb, c in by_biobank.items() if bb in covered}
                split = {bb: c for bb, c in split.items() if bb in covered}
                cells = [c for c in cells if c.biobank_id in covered]
            record_page = self._page(db, table, criteria, page, page_filter) if page else None
            built = snapshot.record["biobanks"]
            generation = {bb: built[bb] for bb in covered if bb in built}
            answer = BackendAnswer(
                by_biobank, tuple(cells), record_page, generation, split, covered
            )
            if asked is not None:
                self.answers.put(asked, answer)
        return answer

    def _page(
        self,
        db: duckdb.DuckDBPyConnection,
        table: str,
        criteria: Criteria,
        page: PageRequest,
        page_filter: ex.Expr | None,
    ) -> RecordPage:
        params: list[Any] = []
        condition = criteria.to_expr()
        if page_filter is not None:
            condition = ex.all_of(condition, page_filter)
        where = to_sql(condition, params)
        total = db.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()
        keys = page.sort_keys()
        # A missing value sorts as the smallest of its kind, the same on the engine.
        sorted_by = [f"COALESCE({key}, {missing_sort_value(key)!r})" for key in keys]
        direction = "DESC" if page.descending else "ASC"
        if page.after:
            position = decode_cursor(page.after, len(keys))
            where += f" AND ({', '.join(sorted_by)}) {'<' if page.descending else '>'} "
            # A date travels in the cursor as ISO text: compared as a date again.
            where += f"({', '.join(_placeholder(key) for key in keys)})"
            params = [*params, *position]
        result = db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM {table} WHERE {where} "
            f"ORDER BY {', '.join(f'{s} {direction}' for s in sorted_by)} "
            f"LIMIT {int(page.first) + 1}",
            params,
        )
        names = [d[0] for d in result.description]
        rows = [dict(zip(names, r, strict=True)) for r in result.fetchall()]
        more = len(rows) > page.first
        rows = rows[: page.first]
        end = encode_cursor(sort_position(rows[-1], keys)) if rows else None
        return RecordPage(tuple(rows), end, more, int(total[0]) if total else 0)

    def published(self) -> dict[str, GenerationInfo]:
        manifest = self.store.read_manifest()
        return {
            bb: GenerationInfo(
                bb, e["generation"], e["documents"], e["published_at"], e.get("metadata", {})
            )
            for bb, e in manifest["biobanks"].items()
        }

    def serves(self, generations: Mapping[str, str]) -> bool:
        """The manifest names each generation and its file is there (a stat per biobank)."""
        named = self.store.read_manifest()["biobanks"]
        return all(
            named.get(bb, {}).get("generation") == generation
            and self.store.generation_path(bb, generation).exists()
            for bb, generation in generations.items()
        )

    def publication_scope(self) -> str:
        """The index folder: the processes of one host (and hosts sharing it) read the same."""
        return f"embedded:{self.store.root.resolve()}"

    def sample_ids(self, biobank_id: str) -> set[str]:
        entry = self.store.read_manifest()["biobanks"].get(biobank_id)
        if not entry:
            return set()
        path = self.store.generation_path(biobank_id, entry["generation"])
        # pyarrow is imported where the sync path needs it, never by a server process only
        # searching (some 60 MB each; docs/performance.md, "Serving round 2").
        import pyarrow.parquet as pq

        column = pq.read_table(path, columns=["sample_id"]).column("sample_id")
        return {str(v) for v in column.to_pylist()}

    def generation_writer(self, biobank_id: str) -> GenerationWriter:
        return ParquetGenerationWriter(self.store, biobank_id, publishing=self._publishing)

    @contextlib.contextmanager
    def _publishing(self) -> Iterator[None]:
        """Around naming a generation in the manifest: make it searchable before leaving,
        unless publishes are held (then `settle()` does)."""
        with pending_publish(self.store):
            yield
            if not self._holding:
                self.settle()

    @contextlib.contextmanager
    def holding_publishes(self) -> Iterator[None]:
        """Generations published inside become searchable at `settle()`: a sync of many
        biobanks builds one snapshot, not one per biobank."""
        held, self._holding = self._holding, True
        try:
            with pending_publish(self.store):
                yield
        finally:
            self._holding = held

    def settle(self) -> None:
        """Return once the snapshot covers every generation published so far."""
        publish_snapshot(self.store, at_least=int(self.store.read_manifest()["version"]))

    def apply_changes(
        self,
        biobank_id: str,
        upserts: Sequence[Mapping[str, Any]],
        deletes: Sequence[str],
        *,
        version: int,
    ) -> ChangeOutcome:
        """A new generation: the live one minus deletes plus upserts, published atomically.

        Generations are immutable files, so a change rewrites the biobank's file; the sync
        batches a run's changes into one call. `version` needs no ordering here: the
        biobank's sync lock admits one writer and each call starts from the live file.
        """
        entry = self.store.read_manifest()["biobanks"].get(biobank_id)
        if entry is None:
            raise ValueError(f"{biobank_id} has no published generation; run a full sync")
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        live = pq.read_table(self.store.generation_path(biobank_id, entry["generation"]))
        kept_rows = [dict(r) for r in upserts if not r.get("withdrawn")]
        replaced = {str(r["sample_id"]) for r in upserts}
        gone = set(map(str, deletes))
        drop = pa.array(sorted(replaced | gone), type=pa.string())
        present = pc.is_in(live.column("sample_id"), value_set=drop)
        held = set(live.filter(present).column("sample_id").to_pylist())
        writer = ParquetGenerationWriter(self.store, biobank_id, publishing=self._publishing)
        with writer:
            writer.metadata = dict(entry.get("metadata") or {})
            survivors = live.filter(pc.invert(present))
            if survivors.num_rows:
                writer.add_table(survivors)
            writer.add(kept_rows)
            writer.publish()
        withdrawn = replaced - {str(r["sample_id"]) for r in kept_rows}
        removed = held & (gone | withdrawn)
        return ChangeOutcome(
            upserted=len(kept_rows),
            deleted=len(removed),
            missing=len(gone - held),
            conflicts=0,
            donors_rebuilt=0,
        )

    def remove_biobank(self, biobank_id: str) -> None:
        with self._publishing(), self.store.manifest_lock():
            manifest = self.store.read_manifest()
            if manifest["biobanks"].pop(biobank_id, None) is not None:
                manifest["version"] = int(manifest.get("version", 0)) + 1
                self.store.write_manifest(manifest)

    def damaged(self) -> dict[str, str]:
        out = {}
        # The files' footers read by DuckDB, not pyarrow: every readiness probe asks, and a
        # server process imports no pyarrow (docs/performance.md, "Serving round 2").
        with duckdb.connect() as footers:
            for biobank_id, entry in self.store.read_manifest()["biobanks"].items():
                path = self.store.generation_path(biobank_id, entry["generation"])
                try:
                    found = footers.execute(
                        "SELECT num_rows FROM parquet_file_metadata(?)", [str(path)]
                    ).fetchall()
                except (OSError, duckdb.Error) as err:
                    out[biobank_id] = f"generation file {path} unreadable: {err}"
                    continue
                rows = sum(int(r[0]) for r in found)
                if rows != entry["documents"]:
                    out[biobank_id] = (
                        f"{path} holds {rows} rows, {entry['documents']} were published"
                    )
        return out

    def ready(self) -> bool:
        try:
            self._refresh()
        except BackendUnavailable:
            return False
        return self._current is not None

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.retired = True
                if self._current.users == 0:
                    self._current.close()


def _placeholder(column: str) -> str:
    return "CAST(? AS DATE)" if COLUMNS.get(column) == "date" else "?"


def _answer_key(
    table: Hashable,
    criteria: Criteria,
    facets: Sequence[str],
    page: PageRequest | None,
    segments: Mapping[str, ex.Expr] | None,
    page_filter: ex.Expr | None,
) -> Hashable | None:
    """What decides an answer, with the table it is read from; None if it cannot be hashed."""
    key = (table, criteria, tuple(facets), page, tuple((segments or {}).items()), page_filter)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _cell(figures: Sequence[Any]) -> Cell:
    """A cell from (donors, samples, donor key sum); a NULL sum is an empty fingerprint."""
    donors, samples, key_sum = figures
    return Cell(int(donors or 0), int(samples or 0), fingerprint(key_sum))
