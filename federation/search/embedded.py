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
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from federation.model import expr as ex
from federation.model import icd10
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
from federation.search.facets import FACET, FACET_DEFINITIONS, FacetDefinition
from federation.search.query import (
    BackendAnswer,
    Cell,
    Criteria,
    FacetCell,
    PageRequest,
    RecordPage,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Generations kept per biobank: the serving one and the one before, which a server that
# read the previous manifest may still be loading.
KEEP_GENERATIONS = 2

# Columns copied as ENUMs at load, `key_<column>`, with whether they hold lists: the term
# facets' columns. Grouping by an ENUM groups by its small-integer index, about twice as fast
# as by the string at 1M rows (measured); `key_biobank_id` also groups the counts.
_ENUM_COLUMNS = {f.column: f.is_list for f in FACET_DEFINITIONS if f.bucket_width is None}


def _facet_key(facet: FacetDefinition) -> str:
    """The SQL of a row's bucket key: the ENUM copy, or a histogram bucket's lower bound."""
    if facet.bucket_width is not None:
        return f"{facet.column} // {facet.bucket_width} * {facet.bucket_width}"
    return f"key_{facet.column}"


_NOT_WITHDRAWN = ex.In("withdrawn", (False,))
# Up to this many terms, a list filter is an OR of list_contains (several times faster than
# list_has_any at 1M rows, measured); beyond it, one list_has_any keeps the SQL small.
MAX_CONTAINS_TERMS = 16
_RECORD_COLUMNS = ", ".join(RECORD_COLUMNS)


class EmbeddedStore:
    """The files on disk: generations per biobank and the manifest naming the live ones."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST

    def ensure(self) -> None:
        for sub in ("generations", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def read_manifest(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {"version": 0, "biobanks": {}}
        return data

    @contextlib.contextmanager
    def manifest_lock(self) -> Iterator[None]:
        """Serialise manifest updates from concurrent syncs of different biobanks."""
        self.ensure()
        with (self.root / "manifest.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.root / f".{MANIFEST}.{uuid.uuid4().hex}"
        with tmp.open("w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.manifest_path)  # atomic: readers see the old or the new one

    def generation_path(self, biobank_id: str, generation: str) -> Path:
        return self.root / "generations" / biobank_id / f"{generation}.parquet"

    def live_files(self, manifest: dict[str, Any]) -> list[Path]:
        return [
            self.generation_path(bb, entry["generation"])
            for bb, entry in sorted(manifest["biobanks"].items())
        ]

    def collect_garbage(self, biobank_id: str, manifest: dict[str, Any]) -> None:
        folder = self.root / "generations" / biobank_id
        if not folder.exists():
            return
        live = manifest["biobanks"].get(biobank_id, {}).get("generation")
        files = sorted(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime, reverse=True)
        keep = {f"{live}.parquet"} | {p.name for p in files[:KEEP_GENERATIONS]}
        for path in files:
            if path.name not in keep:
                path.unlink(missing_ok=True)


class ParquetGenerationWriter(GenerationWriter):
    def __init__(self, store: EmbeddedStore, biobank_id: str) -> None:
        super().__init__(biobank_id)
        self.store = store
        store.ensure()
        # Leftovers of a killed sync of this biobank (one sync per biobank runs at a time).
        for stale in (store.root / "tmp").glob(f"{biobank_id}--*.parquet"):
            stale.unlink(missing_ok=True)
        self.generation = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.tmp_path = store.root / "tmp" / f"{biobank_id}--{self.generation}.parquet"
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self.tmp_path, ARROW_SCHEMA, compression="zstd"
        )
        self.count = 0

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        assert self._writer is not None, "writer already closed"
        self._writer.write_table(pa.Table.from_pylist(list(rows), schema=ARROW_SCHEMA))
        self.count += len(rows)

    def add_table(self, table: pa.Table) -> None:
        """Append rows already in the index's Arrow schema (a previous generation's)."""
        assert self._writer is not None, "writer already closed"
        self._writer.write_table(table.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA))
        self.count += table.num_rows

    def _publish(self) -> GenerationInfo:
        assert self._writer is not None, "writer already closed"
        self._writer.close()
        self._writer = None
        final = self.store.generation_path(self.biobank_id, self.generation)
        final.parent.mkdir(parents=True, exist_ok=True)
        with self.tmp_path.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp_path, final)
        info = GenerationInfo(
            self.biobank_id,
            self.generation,
            self.count,
            dt.datetime.now(dt.UTC).isoformat(),
            self.metadata,
        )
        with self.store.manifest_lock():
            manifest = self.store.read_manifest()
            manifest["version"] = int(manifest.get("version", 0)) + 1
            manifest["biobanks"][self.biobank_id] = {
                "generation": info.generation,
                "documents": info.documents,
                "published_at": info.published_at,
                "metadata": info.metadata,
            }
            self.store.write_manifest(manifest)
        self.store.collect_garbage(self.biobank_id, manifest)
        return info

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        self.tmp_path.unlink(missing_ok=True)


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
                return None
            self._entries.move_to_end(key)
            self.hits += 1
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
            source = f"read_parquet([{listing}])"
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
    ) -> BackendAnswer:
        with self._reading() as (db, table):
            asked = _answer_key(table, criteria, facets, page, segments, page_filter)
            cached = self.answers.get(asked) if asked is not None else None
            if cached is not None:
                return cached
            names = list(segments or {})
            filters = [segments[name] for name in names] if segments else []
            # Without a biobank clause, the biobank facet counts the very rows the per-biobank
            # counts do: it is copied from them instead of grouped again.
            copied = "biobank" in facets and criteria.without("biobank") == criteria
            grouped = [facet for facet in facets if not (copied and facet == "biobank")]
            sql, params = summary_sql(table, criteria, grouped, filters)
            by_biobank: dict[str, Cell] = {}
            split: dict[str, dict[str, Cell]] = {}
            cells: list[FacetCell] = []
            for row in db.execute(sql, params).fetchall():
                facet, biobank_id, key, donors, samples = row[:5]
                if facet is None:
                    by_biobank[biobank_id] = Cell(int(donors), int(samples))
                    split[biobank_id] = {
                        name: Cell(int(row[5 + 2 * n]), int(row[6 + 2 * n]))
                        for n, name in enumerate(names)
                    }
                else:
                    label = FACET[facet].bucket_key(key)
                    cells.append(FacetCell(facet, label, biobank_id, int(donors), int(samples)))
            if copied:
                cells += [
                    FacetCell("biobank", biobank_id, biobank_id, cell.donors, cell.samples)
                    for biobank_id, cell in by_biobank.items()
                    if biobank_id is not None
                ]
            order = {facet: n for n, facet in enumerate(dict.fromkeys(facets))}
            cells.sort(key=lambda cell: order[cell.facet])
            record_page = self._page(db, table, criteria, page, page_filter) if page else None
            generation = {bb: e["generation"] for bb, e in self._manifest["biobanks"].items()}
            answer = BackendAnswer(by_biobank, tuple(cells), record_page, generation, split)
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
        if page.after:
            biobank, sample = decode_cursor(page.after)
            where += " AND (biobank_id, sample_id) > (?, ?)"
            params = [*params, biobank, sample]
        result = db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM {table} WHERE {where} "
            f"ORDER BY biobank_id, sample_id LIMIT {int(page.first) + 1}",
            params,
        )
        names = [d[0] for d in result.description]
        rows = [dict(zip(names, r, strict=True)) for r in result.fetchall()]
        more = len(rows) > page.first
        rows = rows[: page.first]
        end = encode_cursor((rows[-1]["biobank_id"], rows[-1]["sample_id"])) if rows else None
        return RecordPage(tuple(rows), end, more)

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

    def ready(self) -> bool:
        try:
            self._refresh()
        except BackendUnavailable:
            return False
        return self._table is not None

    def close(self) -> None:
        self._db.close()


def summary_sql(
    table: str, criteria: Criteria, facets: Sequence[str], segments: Sequence[ex.Expr]
) -> tuple[str, list[Any]]:
    """One statement for the per-biobank counts, their segment split and every facet.

    Rows: (None, biobank, None, donors, samples, then donors and samples per segment) for the
    counts, and (facet, biobank, key, donors, samples, None...) per facet bucket.

    A facet counts the rows matching the criteria minus its own clause. So the clauses the
    facets drop become boolean columns of one selection of the rows matching the rest, and
    each facet ANDs all of them but its own. When the rest narrows the rows, that selection
    is materialised once instead of filtering every row once per facet. Distinct donors are
    counted in two steps (rows per donor and key, then donors per key), which at 1M rows is
    faster than count(DISTINCT) and gives the segments' donor counts from the same pass.
    """
    distinct = list(dict.fromkeys(facets))
    own: dict[str, ex.Expr] = {}
    for facet in distinct:
        clause = _own_clause(criteria, facet)
        if clause is not None:
            own[facet] = clause
    rest = criteria
    for facet in own:
        rest = rest.without(facet)
    params: list[Any] = []
    columns = ["key_biobank_id AS bb", "donor_ord"]
    columns += [f"{_facet_key(FACET[facet])} AS k{n}" for n, facet in enumerate(distinct)]
    flag = {facet: f"f{n}" for n, facet in enumerate(own)}
    columns += [f"{to_sql(clause, params)} AS {flag[facet]}" for facet, clause in own.items()]
    columns += [f"{to_sql(segment, params)} AS g{n}" for n, segment in enumerate(segments)]
    rest_expr = rest.to_expr()
    where = to_sql(rest_expr, params)
    narrowed = rest_expr != _NOT_WITHDRAWN and bool(facets)
    how = "MATERIALIZED" if narrowed else "NOT MATERIALIZED"

    def matching(*, but: str | None = None) -> str:
        kept = [name for facet, name in flag.items() if facet != but]
        return " AND ".join(kept) if kept else "TRUE"

    per_donor = ["count(*) AS n"] + [
        f"count(*) FILTER (WHERE g{n}) AS n{n}" for n in range(len(segments))
    ]
    split = [f"count(*) FILTER (WHERE n{n} > 0), sum(n{n})" for n in range(len(segments))]
    blanks = "".join(", NULL, NULL" for _ in segments)
    branches = [
        f"SELECT CAST(NULL AS VARCHAR), bb, CAST(NULL AS VARCHAR), count(*), sum(n)"
        f"{''.join(', ' + s for s in split)} FROM (SELECT bb, {', '.join(per_donor)} "
        f"FROM m WHERE {matching()} GROUP BY bb, donor_ord) GROUP BY bb"
    ]
    for facet in facets:
        column = f"k{distinct.index(facet)}"
        key = f"unnest({column})" if FACET[facet].is_list else column
        # The raw key per bucket; named from it in Python, once per bucket, not per row
        # (building the age label per row tripled the age facet's time at 1M rows).
        branches.append(
            f"SELECT '{facet}', bb, CAST(k AS VARCHAR), count(*), sum(n){blanks} FROM ("
            "SELECT bb, k, count(*) AS n FROM ("
            f"SELECT bb, donor_ord, {key} AS k FROM m WHERE {matching(but=facet)}"
            ") WHERE k IS NOT NULL GROUP BY bb, donor_ord, k) GROUP BY bb, k"
        )
    sql = (
        f"WITH m AS {how} (SELECT {', '.join(columns)} FROM {table} WHERE {where}) "
        + " UNION ALL ".join(branches)
    )
    return sql, params


def _answer_key(
    table: str,
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


def _own_clause(criteria: Criteria, facet: str) -> ex.Expr | None:
    """The clause of the criteria a facet drops (`Criteria.without`), None if it drops none."""
    without = criteria.without(facet)
    if without == criteria:
        return None
    dropped = {
        f.name: getattr(criteria, f.name)
        for f in dataclasses.fields(Criteria)
        if getattr(criteria, f.name) != getattr(without, f.name)
    }
    alone = dataclasses.replace(Criteria(), **dropped).to_expr()
    if isinstance(alone, ex.And):
        return ex.all_of(*(item for item in alone.items if item != _NOT_WITHDRAWN))
    return alone


def _enum_type(values: Sequence[str]) -> str:
    """An ENUM of the values; VARCHAR when there are none (an ENUM needs one)."""
    if not values:
        return "VARCHAR"
    return "ENUM(" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + ")"


def compile_where(criteria: Criteria) -> tuple[str, list[Any]]:
    """Criteria as a DuckDB WHERE clause with bound parameters."""
    params: list[Any] = []
    return to_sql(criteria.to_expr(), params), params


def to_sql(node: ex.Expr, params: list[Any]) -> str:
    """Translate a filter tree to SQL, appending bound values to `params`."""
    if isinstance(node, ex.Const):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, ex.In):
        params.extend(node.values)
        if len(node.values) == 1:
            return f"{_column(node.column)} = ?"
        return f"{_column(node.column)} IN ({', '.join('?' for _ in node.values)})"
    if isinstance(node, ex.HasAny):
        values = list(node.values)
        if node.column == "disease_terms":
            values = _without_descendants(values)
        if len(values) == 1:
            # Half the cost of list_has_any for the common one-term case (measured).
            params.append(values[0])
            return f"list_contains({_column(node.column)}, ?)"
        if len(values) <= MAX_CONTAINS_TERMS:
            params.extend(values)
            probes = [f"list_contains({_column(node.column)}, ?)" for _ in values]
            return "(" + " OR ".join(probes) + ")"
        params.append(values)
        return f"list_has_any({_column(node.column)}, ?::VARCHAR[])"
    if isinstance(node, ex.Range):
        bounds = []
        for op, value in ((">=", node.gte), ("<=", node.lte), ("<", node.lt)):
            if value is not None:
                bounds.append(f"{_column(node.column)} {op} ?")
                params.append(value)
        return "(" + " AND ".join(bounds) + ")" if bounds else f"{_column(node.column)} IS NOT NULL"
    if isinstance(node, ex.IsNull):
        return f"{_column(node.column)} IS NULL"
    if isinstance(node, ex.Not):
        # SQL's NOT of NULL is NULL (no match); a filter tree's NOT means "not matched".
        return f"NOT coalesce({to_sql(node.item, params)}, FALSE)"
    if isinstance(node, ex.And):
        return "(" + " AND ".join(to_sql(i, params) for i in node.items) + ")"
    if isinstance(node, ex.Or):
        return "(" + " OR ".join(to_sql(i, params) for i in node.items) + ")"
    raise TypeError(f"unknown filter node {node!r}")


def _without_descendants(codes: list[str]) -> list[str]:
    """The codes minus those under another of them: the same rows match, with fewer probes.

    A row's `disease_terms` holds every ancestor of each diagnosis, so a row holding a
    code also holds the code's ancestors. A free-text search resolves to a block and all
    its categories ("breast cancer": 12 codes, of which 3 decide), and each costs a probe.
    """
    wanted = set(codes)
    return [code for code in codes if not wanted.intersection(_ancestors(code))]


def _ancestors(code: str) -> tuple[str, ...]:
    try:
        return icd10.ancestors(code)
    except ValueError:  # not a WHO code as spelled: it can only match itself
        return ()


def _column(name: str) -> str:
    if name not in COLUMNS:
        raise ValueError(f"unknown index column {name!r}")
    return name
