"""GA4GH Beacon v2 endpoints: `/datasets`, `/individuals` and `/biosamples` at record level.

Streams and what they map:

- `collections`: datasets (`/datasets`). Name, description, and the default consent from
  `dataUseConditions.duoDataUse` (DUO ids such as `DUO:0000042`; a DS term takes its
  diseases from the term's `modifiers` when they are ICD-10). Beacon has no MIABIS
  collection types: they come from the `collection_types` option.
- `donors`: individuals. Sex from NCIT terms (`NCIT:C16576` female, `NCIT:C20197` male,
  `NCIT:C124294`/`NCIT:C17998` unknown); diagnoses from `diseases[].diseaseCode` when it is
  an ICD-10 CURIE (`ICD10:C50.9`). Beacon has no consent per individual; this connector
  reads `info.dataUse` (DUO shorthand) and `info.consentWithdrawn` when a beacon puts them
  there, as the demo network's do.
- `samples`: biosamples. Donor from `individualId`, collection from the result set (the
  dataset) the record came in, material from `sampleOriginType` (UBERON/OBI/CL/EFO terms,
  `ORIGINS`), date from `collectionDate`, age from `collectionMoment` (ISO 8601 duration),
  diagnosis from `histologicalDiagnosis` when ICD-10.

Codes are mapped with the options every connector shares (`connectors.mapping`:
`mappings.diseases`, `.materials`, `.sex`, `.consent`; `disease_codes` and `material_codes`
are older spellings of the first two). A disease term that is not WHO ICD-10 after mapping
(MONDO, ORPHA, NCIT, or an `ICD10:` CURIE with a non-WHO code such as `ICD10:F3181`) is left
out of the record, with a quarantine row naming it unless `unmapped_diseases: ignore`; the
individual or biosample is kept. A sample origin without a MIABIS material type rejects the
biosample unless it is mapped or `unmapped_materials` names a type for unknown ones.

Paging is `skip`/`limit` with `requestedGranularity=record`. The Beacon v2 framework counts
`skip` in pages (`skip * limit` records are skipped); some servers count records. The
`skip_counts` option says which (`pages`, `records`), or `auto` (the default) compares the
first full page with a `skip=1` probe and says what it found in the run record. A page that
repeats records of earlier pages fails the run (the paging is not what we think), and so
does a read whose record count differs from `numTotalResults`; a beacon that does not
announce it is said in the run record. Each page ends with a checkpoint (record offset,
page size and how skip counts), so a killed run resumes at its page. Beacon v2 has no change
feed, so every run reads everything and deletions are found by comparing ids.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import fields, validate

from connectors.http import HttpConnector, HttpOptions, Page
from connectors.mapping import CodeMapper, CodeMappingOptions, with_dropped
from federation.model import duo, vocab
from federation.sync.connector import (
    Checkpoint,
    IncompleteRead,
    PulledItem,
    RecordRejected,
    SourceError,
    SourceRecord,
    Stream,
    check_total,
)

DEFAULT_PAGE_SIZE = 500
# How a beacon counts `skip`: the Beacon v2 framework says pages (`skip * limit` records
# are skipped); some servers in the wild count records. `auto` tells them apart.
PAGES, RECORDS, AUTO = "pages", "records", "auto"
ENDPOINTS = {"collections": "datasets", "donors": "individuals", "samples": "biosamples"}
SEXES = {
    "NCIT:C16576": "FEMALE",
    "NCIT:C20197": "MALE",
    "NCIT:C124294": "UNKNOWN",
    "NCIT:C17998": "UNKNOWN",
}
# Sample origin terms -> MIABIS material types. The OBI ids are those schema/vocab names.
ORIGINS = {
    "UBERON:0000178": "WHOLE_BLOOD",
    "UBERON:0001969": "PLASMA",
    "UBERON:0001977": "SERUM",
    "UBERON:0001088": "URINE",
    "UBERON:0001836": "SALIVA",
    "UBERON:0001988": "FECES",
    "UBERON:0002371": "OTHER",  # bone marrow
    "OBI:0000655": "WHOLE_BLOOD",
    "OBI:0100016": "PLASMA",
    "OBI:0100017": "SERUM",
    "OBI:0002503": "FECES",
    "OBI:0002507": "SALIVA",
    "OBI:0000922": "TISSUE_FROZEN",
    "OBI:0001051": "DNA",
    "OBI:0000880": "RNA",
    "CL:2000001": "PERIPHERAL_BLOOD_CELLS",
    "EFO:0000322": "CELL_LINES",
}
_PROBE_SAYS = {RECORDS: "starts at the 2nd record", PAGES: "starts after the first page"}
_ICD10_CURIE = re.compile(r"^(?:ICD-?10(?:CM|GM|WHO)?|icd10):", re.IGNORECASE)
_YEARS = re.compile(r"^P(?:(\d+)Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T.*)?$")


class BeaconConfig(HttpOptions, CodeMappingOptions):
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, 10_000))
    collection_types = fields.List(fields.String(), load_default=list)
    disease_codes = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "older spelling of mappings.diseases (disease CURIE -> ICD-10)"},
    )
    material_codes = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "older spelling of mappings.materials (origin CURIE -> MIABIS)"},
    )
    skip_counts = fields.String(
        load_default=AUTO,
        validate=validate.OneOf([AUTO, PAGES, RECORDS]),
        metadata={
            "description": "how the beacon counts `skip`: pages (the spec), records (some "
            "servers) or auto; a skip=1 probe on the first full page detects it (auto) or "
            "checks it (a contradicted setting fails the run)"
        },
    )


def page_request(stream: str, skip: int, limit: int) -> tuple[str, dict[str, Any]]:
    """The request for one page of a stream (a recorder answers exactly these)."""
    return ENDPOINTS[stream], {"requestedGranularity": "record", "skip": skip, "limit": limit}


class BeaconConnector(HttpConnector):
    """Beacon v2 datasets, individuals and biosamples, paged with skip/limit."""

    name = "beacon"
    description = "GA4GH Beacon v2 (individuals, biosamples, datasets) at record granularity"
    config_schema = BeaconConfig
    streams = (
        Stream("collections", "collection"),
        Stream("donors", "donor"),
        Stream("samples", "sample"),
    )
    _skip_counts: str | None = None  # as detected (or configured) for this source
    # The skip=1 probe's answer, kept because a spec beacon's next page is the same request.
    _probed: (
        tuple[tuple[str, int, int], tuple[Page, list[tuple[str | None, Any]], int | None]] | None
    ) = None

    def pull(self, stream: Stream, state: Mapping[str, Any] | None) -> Iterator[PulledItem]:
        """Pages from the start (or where a killed run stopped) until a short page.

        `skip` is sent as the spec counts it (pages) unless the source counts records; in
        `auto` the first full page is compared with a `skip=1` probe. At the end the records
        read are checked against `numTotalResults` when the beacon announces it.
        """
        state = dict(state or {})
        limit = int(state.get("limit") or self.config["page_size"])
        # `skip` is how checkpoints written before page-counted paging held the offset.
        offset = int(state.get("offset", state.get("skip", 0)))
        counting: str | None = state.get("skip_counts") or self._skip_counts
        announced: int | None = None
        seen: set[str] = set()
        endpoint = ENDPOINTS[stream.name]
        while True:
            page, records, total = self._page(stream, offset, limit, counting or PAGES)
            announced = total if total is not None else announced
            if counting is None and offset == 0:
                counting = self._detect(stream, limit, records)
            _check_new(page, records, seen, counting or PAGES)
            for number, (dataset, record) in enumerate(records):
                ident = record.get("id")
                payload = dict(record)
                if dataset is not None and stream.name == "samples":
                    payload["_resultSet"] = dataset
                yield SourceRecord(
                    stream.name,
                    str(ident) if ident not in (None, "") else None,
                    payload,
                    f"{endpoint} record {offset + number + 1}",
                )
            offset += len(records)
            if len(records) < limit:
                if total is not None and offset < total:
                    raise IncompleteRead(
                        f"{page.url}: {len(records)} records where {limit} were asked and "
                        f"{total - offset} more are announced: the page was cut short",
                        retriable=True,
                    )
                break
            yield Checkpoint(
                stream.name, {"offset": offset, "limit": limit, "skip_counts": counting or PAGES}
            )
        if announced is None:
            self.note(
                f"{endpoint}: the beacon does not announce numTotalResults; completeness "
                "rests on the paging alone"
            )
        check_total(
            f"{self.config['base_url'].rstrip('/')}/{endpoint}",
            offset,
            announced,
            f"skip counted in {counting or PAGES} (option skip_counts)",
        )
        yield Checkpoint(stream.name, {})

    def _page(
        self, stream: Stream, offset: int, limit: int, counting: str
    ) -> tuple[Page, list[tuple[str | None, Any]], int | None]:
        skip = offset // limit if counting == PAGES else offset
        key = (stream.name, skip, limit)
        probed, self._probed = self._probed, None
        if probed is not None and probed[0] == key:
            return probed[1]  # the probe asked exactly this (skip=1 of a spec beacon)
        path, params = page_request(stream.name, skip, limit)
        page = self.source.get(path, params)
        records, total = _records(page, stream)
        self._probed = (key, (page, records, total)) if skip == 1 and offset <= 1 else None
        return page, records, total

    def _detect(
        self, stream: Stream, limit: int, first: list[tuple[str | None, Any]]
    ) -> str | None:
        """How the beacon counts `skip`, from its first page and a `skip=1` probe.

        The probe runs whatever the option says: a configured `pages` or `records` that the
        beacon contradicts fails the run (a wrong guess loses records silently when the
        beacon announces no total). None when the first page is its only page.
        """
        configured = str(self.config["skip_counts"])
        if self.source.recorded or limit < 2:
            # A recording answers only the requests a spec-following read makes; with one
            # record per page both readings of skip ask for the same records.
            self._skip_counts = PAGES if configured == AUTO else configured
            return self._skip_counts
        if len(first) < limit:
            return None
        _, probe, _ = self._page(stream, 1, limit, RECORDS)
        first_keys = [_identity(r) for _, r in first]
        probe_keys = [_identity(r) for _, r in probe]
        if probe_keys and probe_keys[0] == first_keys[1]:
            found: str | None = RECORDS
        elif not probe_keys or probe_keys[0] not in first_keys:
            found = PAGES
        else:
            found = None
        endpoint = ENDPOINTS[stream.name]
        if found is None and configured == AUTO:
            raise IncompleteRead(
                f"{endpoint}: cannot tell whether the beacon counts `skip` in pages or in "
                "records (skip=1 repeats the first page's records out of order); set "
                "skip_counts: pages or records"
            )
        if found is not None and configured not in (AUTO, found):
            raise IncompleteRead(
                f"{endpoint}: the connector is set to skip_counts: {configured}, but the "
                f"beacon counts `skip` in {found} (skip=1 {_PROBE_SAYS[found]}); reading it "
                f"so would skip or repeat records: set skip_counts: {found} or auto"
            )
        counting = found or configured
        how = "detected" if configured == AUTO else "as configured, confirmed by the probe"
        if counting == RECORDS:
            self.note(
                f"the beacon counts `skip` in records, not in pages as the Beacon v2 spec "
                f"says ({how}: skip=1 starts at the 2nd record); read with record offsets"
            )
        else:
            self.note(f"the beacon counts `skip` in pages, as the Beacon v2 spec says ({how})")
        self._skip_counts = counting
        return counting

    # --- mapping ---------------------------------------------------------------------------

    def map(self, record: SourceRecord) -> dict[str, Any]:
        """Beacon v2 default-model records to canonical fields."""
        payload = record.payload
        if record.stream == "collections":
            return self._collection(payload)
        if record.stream == "donors":
            return self._donor(payload)
        return self._sample(payload)

    def _collection(self, dataset: Mapping[str, Any]) -> dict[str, Any]:
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": dataset.get("id"),
            "name": dataset.get("name"),
            "description": dataset.get("description"),
            "types": list(self.config["collection_types"]),
        }
        uses = (dataset.get("dataUseConditions") or {}).get("duoDataUse")
        if uses:
            mapped["default_consent"] = self._consent(uses)
        return mapped

    def _consent(self, uses: Any) -> list[dict[str, Any]]:
        if not isinstance(uses, list):
            raise RecordRejected("dataUseConditions.duoDataUse", uses, "must be a list of terms")
        definitions = duo.definitions()
        shorthand = {d.id: code for code, d in definitions.items()}
        terms = []
        for n, use in enumerate(uses):
            where = f"dataUseConditions.duoDataUse[{n}].id"
            ident = str((use or {}).get("id") or "")
            code = shorthand.get(ident.replace("_", ":"))
            if code is None:
                raise RecordRejected(where, ident, "not a DUO term id (DUO:0000042 and the like)")
            modifiers = use.get("modifiers") or []
            if not isinstance(modifiers, list):
                modifiers = [modifiers]
            diseases = [
                _ICD10_CURIE.sub("", str(m.get("id")))
                for m in modifiers
                if isinstance(m, Mapping) and _ICD10_CURIE.match(str(m.get("id") or ""))
            ]
            terms.append({"code": code, "diseases": diseases})
        return terms

    @functools.cached_property
    def mapper(self) -> CodeMapper:
        """The shared code mapping, with this connector's older option spellings merged in."""
        mapper = CodeMapper(self.config)
        mapper.diseases = {**self.config["disease_codes"], **mapper.diseases}
        mapper.materials = {**self.config["material_codes"], **mapper.materials}
        return mapper

    def _donor(self, individual: Mapping[str, Any]) -> dict[str, Any]:
        sex = individual.get("sex")
        sex_id = sex.get("id") if isinstance(sex, Mapping) else sex
        if not sex_id:
            raise RecordRejected("sex", None, "needs a sex term (NCIT:C17998 when unknown)")
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": individual.get("id"),
            "sex": self.mapper.sex(str(sex_id), SEXES),
        }
        dropped: list[dict[str, Any]] = []
        terms = [
            (f"diseases[{n}].diseaseCode", (disease or {}).get("diseaseCode"))
            for n, disease in enumerate(individual.get("diseases") or ())
        ]
        mapped["diagnoses"] = self.mapper.diagnoses(_curies(terms), dropped)
        info = individual.get("info")
        if isinstance(info, Mapping):
            if info.get("dataUse"):
                use = info["dataUse"]
                mapped["consent"] = self.mapper.consent(use) if isinstance(use, str) else use
            if "consentWithdrawn" in info:
                mapped["consent_withdrawn"] = info["consentWithdrawn"]
        return with_dropped(mapped, dropped)

    def _sample(self, biosample: Mapping[str, Any]) -> dict[str, Any]:
        origin = biosample.get("sampleOriginType")
        origin_id = str(origin.get("id") if isinstance(origin, Mapping) else origin or "").strip()
        material = None
        if origin_id:
            material = self.mapper.material(origin_id, ORIGINS)
            if vocab.material_types().canonical(material) is None:
                label = origin.get("label") if isinstance(origin, Mapping) else None
                raise RecordRejected(
                    "sampleOriginType",
                    f"{origin_id} ({label})" if label else origin_id,
                    "no MIABIS material type for this term; map it under mappings.materials "
                    "(or give unknown ones a type with unmapped_materials)",
                )
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": biosample.get("id"),
            "donor_id": biosample.get("individualId"),
            "collection_id": biosample.get("_resultSet") or biosample.get("datasetId"),
            "material_type": material,
            "collection_date": biosample.get("collectionDate"),
        }
        moment = biosample.get("collectionMoment")
        if moment:
            years = _YEARS.match(str(moment))
            mapped["age_at_collection"] = int(years.group(1) or 0) if years else moment
        dropped: list[dict[str, Any]] = []
        terms = [("histologicalDiagnosis", biosample.get("histologicalDiagnosis"))]
        mapped["diagnoses"] = self.mapper.diagnoses(_curies(terms), dropped)
        return with_dropped({k: v for k, v in mapped.items() if v not in (None, "")}, dropped)


