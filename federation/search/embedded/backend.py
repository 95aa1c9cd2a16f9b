"""The embedded backend: immutable Parquet generations queried in-process with DuckDB.

Why this shape (measurements in docs/embedded-backend.md): DuckDB gives exact distinct
donor counts over a million rows fastest among the stores measured here, but a DuckDB
database file takes one writing process or many read-only ones. So a sync never writes
into what servers read: it writes a new Parquet file per biobank generation and publishes
it by atomically replacing `manifest.json` (the embedded equivalent of an alias swap).
Each server process notices the new manifest on its next search, loads the published
files into an in-memory table, and swaps it in; searches in flight finish on the table
they started with.
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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from federation.model import expr as ex
from federation.search import metrics
from federation.search.backend import (
    BackendUnavailable,
    ChangeOutcome,
    GenerationInfo,
    GenerationWriter,
    SearchBackend,
    decode_cursor,
    encode_cursor,
)
from federation.search.documents import ARROW_SCHEMA, COLUMNS, RECORD_COLUMNS
from federation.search.embedded.sql import summary_sql, to_sql
from federation.search.embedded.store import EmbeddedStore, ParquetGenerationWriter
from federation.search.facets import FACET, FACET_DEFINITIONS
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

# Columns copied as ENUMs at load, `key_<column>`, with whether they hold lists: the term
# facets' columns. Grouping by an ENUM groups by its small-integer index, about twice as fast
# as by the string at 1M rows (measured); `key_biobank_id` also groups the counts.
_ENUM_COLUMNS = {f.column: f.is_list for f in FACET_DEFINITIONS if f.bucket_width is None}
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
    """Searches the published generations of every biobank with in-process DuckDB."""

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
        self._db = duckdb.connect(":memory:")
        if threads:
            self._db.execute(f"SET threads = {int(threads)}")
        # Tables live in an in-memory database attached with compression, which DuckDB
        # applies at checkpoint; the allocator settings return the freed memory to the OS.
        # Measured at 1M rows (docs/embedded-backend.md): ~670 MB of private memory per
        # server process uncompressed, ~230 MB compressed, and queries no slower.
        self._db.execute("SET allocator_flush_threshold = '32MB'")
        self._db.execute("SET allocator_background_threads = true")
        self._db.execute("ATTACH ':memory:' AS mem (COMPRESS)")
        self._lock = threading.Lock()
        self._table: str | None = None
        self._manifest_stamp: tuple[int, int] | None = None
        self._manifest: dict[str, Any] = {"version": 0, "biobanks": {}}
        self._in_use: dict[str, int] = {}
        self._retired: set[str] = set()
        self._serial = 0

    # --- reading side -----------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.store.manifest_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def _refresh(self) -> None:
        stamp = self._stamp()
        if stamp == self._manifest_stamp and self._table is not None:
            return
        with self._lock:
            if stamp == self._manifest_stamp and self._table is not None:
                return
            manifest = self.store.read_manifest()
            self._serial += 1
            table = f"mem.samples_{self._serial}"
            files = self.store.live_files(manifest)
            try:
                self._load(table, files)
            except duckdb.IOException as err:
                # A generation vanished between reading the manifest and loading it: a newer
                # manifest exists; keep serving the loaded table and load that next time.
                if self._table is None:
                    raise BackendUnavailable(f"embedded store unreadable: {err}") from None
                return
            old = self._table
            self._table, self._manifest, self._manifest_stamp = table, manifest, stamp
            self.answers.clear()
            if old is not None:
                self._retired.add(old)
            self._drop_retired()
            self._compress()

    def _load(self, table: str, files: Sequence[Path]) -> None:
        """Create `table` from the generation files, with the key columns facets group by."""
        if files:
            listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
            # By name: a generation written before a layout change (the fingerprint's key
            # columns went in issue 12's overhead round) loads beside newer ones.
            source = f"read_parquet([{listing}], union_by_name = true)"
        else:
            self._db.register("_empty", pa.Table.from_pylist([], schema=ARROW_SCHEMA))
            source = "_empty"
        try:
            # Unnesting the lists is ~2x faster than distinct lists flattened (measured).
            found = self._db.execute(
                "SELECT "
                + ", ".join(
                    f"(SELECT list(DISTINCT v) FILTER (WHERE v IS NOT NULL) "
                    f"FROM (SELECT unnest({column}) AS v FROM {source}))"
                    if is_list
                    else f"(SELECT list(DISTINCT {column}) FILTER (WHERE {column} IS NOT NULL) "
                    f"FROM {source})"
                    for column, is_list in _ENUM_COLUMNS.items()
                )
            ).fetchone()
            assert found is not None
            keys = [
                f"CAST({column} AS {_enum_type(values or ())}{'[]' if is_list else ''}) "
                f"AS key_{column}"
                for (column, is_list), values in zip(_ENUM_COLUMNS.items(), found, strict=True)
            ]
            self._db.execute(f"CREATE TABLE {table} AS SELECT *, {', '.join(keys)} FROM {source}")
        finally:
            if not files:
                self._db.unregister("_empty")

    def _compress(self) -> None:
        """Checkpoint the attached database, which compresses the new table.

        A checkpoint cannot run while another thread's query holds a transaction; the table
        then stays uncompressed (faster to lose than to wait for) until the next reload.
        """
        try:
            self._db.execute("CHECKPOINT mem")
        except duckdb.Error as err:
            log.info("embedded store: checkpoint deferred (%s)", err)

    def _drop_retired(self) -> None:
        for name in list(self._retired):
            if self._in_use.get(name, 0) == 0:
                self._db.execute(f"DROP TABLE IF EXISTS {name}")
                self._retired.discard(name)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
        self._refresh()
        with self._lock:
            table = self._table
            assert table is not None
            self._in_use[table] = self._in_use.get(table, 0) + 1
        cursor = self._db.cursor()  # one per thread: DuckDB connections are not shared
        try:
            yield cursor, table
        finally:
            cursor.close()
            with self._lock:
                self._in_use[table] -= 1
                self._drop_retired()

    def answer(
        self,
        criteria: Criteria,
        *,
        facets: Sequence[str] = (),
        page: PageRequest | None = None,
        segments: Mapping[str, ex.Expr] | None = None,
        page_filter: ex.Expr | None = None,
        fingerprints: bool = True,
    ) -> BackendAnswer:
        with self._reading() as (db, table):
            asked = _answer_key(
                (table, fingerprints), criteria, facets, page, segments, page_filter
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
            record_page = self._page(db, table, criteria, page, page_filter) if page else None
            generation = {bb: e["generation"] for bb, e in self._manifest["biobanks"].items()}
            # The loaded table holds every generation of its manifest (a file that cannot
            # be read fails the load), so the manifest's biobanks are what was searched.
            covered = frozenset(generation)
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

    def sample_ids(self, biobank_id: str) -> set[str]:
        entry = self.store.read_manifest()["biobanks"].get(biobank_id)
        if not entry:
            return set()
        path = self.store.generation_path(biobank_id, entry["generation"])
        column = pq.read_table(path, columns=["sample_id"]).column("sample_id")
        return {str(v) for v in column.to_pylist()}

    def generation_writer(self, biobank_id: str) -> GenerationWriter:
        return ParquetGenerationWriter(self.store, biobank_id)

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
        live = pq.read_table(self.store.generation_path(biobank_id, entry["generation"]))
        kept_rows = [dict(r) for r in upserts if not r.get("withdrawn")]
        replaced = {str(r["sample_id"]) for r in upserts}
        gone = set(map(str, deletes))
        drop = pa.array(sorted(replaced | gone), type=pa.string())
        present = pc.is_in(live.column("sample_id"), value_set=drop)
        held = set(live.filter(present).column("sample_id").to_pylist())
        writer = ParquetGenerationWriter(self.store, biobank_id)
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
        with self.store.manifest_lock():
            manifest = self.store.read_manifest()
            if manifest["biobanks"].pop(biobank_id, None) is not None:
                manifest["version"] = int(manifest.get("version", 0)) + 1
                self.store.write_manifest(manifest)

    def damaged(self) -> dict[str, str]:
        out = {}
        for biobank_id, entry in self.store.read_manifest()["biobanks"].items():
            path = self.store.generation_path(biobank_id, entry["generation"])
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except (OSError, pa.ArrowInvalid) as err:
                out[biobank_id] = f"generation file {path} unreadable: {err}"
                continue
            if rows != entry["documents"]:
                out[biobank_id] = f"{path} holds {rows} rows, {entry['documents']} were published"
        return out

    def ready(self) -> bool:
        try:
            self._refresh()
        except BackendUnavailable:
            return False
        return self._table is not None

    def close(self) -> None:
        self._db.close()


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


def _enum_type(values: Sequence[str]) -> str:
    """An ENUM of the values; VARCHAR when there are none (an ENUM needs one)."""
    if not values:
        return "VARCHAR"
    return "ENUM(" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + ")"
