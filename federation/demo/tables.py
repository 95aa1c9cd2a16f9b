"""Writing one demo export's tables: CSV or TSV files, an XLSX workbook, or a recorded source.

Rows arrive in canonical field order (`FIELDS`); each flavour picks and names its columns.
"""

from __future__ import annotations

import abc
import csv
import datetime as dt
import re
import zipfile
from collections.abc import Iterable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from federation.demo.profiles import Flavour

XLSX_FILE = "export.xlsx"
# Every file name an export may leave in its folder, removed before rewriting it so that a
# biobank whose format changed between runs does not keep a stale copy in the old format.
EXPORT_FILES = (
    XLSX_FILE,
    *(
        f"{stream}.{ext}"
        for stream in ("collections", "donors", "samples")
        for ext in ("csv", "tsv")
    ),
)

COLLECTION_FIELDS = ("id", "name", "types", "default_consent", "description")
DONOR_FIELDS = ("id", "sex", "birth_year", "diagnoses", "orpha", "consent", "consent_withdrawn")
SAMPLE_FIELDS = (
    "id",
    "collection_id",
    "donor_id",
    "material_type",
    "collection_date",
    "age_at_collection",
    "storage_temperature",
    "diagnoses",
    "availability",
    "data_categories",
    "last_updated",
)
FIELDS = {"collections": COLLECTION_FIELDS, "donors": DONOR_FIELDS, "samples": SAMPLE_FIELDS}

# A fixed instant for XLSX metadata and zip entries, which openpyxl stamps with the clock.
_XLSX_TIME = (2026, 9, 30, 0, 0, 0)
_CORE_TIMESTAMPS = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


# --- writing tables -----------------------------------------------------------------------


class Tables(abc.ABC):
    """The three tables of one export, in one flavour; rows come in canonical field order."""

    def __init__(self, flavour: Flavour) -> None:
        self.flavour = flavour
        self.order = {
            stream: itemgetter(*(FIELDS[stream].index(f) for f in columns))
            for stream, columns in flavour.columns.items()
        }
        self.headers = {
            stream: list(columns.values()) for stream, columns in flavour.columns.items()
        }

    @abc.abstractmethod
    def add(self, stream: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Tables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DelimitedTables(Tables):
    """CSV or TSV files, written as rows arrive."""

    def __init__(self, folder: Path, flavour: Flavour) -> None:
        super().__init__(flavour)
        delimiter = "\t" if flavour.format == "tsv" else ","
        self.handles: list[IO[str]] = []
        self.writers: dict[str, Any] = {}
        for stream, header in self.headers.items():
            handle = (folder / f"{stream}.{flavour.format}").open(
                "w", encoding="utf-8", newline="", buffering=1 << 20
            )
            self.handles.append(handle)
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
            writer.writerow(header)
            self.writers[stream] = writer

    def add(self, stream: str, rows: Iterable[Sequence[Any]]) -> None:
        self.writers[stream].writerows(map(self.order[stream], rows))

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


class WorkbookTables(Tables):
    """One XLSX workbook with a sheet per stream, written at close (XLSX is for small exports)."""

    def __init__(self, folder: Path, flavour: Flavour) -> None:
        super().__init__(flavour)
        self.path = folder / XLSX_FILE
        self.rows: dict[str, list[Sequence[Any]]] = {stream: [] for stream in self.headers}

    def add(self, stream: str, rows: Iterable[Sequence[Any]]) -> None:
        self.rows[stream].extend(map(self.order[stream], rows))

    def close(self) -> None:
        from openpyxl import Workbook  # imported here: only small exports pay for it

        book = Workbook(write_only=True)
        book.properties.creator = "biofed demo-data"
        book.properties.created = dt.datetime(*_XLSX_TIME)
        for stream, header in self.headers.items():
            sheet = book.create_sheet(stream)
            sheet.append(header)
            for row in self.rows[stream]:
                sheet.append(list(row))
        book.save(self.path)
        _freeze_zip(self.path)


def _freeze_zip(path: Path) -> None:
    """Rewrite a saved workbook with fixed timestamps, so the same seed gives the same bytes."""
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in entries:
            if name == "docProps/core.xml":
                data = _CORE_TIMESTAMPS.sub(rb"\g<1>2026-09-30T00:00:00Z\g<2>", data)
            info = zipfile.ZipInfo(name, date_time=_XLSX_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)
