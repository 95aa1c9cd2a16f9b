"""The on-disk layout: Parquet generations per biobank behind an atomically replaced manifest."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federation import faults
from federation.errors import FederationError
from federation.search.backend import GenerationInfo, GenerationWriter
from federation.search.documents import arrow_schema

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_TEMP = f".{MANIFEST}."


class StoreWriteFailed(FederationError, OSError):
    """A file of the embedded store could not be written (a full disk, most often)."""

    code = "STORE_WRITE_FAILED"


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Make an OSError without a file name (Arrow's) name the file being written."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or isinstance(err, FederationError):
            raise
        raise StoreWriteFailed(f"writing {path} failed: {err}") from err


class EmbeddedStore:
    """The files on disk: generations per biobank and the manifest naming the live ones."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST

    def ensure(self) -> None:
        # Private: the generations hold every sample row (0700 folders, 0600 files).
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("generations", "tmp"):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

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
        """Replace the manifest atomically (the caller holds `manifest_lock`)."""
        # Temp files of a writer killed mid-way: under the lock no other writer has one.
        for stale in self.root.glob(f"{MANIFEST_TEMP}*"):
            stale.unlink(missing_ok=True)
        tmp = self.root / f"{MANIFEST_TEMP}{uuid.uuid4().hex}"
        try:
            with tmp.open("w") as handle:
                faults.writing("manifest", tmp)
                json.dump(manifest, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fchmod(handle.fileno(), 0o600)
                os.fsync(handle.fileno())
            os.replace(tmp, self.manifest_path)  # atomic: readers see the old or the new one
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not keep a half-written temp
            raise

    def generation_path(self, biobank_id: str, generation: str) -> Path:
        return self.root / "generations" / biobank_id / f"{generation}.parquet"

    def live_files(self, manifest: dict[str, Any]) -> list[Path]:
        return [
            self.generation_path(bb, entry["generation"])
            for bb, entry in sorted(manifest["biobanks"].items())
        ]

    def collect_garbage(self, biobank_id: str, manifest: dict[str, Any]) -> None:
        """Delete the biobank's generation files the manifest does not name.

        Kept: the serving generation and the one it replaced (`previous`), which a server
        that read the previous manifest may still be loading. Anything else was never
        served or is done with (a file whose manifest write failed, an old generation);
        syncs in flight write under `tmp/`, not here.
        """
        folder = self.root / "generations" / biobank_id
        if not folder.exists():
            return
        entry = manifest["biobanks"].get(biobank_id, {})
        keep = {f"{entry[k]}.parquet" for k in ("generation", "previous") if entry.get(k)}
        for path in folder.glob("*.parquet"):
            if path.name not in keep:
                path.unlink(missing_ok=True)


class ParquetGenerationWriter(GenerationWriter):
    def __init__(
        self,
        store: EmbeddedStore,
        biobank_id: str,
        *,
        publishing: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    ) -> None:
        super().__init__(biobank_id)
        self.store = store
        # Entered around naming the generation in the manifest: the backend makes it
        # searchable (builds its snapshot) before leaving it.
        self.publishing = publishing or contextlib.nullcontext
        store.ensure()
        # Leftovers of a killed sync of this biobank (one sync per biobank runs at a time).
        for stale in (store.root / "tmp").glob(f"{biobank_id}--*.parquet"):
            stale.unlink(missing_ok=True)
        self.generation = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.tmp_path = store.root / "tmp" / f"{biobank_id}--{self.generation}.parquet"
        # Imported here, not at the top: server processes read through DuckDB only and
        # need no pyarrow (docs/performance.md, "Serving round 2").
        import pyarrow.parquet as pq

        with naming(self.tmp_path):
            self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
                self.tmp_path, arrow_schema(), compression="zstd"
            )
        self.count = 0

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        assert self._writer is not None, "writer already closed"
        import pyarrow as pa

        with naming(self.tmp_path):
            self._writer.write_table(pa.Table.from_pylist(list(rows), schema=arrow_schema()))
        self.count += len(rows)

    def add_table(self, table: pa.Table) -> None:
        """Append rows already in the index's Arrow schema (a previous generation's)."""
        assert self._writer is not None, "writer already closed"
        schema = arrow_schema()
        self._writer.write_table(table.select(schema.names).cast(schema))
        self.count += table.num_rows

    def _publish(self) -> GenerationInfo:
        assert self._writer is not None, "writer already closed"
        with naming(self.tmp_path):
            self._writer.close()
        self._writer = None
        final = self.store.generation_path(self.biobank_id, self.generation)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tmp_path.chmod(0o600)
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
        with self.publishing():
            try:
                with self.store.manifest_lock():
                    manifest = self.store.read_manifest()
                    manifest["version"] = int(manifest.get("version", 0)) + 1
                    replaced = manifest["biobanks"].get(self.biobank_id, {}).get("generation")
                    manifest["biobanks"][self.biobank_id] = {
                        "generation": info.generation,
                        "previous": replaced,
                        "documents": info.documents,
                        "published_at": info.published_at,
                        "metadata": info.metadata,
                    }
                    self.store.write_manifest(manifest)
            except BaseException:
                # Not published (a full disk, say): the file must not stay and fill the disk.
                final.unlink(missing_ok=True)
                raise
            self.store.collect_garbage(self.biobank_id, manifest)
        return info

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        self.tmp_path.unlink(missing_ok=True)
