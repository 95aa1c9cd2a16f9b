"""One read-only DuckDB snapshot per published state, built once and opened by every server.

Why (measured in docs/embedded-backend.md, "Snapshot publish"): copying every row into each
server process cost ~670 MB per process at 1M rows and a 0.7-1.9 s stall on the first search
after every publish. Instead, the process that publishes (a sync) builds the whole searchable
table into `snapshots/snapshot-<version>-<id>.duckdb` from the live Parquet generations, and
names it in the manifest (`snapshot`). A server opens that file read-only (milliseconds),
its data pages come through the OS page cache shared by all processes, and it switches when
the manifest names a newer one: searches in flight finish on the connection they started on.

Builds are coalesced: one build at a time holds `snapshots/build.lock`; a publisher waiting
for it finds, once it gets the lock, that a build which started after its publish already
covers its version, and returns without building again. A sync of many biobanks holds its
publishes and builds once at its end (`EmbeddedBackend.holding_publishes`). Parquet stays
the source of truth: a snapshot can always be rebuilt from the generations the manifest names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from federation import faults
from federation.search.documents import arrow_schema
from federation.search.embedded.sql import (
    DONOR_KEY_COLUMN,
    consent_table,
    donor_table,
    donor_tables_sql,
)
from federation.search.embedded.store import EmbeddedStore, StoreWriteFailed
from federation.search.facets import FACET_DEFINITIONS
from federation.search.fingerprint import KEY_MASK, donor_key_sql

log = logging.getLogger(__name__)

SNAPSHOTS = "snapshots"
TABLE = "samples"
BUILD_PREFIX = ".build-"
BUILD_LOCK = "build.lock"
# The snapshot record's flag: the table has unique donor keys to group donors by.
DONOR_KEYS = "donor_keys"
PENDING_LOCK = "pending.lock"
# Where a test kills a build (`federation.faults`): the file is written, not yet named.
KILLED_BUILD_POINT = "during_snapshot_build"
# A generation can vanish while a build reads it (two publishes of one biobank in between):
# the build starts again from the newer manifest, at most this many times.
BUILD_ATTEMPTS = 5
# Per server process: DuckDB's buffer pool is private to each process, so this bounds what
# each one keeps of the snapshot's blocks (the page cache under them is shared). Measured at
# 1M and 10M rows in docs/embedded-backend.md: the searches need ~150 MB of working memory
# at 10M; more than this only keeps more decompressed blocks.
READER_MEMORY_LIMIT = "500MB"
BUILD_MEMORY_LIMIT = "2GB"

# Columns copied as ENUMs in the snapshot, `key_<column>`, with whether they hold lists: the
# term facets' columns. Grouping by an ENUM groups by its small-integer index, about twice as
# fast as by the string at 1M rows (measured); `key_biobank_id` also groups the counts.
_ENUM_COLUMNS = {f.column: f.is_list for f in FACET_DEFINITIONS if f.bucket_width is None}


def create_samples(db: duckdb.DuckDBPyConnection, table: str, files: Sequence[Path]) -> bool:
    """Create `table` from the generation files, with the key columns facets group by and
    each row's donor key (`search.fingerprint`); True when the donor keys are unique per
    biobank, so that counting groups donors by their key (see `summary_sql`)."""
    if files:
        listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        # By name: a generation written before a layout change (the fingerprint's key
        # columns went in issue 12's overhead round) loads beside newer ones.
        source = f"read_parquet([{listing}], union_by_name = true)"
    else:
        import pyarrow as pa  # only here: a server process that opens snapshots needs none

        db.register("_empty", pa.Table.from_pylist([], schema=arrow_schema()))
        source = "_empty"
    try:
        # Unnesting the lists is ~2x faster than distinct lists flattened (measured).
        found = db.execute(
            "SELECT "
            + ", ".join(
                f"(SELECT list(DISTINCT v) FILTER (WHERE v IS NOT NULL) "
                f"FROM (SELECT unnest({column}) AS v FROM {source}))"
                if is_list
                else f"(SELECT list(DISTINCT {column}) FILTER (WHERE {column} IS NOT NULL) "
                f"FROM {source})"
                for column, is_list in _ENUM_COLUMNS.items()
            )
            # The key mix is a bijection of ordinals 0..2^26-1: keys of ordinals in that
            # range are unique per biobank (beyond it, about 67M donors ever numbered in
            # one biobank, counting groups by the ordinal instead).
            + f", (SELECT coalesce(min(donor_ord) >= 0 AND max(donor_ord) <= {KEY_MASK}, true) "
            f"FROM {source})"
        ).fetchone()
        assert found is not None
        keys = [
            f"CAST({column} AS {_enum_type(values or ())}{'[]' if is_list else ''}) AS key_{column}"
            for (column, is_list), values in zip(_ENUM_COLUMNS.items(), found, strict=False)
        ]
        # Stored, an INTEGER with known bounds: summed by the counting query about four
        # times as cheaply as worked out there from the ordinal (CPU time of the mix's
        # statements at 100k: +1.5 % over no fingerprint, against +9.5 %; docs/privacy.md).
        keys.append(f"CAST({donor_key_sql('donor_ord')} AS INTEGER) AS {DONOR_KEY_COLUMN}")
        db.execute(f"CREATE TABLE {table} AS SELECT *, {', '.join(keys)} FROM {source}")
        for statement, params in donor_tables_sql(table):
            db.execute(statement, params)
        return bool(found[len(_ENUM_COLUMNS)])
    finally:
        if not files:
            db.unregister("_empty")


def _enum_type(values: Sequence[str]) -> str:
    """An ENUM of the values; VARCHAR when there are none (an ENUM needs one)."""
    if not values:
        return "VARCHAR"
    return "ENUM(" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + ")"


# --- building (the publishing process) -------------------------------------------------------


def snapshot_folder(store: EmbeddedStore) -> Path:
    return store.root / SNAPSHOTS


@contextlib.contextmanager
def _flocked(store: EmbeddedStore, name: str, how: int) -> Iterator[None]:
    """A file lock under `snapshots/`; a killed holder's lock goes with its process."""
    folder = snapshot_folder(store)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (folder / name).open("a") as handle:
        fcntl.flock(handle, how)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pending_publish(store: EmbeddedStore) -> contextlib.AbstractContextManager[None]:
    """Held (shared) by a process from before it names a generation in the manifest until
    a snapshot covers it: while anyone holds it, a manifest ahead of its snapshot is a build
    to come, not one a killed process left undone (`orphaned`)."""
    return _flocked(store, PENDING_LOCK, fcntl.LOCK_SH)


