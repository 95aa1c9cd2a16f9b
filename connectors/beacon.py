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

Disease terms from other ontologies (MONDO, ORPHA, NCIT) are not ICD-10: map them with
`disease_codes`, or set `unmapped_diseases: ignore` to index the record without them; by
default the record is rejected naming the term, so nothing is dropped unseen. Sample origins
without a material type are rejected the same way (map them with `material_codes`).

Paging is `skip`/`limit` with `requestedGranularity=record`; each page ends with a
checkpoint (`skip`), so a killed run resumes at its page. Beacon v2 has no change feed, so
every run reads everything and deletions are found by comparing ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import fields, validate

from connectors.http import HttpConnector, HttpOptions, Page
from federation.model import duo
from federation.sync.connector import (
    Checkpoint,
    PulledItem,
    RecordRejected,
    SourceError,
    SourceRecord,
    Stream,
)

DEFAULT_PAGE_SIZE = 500
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
_ICD10_CURIE = re.compile(r"^(?:ICD-?10(?:CM|GM|WHO)?|icd10):", re.IGNORECASE)
_YEARS = re.compile(r"^P(?:(\d+)Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T.*)?$")


class BeaconConfig(HttpOptions):
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, 10_000))
    collection_types = fields.List(fields.String(), load_default=list)
    disease_codes = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "disease CURIE -> ICD-10 code (e.g. MONDO:0008903 -> C34)"},
    )
    material_codes = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "sample origin CURIE -> MIABIS material type"},
    )
    unmapped_diseases = fields.String(
        load_default="reject", validate=validate.OneOf(["reject", "ignore"])
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

    def pull(self, stream: Stream, state: Mapping[str, Any] | None) -> Iterator[PulledItem]:
        """Pages from `skip` (0, or where a killed run stopped) until a short page."""
        limit = int(self.config["page_size"])
        skip = int((state or {}).get("skip", 0))
        while True:
            path, params = page_request(stream.name, skip, limit)
            page = self.source.get(path, params)
            records, total = _records(page, stream)
            for number, (dataset, record) in enumerate(records):
                ident = record.get("id")
                payload = dict(record)
                if dataset is not None and stream.name == "samples":
                    payload["_resultSet"] = dataset
                yield SourceRecord(
                    stream.name,
                    str(ident) if ident not in (None, "") else None,
                    payload,
                    f"{ENDPOINTS[stream.name]} record {skip + number + 1}",
                )
            skip += len(records)
            if len(records) < limit:
                if total is not None and skip < total:
                    raise SourceError(
                        f"{page.url}: {len(records)} records where {limit} were asked and "
                        f"{total - skip} more are announced: the page was cut short",
                        retriable=True,
                    )
                break
            yield Checkpoint(stream.name, {"skip": skip})
        yield Checkpoint(stream.name, {})

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

    def _donor(self, individual: Mapping[str, Any]) -> dict[str, Any]:
        sex = individual.get("sex")
        sex_id = sex.get("id") if isinstance(sex, Mapping) else sex
        if not sex_id:
            raise RecordRejected("sex", None, "needs a sex term (NCIT:C17998 when unknown)")
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": individual.get("id"),
            "sex": SEXES.get(str(sex_id), str(sex_id)),
        }
        codes = []
        for n, disease in enumerate(individual.get("diseases") or ()):
            code = self._disease((disease or {}).get("diseaseCode"), f"diseases[{n}].diseaseCode")
            if code:
                codes.append(code)
        mapped["diagnoses"] = codes
        info = individual.get("info")
        if isinstance(info, Mapping):
            if info.get("dataUse"):
                mapped["consent"] = info["dataUse"]
            if "consentWithdrawn" in info:
                mapped["consent_withdrawn"] = info["consentWithdrawn"]
        return mapped

    def _disease(self, term: Any, where: str) -> str | None:
        curie = str(term.get("id") if isinstance(term, Mapping) else term or "").strip()
        if not curie:
            return None
        if curie in self.config["disease_codes"]:
            return str(self.config["disease_codes"][curie])
        if _ICD10_CURIE.match(curie):
            return curie  # validated (and normalised) as ICD-10 by the canonical schema
        if self.config["unmapped_diseases"] == "ignore":
            return None
        label = term.get("label") if isinstance(term, Mapping) else None
        raise RecordRejected(
            where,
            f"{curie} ({label})" if label else curie,
            "not an ICD-10 code; map it in the connector's disease_codes, or set "
            "unmapped_diseases: ignore",
        )

    def _sample(self, biosample: Mapping[str, Any]) -> dict[str, Any]:
        origin = biosample.get("sampleOriginType")
        origin_id = str(origin.get("id") if isinstance(origin, Mapping) else origin or "").strip()
        material = None
        if origin_id:
            material = self.config["material_codes"].get(origin_id) or ORIGINS.get(origin_id)
            if material is None:
                label = origin.get("label") if isinstance(origin, Mapping) else None
                raise RecordRejected(
                    "sampleOriginType",
                    f"{origin_id} ({label})" if label else origin_id,
                    "no MIABIS material type for this term; map it in the connector's "
                    "material_codes",
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
        diagnosis = self._disease(biosample.get("histologicalDiagnosis"), "histologicalDiagnosis")
        mapped["diagnoses"] = [diagnosis] if diagnosis else []
        return {k: v for k, v in mapped.items() if v not in (None, "")}


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
