"""The BBMRI-ERIC Directory (MOLGENIS EMX2): a biobank's collections, as collection-level facts.

The Directory is a catalogue: it describes biobanks and their collections and holds no
donors or samples. A sync of a biobank through this connector yields one stream,
`collections`, and publishes a generation with the biobank's collections and no sample
rows. Each collection carries what it declares of itself (MIABIS-2.0 attributes), and a
search matches those facts and shows the collection's sizes as *declared* counts beside the
sample-level biobanks (search/declared.py; docs/connectors.md, docs/privacy.md). Use it
for a biobank listed in the Directory that has no sample-level source the network can read.

What is read, from the Directory's EMX2 API (`api: graphql`, paged with limit/offset) or
its CSV export (`api: csv`: `<base_url>/api/csv/Collections`, or `Collections.csv` in a
folder holding an EMX2 export), only for collections whose `biobank` is the configured id:

- `id`, `name`, `description`; `type` -> collection types; `data_categories`;
- `materials` -> MIABIS material types, `diagnosis_available` -> ICD-10 diagnoses
  (`urn:miriam:icd:C50`) and ORPHA codes, `sex` -> sexes, `storage_temperatures`, all
  through the shared code mapping (`mappings.*`, connectors/mapping.py); a value that does
  not map is left out with a quarantine row and the collection is kept;
- `size` (samples), `number_of_donors`, `age_low`/`age_high` in `age_unit` (YEAR, MONTH,
  WEEK, DAY; converted to whole years), `country`;
- `data_use` (DUO ids such as `DUO_0000042`) -> the default consent, when the terms make
  one (exactly one permission). A collection whose data use does not make a consent is
  rejected naming `data_use`, unless `data_use: ignore`;
- `withdrawn: true` is a tombstone: the collection leaves the network.

CSV headers may be the column names (`diagnosis_available`, the current EMX2 export) or
the column labels (`Available Diagnoses`, `Collection Types`; exports written with labels
and older MOLGENIS exports, which also wrote `Collection Type`); a header that is neither
a Directory Collections column nor an EMX2 system column (`mg_*`) fails the run naming it,
so a renamed column is never read as empty.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import fields, validate

from connectors.http import HttpConnector, HttpOptions
from connectors.mapping import CodeMapper, CodeMappingOptions, strip_prefix, with_dropped
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
    data_categories { name }
    data_use { name }
    materials { name }
    diagnosis_available { name }
    sex { name }
    storage_temperatures { name }
    country { name }
    size number_of_donors age_low age_high
    age_unit { name }
  }
  Collections_agg { count }
}"""
# Columns a Collections table must have for this connector to find a biobank's collections.
REQUIRED_COLUMNS = ("id", "name", "biobank")
# The Directory's Collections columns (molgenis-emx2 data/biobank-directory, molgenis.csv):
# name -> label. A CSV export may head its columns with either; both are read the same.
COLUMN_LABELS = {
    "id": "ID", "name": "Name", "acronym": "Acronym", "description": "Description",
    "url": "URL", "location": "Location", "country": "Country", "latitude": "Latitude",
    "longitude": "Longitude", "head": "Head of the Collection", "contact": "Contact Person",
    "national_node": "National Node", "withdrawn": "Withdrawn",
    "parent_collection": "Parent Collection", "sub_collections": "Sub Collections",
    "biobank": "Biobank", "biobank_label": "Biobank Label", "network": "Network",
    "also_known": "Also Known In", "studies": "Studies", "type": "Collection Types",
    "data_categories": "Data Categories", "order_of_magnitude": "Order of Magnitude",
    "size": "Size", "categories": "Collection Categories", "timestamp": "Timestamp",
    "quality": "Quality Standards", "combined_quality": "Combined Qualities",
    "number_of_donors": "Number of Donors",
    "order_of_magnitude_donors": "Order of Magnitude Donors", "sex": "Sex Types",
    "diagnosis_available": "Available Diagnoses", "age_low": "Age Low",
    "age_high": "Age High", "age_unit": "Age Unit", "facts": "Facts",
    "materials": "Materials", "storage_temperatures": "Storage Temperatures",
    "body_part_examined": "Body Parts Examined", "imaging_modality": "Imaging Modalities",
    "image_dataset_type": "Image Dataset Types",
    "collaboration_commercial": "Commercial Collaboration",
    "collaboration_non_for_profit": "Non-for-profit Collaboration",
    "data_use": "Data Use Ontologies", "duc_profile": "DUC profile",
    "commercial_use": "Available for Commercial Use", "access_fee": "Fee-based access to",
    "access_joint_project": "Access via Join Projects to",
    "access_description": "Access Description", "access_uri": "Access URI", "sop": "PD/SOPs",
    "catalog": "", "license": "", "publisher": "", "language": "", "keywords": "",
    "EJP_RD_personalData": "", "EJP_RD_vpConnection": "", "issued": "", "modified": "",
}  # fmt: skip
# Spellings of older exports (MOLGENIS 8 `eu_bbmri_eric_collections`, label headers).
OLDER_HEADERS = {
    "Collection Type": "type",
    "collection_type": "type",
    "Material Types": "materials",
    "Diagnosis Available": "diagnosis_available",
    "Data Use": "data_use",
    "Storage Temperature": "storage_temperatures",
}
# EMX2 adds its own bookkeeping columns to exports (mg_draft, mg_insertedOn, ...).
SYSTEM_PREFIX = "mg_"
# How many days a unit of the Directory's age_unit holds, to give ages in whole years.
AGE_UNIT_DAYS = {"YEAR": 365.25, "MONTH": 365.25 / 12, "WEEK": 7.0, "DAY": 1.0}
DAYS_PER_YEAR = 365.25


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
        names = column_names(target, headers)
        missing = [c for c in REQUIRED_COLUMNS if c not in names.values()]
        if missing:
            raise SourceError(
                f"{target}: not a Directory Collections table this connector reads: no "
                f"{', '.join(missing)} column (headers: {', '.join(headers[:12]) or 'none'})",
                retriable=False,
            )
        for row in reader:
            named = {names[h]: v for h, v in row.items() if h in names}
            yield f"Collections.csv line {reader.line_num}", named

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
        """Directory collection attributes to a canonical collection with declared facts."""
        row = record.payload
        mapper = CodeMapper(self.config)
        dropped: list[dict[str, Any]] = []
        diseases = _names(row.get("diagnosis_available"))
        orpha = [d for d in diseases if d.upper().startswith("ORPHA:")]
        icd = [
            (f"diagnosis_available[{n}]", strip_prefix(d), d)
            for n, d in enumerate(diseases)
            if d not in orpha
        ]
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": row.get("id"),
            "name": row.get("name"),
            "description": row.get("description") or None,
            "types": _names(row.get("type")),
            "declared": True,
            "materials": [mapper.material(m) for m in _names(row.get("materials"))],
            "diagnoses": mapper.diagnoses(icd, dropped),
            "orpha": orpha,
            "sexes": [mapper.sex(x) for x in _names(row.get("sex"))],
            "data_categories": _names(row.get("data_categories")),
            "storage_temperatures": _names(row.get("storage_temperatures")),
            "size": _number(row.get("size")),
            "donors": _number(row.get("number_of_donors")),
            "country": next(iter(_names(row.get("country"))), None),
        }
        mapped.update(_age_range(row, dropped))
        uses = _names(row.get("data_use"))
        if uses and self.config["data_use"] == "consent":
            mapped["default_consent"] = mapper.consents.get(",".join(uses)) or _consent(
                uses, mapper
            )
        return with_dropped(mapped, dropped)