def orphaned(store: EmbeddedStore) -> bool:
    """True when no process is publishing or building: a manifest ahead of its snapshot
    was left so by a process killed between its publish and its build."""
    for name in (PENDING_LOCK, BUILD_LOCK):
        try:
            with _flocked(store, name, fcntl.LOCK_EX | fcntl.LOCK_NB):
                pass  # a probe: taken at once means nobody holds it; released on leaving
        except BlockingIOError:
            return False
    return True


def build_snapshot(store: EmbeddedStore, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the snapshot of `manifest` under a temporary name, durable; return its record.

    The record is what the manifest's `snapshot` entry holds: the file, the manifest version
    and generations it was built from.
    """
    folder = snapshot_folder(store)
    started = time.perf_counter()
    tmp = folder / f"{BUILD_PREFIX}{uuid.uuid4().hex}.duckdb"
    try:
        # Bounded, so a build of 10M rows next to the servers does not take the machine's
        # memory (DuckDB's default is 80 % of it); above it DuckDB spills to disk.
        db = duckdb.connect(str(tmp), config={"memory_limit": BUILD_MEMORY_LIMIT})
        try:
            unique_keys = create_samples(db, TABLE, store.live_files(manifest))
            db.execute("CHECKPOINT")
        finally:
            db.close()
        faults.reached(KILLED_BUILD_POINT)
        with tmp.open("rb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            os.fsync(handle.fileno())
        version = int(manifest.get("version", 0))
        final = folder / f"snapshot-{version}-{uuid.uuid4().hex[:8]}.duckdb"
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
        raise
    return {
        "file": final.name,
        "version": version,
        "biobanks": {bb: e["generation"] for bb, e in manifest["biobanks"].items()},
        "built_at": dt.datetime.now(dt.UTC).isoformat(),
        "build_s": round(time.perf_counter() - started, 2),
        # Counting may group donors by their stored key (a snapshot built before had none).
        DONOR_KEYS: unique_keys,
    }


def publish_snapshot(store: EmbeddedStore, *, at_least: int) -> dict[str, Any]:
    """Make the published state of manifest version `at_least` (or newer) searchable.

    Returns the manifest's snapshot record once one covers that version: built here, or by
    another process whose build started after that version was published. A killed build
    leaves the previous snapshot named in the manifest and serving.
    """
    with _flocked(store, BUILD_LOCK, fcntl.LOCK_EX):
        for attempt in range(BUILD_ATTEMPTS):
            manifest = store.read_manifest()
            current = manifest.get("snapshot")
            if current is not None and int(current["version"]) >= at_least:
                return dict(current)
            # Leftovers of a killed build: under the lock no other build is running.
            for stale in snapshot_folder(store).glob(f"{BUILD_PREFIX}*"):
                stale.unlink(missing_ok=True)
            try:
                record = build_snapshot(store, manifest)
            except duckdb.IOException as err:
                # A generation was collected under the build: a newer manifest names its
                # successor. Start again from that one.
                log.info("embedded snapshot: rebuilding (attempt %d): %s", attempt + 1, err)
                continue
            except duckdb.Error as err:
                raise StoreWriteFailed(f"building the embedded snapshot failed: {err}") from err
            _name_in_manifest(store, record)
            log.info(
                "embedded snapshot %s: manifest version %d, %d biobanks, built in %.1f s",
                record["file"],
                record["version"],
                len(record["biobanks"]),
                record["build_s"],
            )
            return record
    raise StoreWriteFailed(f"the embedded snapshot could not be built in {BUILD_ATTEMPTS} tries")


def _name_in_manifest(store: EmbeddedStore, record: dict[str, Any]) -> None:
    """Name the new snapshot in the manifest (atomic rename) and delete the ones done with."""
    folder = snapshot_folder(store)
    with store.manifest_lock():
        manifest = store.read_manifest()
        current = manifest.get("snapshot")
        if current is not None and int(current["version"]) >= int(record["version"]):
            (folder / record["file"]).unlink(missing_ok=True)  # cannot happen under the lock
            return
        record["previous"] = current["file"] if current else None
        manifest["snapshot"] = record
        store.write_manifest(manifest)
    collect_snapshots(store, manifest)


def collect_snapshots(store: EmbeddedStore, manifest: dict[str, Any]) -> None:
    """Delete the snapshot files the manifest names neither as serving nor as `previous`.

    The previous one stays for a server that read the previous manifest and is opening it;
    a server that has it open keeps reading a deleted file through its open handle.
    """
    record = manifest.get("snapshot") or {}
    keep = {record.get("file"), record.get("previous")}
    for path in snapshot_folder(store).glob("snapshot-*.duckdb*"):
        # A reader's spill folder (`<file>.tmp`) is DuckDB's to remove.
        if path.name.removesuffix(".wal") not in keep and not path.is_dir():
            path.unlink(missing_ok=True)


# --- reading (every server process) ----------------------------------------------------------


def reader_config(threads: int | None = None) -> dict[str, Any]:
    """How every server process opens a snapshot. DuckDB shares one database per file within
    a process and refuses a second connection to it with other settings, so anything else
    in a server process that opens the file (the benchmark's raw questions) uses these too."""
    # The allocator settings return freed query memory to the OS between searches.
    config: dict[str, Any] = {
        "memory_limit": READER_MEMORY_LIMIT,
        "allocator_flush_threshold": "32MB",
        "allocator_background_threads": True,
    }
    if threads:
        config["threads"] = int(threads)
    return config


def has_table(db: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the snapshot `db` holds a table of that name (layouts differ by build)."""
    found = db.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name])
    row = found.fetchone()
    return bool(row and row[0])


class Snapshot:
    """One opened snapshot: a read-only connection and what it was built from.

    `users` counts searches reading it; a retired snapshot is closed by its last user.
    """

    def __init__(self, db: duckdb.DuckDBPyConnection, record: dict[str, Any], name: str) -> None:
        self.db = db
        self.record = record
        self.name = name
        self.users = 0
        self.retired = False
        # Whether counting groups donors by the stored key column (unique per biobank).
        self.donor_keys = bool(record.get(DONOR_KEYS, False))
        # A snapshot built before the per-donor tables existed is searched without them.
        self.donor_tables = has_table(db, donor_table(TABLE))
        self.consent_table = has_table(db, consent_table(TABLE))

    @classmethod
    def open(cls, store: EmbeddedStore, record: dict[str, Any], threads: int | None) -> Snapshot:
        """Open the file `record` names, read-only: no copy of its rows in this process."""
        path = snapshot_folder(store) / str(record["file"])
        # The file never changes once named; a missing one raises (a newer manifest exists).
        db = duckdb.connect(str(path), read_only=True, config=reader_config(threads))
        return cls(db, record, str(record["file"]))

    @classmethod
    def empty(cls) -> Snapshot:
        """What a store with nothing published searches: an empty table in memory."""
        db = duckdb.connect(":memory:")
        unique_keys = create_samples(db, TABLE, ())
        record: dict[str, Any] = {
            "file": None,
            "version": 0,
            "biobanks": {},
            DONOR_KEYS: unique_keys,
        }
        return cls(db, record, ":empty:")

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.db.close()
