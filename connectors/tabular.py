"""MIABIS-style tables (CSV, TSV or an XLSX workbook) with a configurable column mapping."""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from marshmallow import fields, validate

from connectors.mapping import CodeMapper, CodeMappingOptions, map_fields
from federation.sync.connector import (
    Checkpoint,
    Connector,
    IncompleteRead,
    RecordRejected,
    SourceError,
    SourceRecord,
    Stream,
)

# Canonical fields that hold several values in one cell.
LIST_FIELDS = frozenset({"types", "diagnoses", "orpha", "data_categories"})
# Payload key naming the columns a short row has no cell for.
SHORT_ROW = "__missing__"
DEFAULT_FILES = {"collections": "collections", "donors": "donors", "samples": "samples"}


class TabularConfig(CodeMappingOptions):
    path = fields.String(
        required=True, metadata={"description": "folder (or .xlsx file) holding the tables"}
    )
    format = fields.String(load_default="csv", validate=validate.OneOf(["csv", "tsv", "xlsx"]))
    files = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    list_separator = fields.String(load_default=";")
    encoding = fields.String(load_default="utf-8-sig")
    columns = fields.Dict(
        keys=fields.String(validate=validate.OneOf(list(DEFAULT_FILES))),
        values=fields.Dict(keys=fields.String(), values=fields.String()),
        load_default=dict,
        metadata={"description": "per stream, canonical field -> source column header"},
    )
    values = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.String()),
        load_default=dict,
        metadata={"description": "per canonical field, source value -> canonical value"},
    )


class TabularConnector(Connector):
    """Reads `collections`, `donors` and `samples` tables exported from a biobank's LIMS."""

    name = "tabular"
    description = "MIABIS-style CSV/TSV/XLSX tables with a column mapping"
    config_schema = TabularConfig
    streams = (
        Stream("collections", "collection"),
        Stream("donors", "donor"),
        Stream("samples", "sample", replication_key="last_updated"),
    )

    def _location(self) -> Path:
        path = Path(self.config["path"])
        return path if path.is_absolute() else Path(self.base_dir) / path

    def _file_name(self, stream: str) -> str:
        name = self.config["files"].get(stream, DEFAULT_FILES[stream])
        fmt = self.config["format"]
        if fmt != "xlsx" and "." not in name:
            name = f"{name}.{fmt}"
        return str(name)

    def pull(
        self, stream: Stream, state: Mapping[str, Any] | None
    ) -> Iterator[SourceRecord | Checkpoint]:
        """Yield every row of the stream's table (tables have no change feed: always full)."""
        key_column = self.config["columns"].get(stream.name, {}).get("id", "id")
        rows = (
            self._xlsx_rows(stream) if self.config["format"] == "xlsx" else self._text_rows(stream)
        )
        for position, row in rows:
            source_id = (row.get(key_column) or "").strip() or None
            yield SourceRecord(stream.name, source_id, row, position)
        yield Checkpoint(stream.name, {})

    def _text_rows(self, stream: Stream) -> Iterator[tuple[str, dict[str, str]]]:
        name = self._file_name(stream.name)
        path = self._location() / name
        if not path.exists():
            raise SourceError(f"{path} does not exist", retriable=False)
        delimiter = "\t" if self.config["format"] == "tsv" else ","
        try:
            with path.open(encoding=self.config["encoding"], newline="") as handle:
                # strict: a quote left open would otherwise swallow every row after it into
                # one cell, and those rows would be lost without a word.
                reader = csv.DictReader(handle, delimiter=delimiter, strict=True)
                for row in reader:
                    # A short row leaves None values and a long one a None key: both are the
                    # source's problem, reported by the mapping rather than crashing here.
                    clean = {k: v for k, v in row.items() if k is not None and v is not None}
                    missing = [k for k, v in row.items() if k is not None and v is None]
                    if missing:
                        # A line cut short (a truncated export's last line) must not be
                        # indexed with its missing cells empty.
                        clean[SHORT_ROW] = ", ".join(missing)
                    if None in row:
                        clean["__extra__"] = delimiter.join(row[None])
                    yield f"{name} line {reader.line_num}", clean
        except UnicodeDecodeError as err:
            raise SourceError(
                f"{path} is not {self.config['encoding']}: {err}", retriable=False
            ) from None
        except csv.Error as err:
            raise IncompleteRead(
                f"{path} line {reader.line_num}: {err} (a quote left open there would hide "
                "the rows after it): fix the export"
            ) from None

    def _xlsx_rows(self, stream: Stream) -> Iterator[tuple[str, dict[str, str]]]:
        import openpyxl  # imported here: only XLSX sources pay its import time

        location = self._location()
        path = location if location.suffix == ".xlsx" else location / "export.xlsx"
        sheet_name = self.config["files"].get(stream.name, DEFAULT_FILES[stream.name])
        if not path.exists():
            raise SourceError(f"{path} does not exist", retriable=False)
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            if sheet_name not in book.sheetnames:
                raise SourceError(f"{path} has no sheet {sheet_name!r}", retriable=False)
            rows = book[sheet_name].iter_rows(values_only=True)
            header = [str(h or "").strip() for h in next(rows, ())]
            for number, values in enumerate(rows, start=2):
                if all(v is None or v == "" for v in values):
                    continue
                cells = ["" if v is None else _cell_text(v) for v in values]
                yield (
                    f"{path.name}:{sheet_name} row {number}",
                    dict(zip(header, cells, strict=False)),
                )
        finally:
            book.close()

    def map(self, record: SourceRecord) -> dict[str, Any]:
        """Rename columns to canonical fields, recode values, split multi-valued cells."""
        columns: dict[str, str] = self.config["columns"].get(record.stream, {})
        recode: dict[str, dict[str, str]] = self.config["values"]
        separator: str = self.config["list_separator"]
        if "__extra__" in record.payload:
            raise RecordRejected("row", record.payload["__extra__"], "more cells than columns")
        if SHORT_ROW in record.payload:
            missing = str(record.payload[SHORT_ROW])
            raise RecordRejected(
                "row",
                missing,
                f"fewer cells than columns: no cell for {missing} (a truncated line?)",
            )
        mapped: dict[str, Any] = {"biobank_id": self.biobank_id}
        for field_name, column in (columns or _identity(record.payload)).items():
            raw = record.payload.get(column)
            if raw is None:
                continue
            text = str(raw).strip()
            if field_name in LIST_FIELDS:
                items = [p.strip() for p in text.split(separator) if p.strip()]
                mapped[field_name] = [recode.get(field_name, {}).get(i, i) for i in items]
            elif text:
                mapped[field_name] = recode.get(field_name, {}).get(text, text)
        return map_fields(self.mapper, mapped)

    @functools.cached_property
    def mapper(self) -> CodeMapper:
        """The code mapping options every connector shares (connectors.mapping)."""
        return CodeMapper(self.config)


def _identity(payload: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(k) for k in payload}


def _cell_text(value: Any) -> str:
    """Spreadsheet cells come typed; canonical validation expects text like a CSV's."""
    if hasattr(value, "date") and hasattr(value, "hour"):
        return str(
            value.date().isoformat() if value.hour == value.minute == 0 else value.isoformat()
        )
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
