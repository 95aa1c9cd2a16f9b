"""The BBMRI-ERIC Directory (MOLGENIS EMX2): a biobank's collections with MIABIS attributes.

The Directory is a catalogue: it describes biobanks and their collections (MIABIS
collection types, data use, materials, sizes) and holds no donors or samples. So a sync
of a biobank through this connector yields one stream, `collections`, and publishes a
generation with the biobank's collections and no samples: the biobank appears in the
network's catalogue (`biobanks`, `collections`, their types and data use) and in no
counts. That is the right home for a biobank that is listed in the Directory but has no
sample-level source the network can read; a biobank that has one uses that connector.

What is read, from the Directory's EMX2 API (`api: graphql`, paged with limit/offset) or
its CSV export (`api: csv`: `<base_url>/api/csv/Collections`, or `Collections.csv` in a
folder holding an EMX2 export):

- only collections whose `biobank` is the configured Directory biobank id;
- `type` -> collection types; `data_use` (DUO ids such as `DUO_0000042`) -> the default
  consent, when the terms make one (exactly one permission; terms needing a parameter,
  such as MOR's date, cannot be given one from the Directory). A collection whose data use
  does not make a consent is rejected naming `data_use`, unless `data_use: ignore`;
- `withdrawn: true` is a tombstone: the collection leaves the network.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import fields, validate

from connectors.http import HttpConnector, HttpOptions
from connectors.mapping import CodeMappingOptions
from federation.model import duo
from federation.sync.connector import (
    Checkpoint,
    PulledItem,
    RecordRejected,
    SourceError,
    SourceRecord,
    Stream,
    Tombstone,
    check_total,
)

DEFAULT_PAGE_SIZE = 200
GRAPHQL_QUERY = """
query Collections($limit: Int, $offset: Int) {
  Collections(limit: $limit, offset: $offset) {
    id name description withdrawn
    biobank { id }
    type { name }
    data_use { name }
  }
  Collections_agg { count }
}"""
# Columns a Collections table must have for this connector to find a biobank's collections.
REQUIRED_COLUMNS = ("id", "name", "biobank")


class DirectoryConfig(HttpOptions, CodeMappingOptions):
    biobank = fields.String(
        required=True,
        metadata={"description": "the biobank's Directory id, e.g. bbmri-eric:ID:DE_12345"},
    )
    api = fields.String(load_default="graphql", validate=validate.OneOf(["graphql", "csv"]))
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, 5000))
    data_use = fields.String(load_default="consent", validate=validate.OneOf(["consent", "ignore"]))


class DirectoryConnector(HttpConnector):
    """Collections of one biobank from the BBMRI-ERIC Directory (EMX2 GraphQL or CSV)."""

    name = "directory"
    description = "BBMRI-ERIC Directory (EMX2): a biobank's collections, no samples"
    config_schema = DirectoryConfig
    streams = (Stream("collections", "collection"),)

    def pull(self, stream: Stream, state: Mapping[str, Any] | None) -> Iterator[PulledItem]:
        """The biobank's collections; withdrawn ones as tombstones."""
        rows = self._csv_rows() if self.config["api"] == "csv" else self._graphql_rows(state)
        wanted = self.config["biobank"]
        matched = 0
        others: set[str] = set()
        for position, row in rows:
            if isinstance(row, Checkpoint):
                yield row
                continue
            biobank = _ref(row.get("biobank"))
            if biobank != wanted:
                others.add(biobank)
                continue
            matched += 1
            ident = str(row.get("id") or "") or None
            if ident and _true(row.get("withdrawn")):
                yield Tombstone(stream.name, ident, position)
                continue
            yield SourceRecord(stream.name, ident, row, position)
        if not matched and others and not (state or {}).get("offset"):
            raise SourceError(
                f"biobank: the Directory has no collection of {wanted!r} among those of "
                f"{len(others)} biobanks{_closest(wanted, others)}: check the biobank id",
                retriable=False,
            )
        yield Checkpoint(stream.name, {})

    def _csv_rows(self) -> Iterator[tuple[str, Any]]:
        target = "Collections.csv" if self.source.recorded else "api/csv/Collections"
        text = self.source.get(target, text=True).body
        reader = csv.DictReader(io.StringIO(str(text)), strict=True)
        headers = list(reader.fieldnames or ())
        missing = [c for c in REQUIRED_COLUMNS if c not in headers]
        if missing:
            raise SourceError(
                f"{target}: not a Directory Collections table this connector reads: no "
                f"{', '.join(missing)} column (headers: {', '.join(headers[:12]) or 'none'})",
                retriable=False,
            )
        for row in reader:
            yield f"Collections.csv line {reader.line_num}", row

    def _graphql_rows(self, state: Mapping[str, Any] | None) -> Iterator[tuple[str, Any]]:
        offset = int((state or {}).get("offset", 0))
        limit = int(self.config["page_size"])
        while True:
            page = self.source.post(
                "graphql",
                {"query": GRAPHQL_QUERY, "variables": {"limit": limit, "offset": offset}},
            )
            body = page.body if isinstance(page.body, Mapping) else {}
            if body.get("errors"):
                raise SourceError(f"{page.url}: {body['errors'][0]}", retriable=False)
            rows = (body.get("data") or {}).get("Collections")
            if rows is None:
                rows = []
            if not isinstance(rows, list):
                raise SourceError(f"{page.url}: data.Collections is not a list", retriable=True)
            for n, row in enumerate(rows):
                yield f"Collections offset {offset + n}", row
            offset += len(rows)
            if len(rows) < limit:
                count = ((body.get("data") or {}).get("Collections_agg") or {}).get("count")
                if not isinstance(count, int):
                    self.note("the Directory did not answer Collections_agg.count: not checked")
                check_total(
                    f"{page.url} Collections", offset, count if isinstance(count, int) else None
                )
                return
            yield "", Checkpoint("collections", {"offset": offset})

    def map(self, record: SourceRecord) -> dict[str, Any]:
        """Directory collection attributes to a canonical collection."""
        row = record.payload
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": row.get("id"),
            "name": row.get("name"),
            "description": row.get("description") or None,
            "types": _names(row.get("type")),
        }
        uses = _names(row.get("data_use"))
        if uses and self.config["data_use"] == "consent":
            mapped["default_consent"] = _consent(uses)
        return mapped


def _consent(uses: list[str]) -> str:
    """DUO ids as consent shorthand; rejected when they do not make one consent."""
    by_id = {d.id: code for code, d in duo.definitions().items()}
    codes = []
    for use in uses:
        code = by_id.get(use.replace("_", ":"))
        if code is None:
            raise RecordRejected("data_use", use, "not a DUO term this network reads")
        codes.append(code)
    text = ";".join(codes)
    try:
        duo.parse(text)
    except duo.InvalidConsent as err:
        raise RecordRejected(
            "data_use", ",".join(uses), f"does not make a consent: {err} (or set data_use: ignore)"
        ) from None
    return text


def _closest(wanted: str, known: set[str]) -> str:
    """`; did you mean X?` for the known id closest to a mistyped one, else nothing."""
    close = difflib.get_close_matches(wanted, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _names(value: Any) -> list[str]:
    """An EMX2 ontology array: GraphQL [{name}] objects or CSV comma-separated names."""
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [str(v.get("name") if isinstance(v, Mapping) else v) for v in value if v]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _ref(value: Any) -> str:
    return str(value.get("id") if isinstance(value, Mapping) else value or "")


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"
