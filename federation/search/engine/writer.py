"""The generation writer: spool, bulk load into a new index, publish by an alias swap."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from federation.search.backend import (
    GenerationInfo,
    GenerationWriter,
)
from federation.search.documents import arrow_schema
from federation.search.engine.admin import IndexAdmin
from federation.search.engine.bulk import (
    BULK_IN_FLIGHT,
    SAMPLE_HEAD,
    BulkPayloads,
    dumps,
    raise_for_bulk,
    spool_json_sql,
)
from federation.search.engine.client import (
    EngineError,
    EngineUnavailable,
)
from federation.search.engine.layout import (
    DONOR_KIND,
    NESTED,
    SAMPLE_KIND,
    donor_doc_id,
    new_generation,
)
from federation.search.fingerprint import DONOR_KEY_FIELD, donor_key

log = logging.getLogger(__name__)

# Shard count follows data size: one primary shard per this many samples of a generation.
# Shard count follows data size: one primary shard per this many samples of a generation.
SAMPLES_PER_SHARD = 5_000_000
MAX_SHARDS = 16
SPOOL_BATCH_ROWS = 20_000


# Spool folders are named `<prefix><pid>-<random>` in the temporary folder, so a later sync
# can tell the leftovers of a killed one (its pid is gone) from a running one's.
SPOOL_PREFIX = "biofed-engine-spool-"


def remove_dead_spools(folder: Path | None = None) -> list[Path]:
    """Delete the spool folders of syncs whose process is gone; the ones deleted."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{SPOOL_PREFIX}*"):
        pid = path.name[len(SPOOL_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        log.info("removed %s, left by a sync that was killed", path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EngineGenerationWriter(GenerationWriter):
    """Builds a biobank's next generation as a new index; publishes it by an alias swap.

    Rows are spooled to a local Parquet file while the sync pulls (a donor's samples may
    arrive in any order and batch); `publish` sorts them by donor, bulk loads donor and
    sample documents into a new index with replicas 0 and refresh off, restores the
    settings, refreshes, checks the count, swaps the aliases in one call and deletes the
    old index. On any failure the new index is deleted and the old one serves on.
    """

    def __init__(self, admin: IndexAdmin, biobank_id: str) -> None:
        super().__init__(biobank_id)
        self.admin = admin
        self.generation = new_generation()
        self.index = admin.names.index(biobank_id, self.generation)
        self.count = 0
        self._created = False
        self._swapped = False
        self._keyed = True
        self._lease = admin.acquire_lock(biobank_id)
        try:
            remove_dead_spools()
            self._spool_dir = Path(tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-"))
            self._spool_path = self._spool_dir / "rows.parquet"
            # Imported here: a server process, which never writes, needs no pyarrow.
            import pyarrow.parquet as pq

            self._spool: Any = pq.ParquetWriter(self._spool_path, arrow_schema())
        except BaseException:
            admin.release_lock(biobank_id)
            raise
        self._arrow_schema = arrow_schema()

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        assert self._spool is not None, "writer already closed"
        import pyarrow as pa

        self._spool.write_table(pa.Table.from_pylist(list(rows), schema=self._arrow_schema))
        self.count += len(rows)

    def _close_spool(self) -> None:
        if self._spool is not None:
            with contextlib.suppress(Exception):
                self._spool.close()
            self._spool = None

    def _publish(self) -> GenerationInfo:
        self._close_spool()
        self._lease.check()
        admin = self.admin
        names = admin.names
        admin.drop_orphans(self.biobank_id)
        schema = admin.index_schema()
        # Donor keys go where the mapping the index is made with has a field for them.
        self._keyed = DONOR_KEY_FIELD in schema["mappings"]["properties"]
        shards = min(MAX_SHARDS, max(1, math.ceil(self.count / SAMPLES_PER_SHARD)))
        settings = _merge(schema["settings"], schema["loading_settings"])
        settings["index"]["number_of_shards"] = shards
        body = {
            "settings": settings,
            "mappings": {
                **schema["mappings"],
                "_meta": {"biobank_id": self.biobank_id, "generation": self.generation},
            },
        }
        admin.retrying("create index", lambda: admin.client.create_index(self.index, body))
        self._created = True
        started = time.monotonic()
        self._load()
        loaded_s = time.monotonic() - started
        # Every setting the load changed goes back to its serving value.
        serving = _same_paths(schema["settings"], schema["loading_settings"])
        serving["index"]["number_of_replicas"] = admin.config.engine.replicas
        admin.retrying("restore settings", lambda: admin.client.put_settings(self.index, serving))
        admin.retrying("refresh", lambda: admin.client.refresh(self.index))
        # The load ran with an asynchronous translog: commit it before anyone relies on it.
        admin.retrying("flush", lambda: admin.client.flush(self.index))
        body_count = {"query": {"term": {"kind": SAMPLE_KIND}}}
        indexed = admin.retrying("count", lambda: admin.client.count(self.index, body_count))
        if indexed != self.count:
            raise EngineError(f"{self.index} holds {indexed} samples, {self.count} were written")
        info = GenerationInfo(
            self.biobank_id,
            self.generation,
            self.count,
            dt.datetime.now(dt.UTC).isoformat(),
            self.metadata,
        )
        meta = _meta(info)
        admin.retrying("publish metadata", lambda: admin.client.put_meta(self.index, meta))
        self._lease.check()
        old = admin.live_indices(self.biobank_id)
        actions: list[dict[str, Any]] = [
            {"add": {"index": self.index, "alias": names.read_alias}},
            {"add": {"index": self.index, "alias": names.biobank_alias(self.biobank_id)}},
        ]
        for index in old:
            actions.append({"remove": {"index": index, "alias": names.read_alias}})
            actions.append(
                {"remove": {"index": index, "alias": names.biobank_alias(self.biobank_id)}}
            )
        admin.swap_aliases(self.biobank_id, self.index, actions)
        self._swapped = True
        log.info(
            "published %s: %d samples in %.1fs (%.0f samples/s)",
            self.index,
            self.count,
            loaded_s,
            self.count / loaded_s if loaded_s else 0.0,
        )
        try:
            admin.client.delete_indices(old)
        except (EngineUnavailable, EngineError) as err:
            log.warning("old generation %s not deleted (%s); the next sync removes it", old, err)
        self._finish()
        return info

    def _load(self) -> None:
        """Bulk load the spooled rows, grouped by donor, into the new index.

        DuckDB sorts the rows by donor and writes each row's JSON (Python's per-row dict and
        json.dumps were most of the sync's CPU at 10M samples; see docs/performance.md).
        Payloads are sent from a small thread pool while the next ones are built, so the
        engine indexes while this process works; an error in any payload stops the load.
        """
        import duckdb

        payloads = BulkPayloads()
        in_flight: deque[Future[None]] = deque()
        db = duckdb.connect(":memory:")
        with ThreadPoolExecutor(BULK_IN_FLIGHT, thread_name_prefix="bulk") as senders:

            def send(payload: bytes | None) -> None:
                if payload is None:
                    return
                while len(in_flight) >= BULK_IN_FLIGHT:
                    in_flight.popleft().result()  # raises the first failure
                in_flight.append(senders.submit(self._send, payload))

            try:
                reader = db.sql(spool_json_sql(self._spool_path)).to_arrow_reader(SPOOL_BATCH_ROWS)
                donor: str | None = None
                ordinal = 0
                samples: list[tuple[bytes, bytes]] = []
                for batch in reader:
                    columns = (batch.column(i).to_pylist() for i in range(4))
                    for donor_id, doc_id, doc, ord_ in zip(*columns, strict=True):
                        if donor_id != donor and samples:
                            self._add_donor(payloads, (str(donor), ordinal), samples, send)
                            samples = []
                        donor, ordinal = donor_id, ord_
                        samples.append((doc_id.encode(), doc.encode()))
                if samples:
                    self._add_donor(payloads, (str(donor), ordinal), samples, send)
                send(payloads.take())
                while in_flight:
                    in_flight.popleft().result()
            finally:
                for pending in in_flight:
                    pending.cancel()
                db.close()

    def _add_donor(
        self,
        payloads: BulkPayloads,
        donor: tuple[str, int],
        samples: list[tuple[bytes, bytes]],
        send: Callable[[bytes | None], None],
    ) -> None:
        """Add a donor document (`donor`: its id and ordinal) and its samples' documents."""
        donor_id, ordinal = donor
        # Each row's JSON is used twice: nested in the donor and on its own.
        fields: dict[str, Any] = {
            "kind": DONOR_KIND,
            "biobank_id": self.biobank_id,
            "donor_id": donor_id,
        }
        if self._keyed:
            # At the root, where `reverse_nested` sums it into the donors' fingerprint.
            fields[DONOR_KEY_FIELD] = donor_key(ordinal)
        head = dumps(fields)
        nested = b",".join(body for _, body in samples)
        document = head[:-1] + b',"' + NESTED.encode() + b'":[' + nested + b"]}"
        action = {"index": {"_index": self.index, "_id": donor_doc_id(donor_id)}}
        send(payloads.add_encoded(action, document))
        # Index names are our own ASCII; the ids arrive JSON-quoted from the spool query.
        opening = b'{"index":{"_index":"' + self.index.encode() + b'","_id":'
        for doc_id, body in samples:
            send(payloads.add_line(opening + doc_id + b"}}", SAMPLE_HEAD + body[1:]))

    def _send(self, payload: bytes) -> None:
        admin = self.admin

        def attempt() -> None:
            raise_for_bulk(admin.client.bulk(payload), conflicts_ok=False)

        admin.retrying("bulk load", attempt)

    def abort(self) -> None:
        self._close_spool()
        if self._created and not self._swapped:
            try:
                if self.index in self.admin.live_indices(self.biobank_id):
                    # The swap went through though its answer was lost: it is published.
                    log.warning("%s was published although the sync failed after it", self.index)
                else:
                    self.admin.client.delete_indices([self.index])
            except (EngineUnavailable, EngineError) as err:
                log.warning(
                    "half-built %s not deleted (%s); the next sync of %s removes it",
                    self.index,
                    err,
                    self.biobank_id,
                )
        self._finish()

    def _finish(self) -> None:
        self._close_spool()
        shutil.rmtree(self._spool_dir, ignore_errors=True)
        if self._lease is not None:
            self.admin.release_lock(self.biobank_id)
            self._lease = None  # type: ignore[assignment]


def _meta(info: GenerationInfo) -> dict[str, Any]:
    return {
        "biobank_id": info.biobank_id,
        "generation": info.generation,
        "documents": info.documents,
        "published_at": info.published_at,
        "metadata": info.metadata,
    }


def _same_paths(values: Mapping[str, Any], shape: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` at the paths `shape` has (None where `values` has none)."""
    out: dict[str, Any] = {}
    for key, value in shape.items():
        if isinstance(value, Mapping):
            inner = values.get(key)
            out[key] = _same_paths(inner if isinstance(inner, Mapping) else {}, value)
        else:
            out[key] = values.get(key)
    return out


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    assert isinstance(out, dict)
    return out