def column_names(target: str, headers: list[str]) -> dict[str, str]:
    """CSV header -> Directory column name; a header the Directory does not have fails."""
    by_spelling = {_spelling(name): name for name in COLUMN_LABELS}
    by_spelling.update({_spelling(label): name for name, label in COLUMN_LABELS.items() if label})
    by_spelling.update({_spelling(old): name for old, name in OLDER_HEADERS.items()})
    names: dict[str, str] = {}
    unknown = []
    for header in headers:
        name = by_spelling.get(_spelling(header))
        if name is not None:
            names[header] = name
        elif not header.startswith(SYSTEM_PREFIX):
            unknown.append(header)
    if unknown:
        raise SourceError(
            f"{target}: headers this connector does not know: {', '.join(map(repr, unknown))} "
            "(neither a Directory Collections column name nor its label; see "
            "docs/connectors.md, Directory)",
            retriable=False,
        )
    return names


def _spelling(header: str) -> str:
    """A header with case, spaces and underscores ignored: `Collection Types` ~ `type`s."""
    return "".join(ch for ch in header.lower() if ch.isalnum())


def _number(value: Any) -> Any:
    """An EMX2 int (GraphQL number or CSV text); text that is not a number is passed on,
    so the canonical schema names it."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


def _age_range(row: Mapping[str, Any], dropped: list[dict[str, Any]]) -> dict[str, Any]:
    """`age_low`/`age_high` in `age_unit` as whole years (a donor of 18 months is 1)."""
    unit = (_names(row.get("age_unit")) or ["YEAR"])[0].upper()
    days = AGE_UNIT_DAYS.get(unit)
    low, high = _number(row.get("age_low")), _number(row.get("age_high"))
    if days is None:
        if low is not None or high is not None:
            dropped.append(
                {"field": "age_unit", "value": unit, "reason": "not YEAR, MONTH, WEEK or DAY"}
            )
        return {"age_low": None, "age_high": None}
    out = {}
    for name, value in (("age_low", low), ("age_high", high)):
        out[name] = int(value * days // DAYS_PER_YEAR) if isinstance(value, int) else value
    return out


def _consent(uses: list[str], mapper: CodeMapper) -> str:
    """DUO ids as consent shorthand; rejected when they do not make one consent."""
    by_id = {d.id: code for code, d in duo.definitions().items()}
    codes = []
    for use in uses:
        code = mapper.consents.get(use) or by_id.get(use.replace("_", ":"))
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
    if isinstance(value, Mapping):  # a single ontology term: {name}
        value = [value]
    if isinstance(value, list):
        return [str(v.get("name") if isinstance(v, Mapping) else v) for v in value if v]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _ref(value: Any) -> str:
    return str(value.get("id") if isinstance(value, Mapping) else value or "")


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"