def _records(page: Page, stream: Stream) -> tuple[list[tuple[str | None, Any]], int | None]:
    """(result set id, record) pairs of a response, and the announced total if any."""
    body = page.body
    if not isinstance(body, Mapping):
        raise SourceError(f"{page.url}: not a Beacon v2 response object", retriable=True)
    granularity = (body.get("meta") or {}).get("returnedGranularity")
    if granularity not in (None, "record"):
        raise SourceError(
            f"{page.url}: the beacon answers at {granularity!r} granularity; record-level "
            "access (an authorised account) is needed to sync",
            retriable=False,
        )
    summary = body.get("responseSummary") or {}
    total = summary.get("numTotalResults")
    response = body.get("response")
    if not isinstance(response, Mapping):
        raise SourceError(f"{page.url}: the response has no `response` object", retriable=True)
    out: list[tuple[str | None, Any]] = []
    if "collections" in response:  # datasets and cohorts come as a collections response
        out = [(None, c) for c in response.get("collections") or ()]
    else:
        for result_set in response.get("resultSets") or ():
            dataset = result_set.get("id")
            out.extend((dataset, r) for r in result_set.get("results") or ())
    return out, int(total) if isinstance(total, int) else None


def _curies(terms: list[tuple[str, Any]]) -> list[tuple[str, str, str]]:
    """(where, ontology term) -> (where, CURIE, CURIE with its label) for the mapper."""
    out = []
    for where, term in terms:
        curie = str(term.get("id") if isinstance(term, Mapping) else term or "").strip()
        if not curie:
            continue
        label = term.get("label") if isinstance(term, Mapping) else None
        out.append((where, curie, f"{curie} ({label})" if label else curie))
    return out


def _identity(record: Any) -> str:
    """A record's id, or the record itself as text when it has none (to compare pages)."""
    if isinstance(record, Mapping) and record.get("id") not in (None, ""):
        return str(record["id"])
    return json.dumps(record, sort_keys=True, default=str)


def _check_new(
    page: Page, records: list[tuple[str | None, Any]], seen: set[str], counting: str
) -> None:
    """A page repeating records of earlier pages means skip is not counted as we send it."""
    keys = [_identity(r) for _, r in records]
    repeated = [k for k in keys if k in seen]
    if repeated:
        raise IncompleteRead(
            f"{page.url}: the page repeats {len(repeated)} record(s) of earlier pages "
            f"(first {repeated[0][:80]!r}): the beacon does not count `skip` in {counting}; "
            "set the option skip_counts"
        )
    seen.update(keys)
