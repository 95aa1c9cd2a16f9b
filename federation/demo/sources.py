"""Demo biobanks that are network sources: FHIR R4, Beacon v2 and REST JSON, as recordings.

The demo network is files on disk, so these biobanks are written as the pages their server
would answer to the requests a full sync makes, one file per request (the recording the
connectors read when `base_url` is a folder; see `connectors/http.py`). Rows arrive as the
tabular exports get them (canonical field order, values as the biobank spells them, dirty
ones included) and are turned into each format's resources:

- FHIR: Organization (Collection profile), Patient with its Conditions (`_revinclude`),
  Specimen with the BBMRI.de extensions; materials recoded to BBMRI.de SampleMaterialType;
- Beacon v2: datasets, individuals (NCIT sex, `ICD10:` disease CURIEs) and biosamples
  (UBERON/OBI/CL/EFO sample origins, ISO 8601 age), skip/limit pages;
- REST: JSON:API-like `{"id", "attributes": {...}}` records in numbered pages.

A value with no counterpart in the format (a dirty material or sex) is written as it is,
so the connector rejects it the way it rejects a tabular cell.
"""

from __future__ import annotations

import abc
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from connectors.recorded import (
    beacon_page_request,
    fhir_search_request,
    recorded_name,
    rest_page_params,
)
from federation.demo.tables import FIELDS
from federation.model import fhir_vocab as fhir

LIST_SEPARATOR = ";"
PAGE_SIZE = 1000
RECORDING_FOLDERS = ("fhir", "beacon", "rest")

_FHIR_MATERIALS = {
    miabis: code
    for code, miabis in fhir.MATERIALS.items()
    if code not in ("dried-whole-blood", "bone-marrow", "ascites", "csf-liquor", "swab")
    and code not in ("liquid-other", "tissue-other")
    and code not in fhir.MATERIAL_PARENTS  # the demo writes the top-level codes
}
_FHIR_MATERIALS["OTHER"] = "derivative-other"
_FHIR_MATERIALS["CELL_LINES"] = "derivative-other"  # BBMRI.de has no code for cell lines
_FHIR_GENDERS = {canonical: code for code, canonical in fhir.GENDERS.items()}
_BEACON_ORIGINS = {
    "WHOLE_BLOOD": "UBERON:0000178",
    "PLASMA": "UBERON:0001969",
    "SERUM": "UBERON:0001977",
    "URINE": "UBERON:0001088",
    "SALIVA": "UBERON:0001836",
    "FECES": "UBERON:0001988",
    "TISSUE_FROZEN": "OBI:0000922",
    "DNA": "OBI:0001051",
    "RNA": "OBI:0000880",
    "PERIPHERAL_BLOOD_CELLS": "CL:2000001",
    "CELL_LINES": "EFO:0000322",
}
_BEACON_SEXES = {"FEMALE": "NCIT:C16576", "MALE": "NCIT:C20197", "UNKNOWN": "NCIT:C17998"}
_BEACON_COLLECTION_TYPES = ["RD"]


def _split(text: Any) -> list[str]:
    return [p.strip() for p in str(text or "").split(LIST_SEPARATOR) if p.strip()]


def _json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), "utf-8")


class _Pages:
    """Records of one stream, written a page at a time (one page is held back, because
    whether it links to a next page is known only when the next record arrives)."""

    def __init__(self, size: int, write: Any) -> None:
        self.size = size
        self.write = write  # write(number, records, last: bool)
        self.current: list[Any] = []
        self.held: list[Any] | None = None
        self.number = 0

    def add(self, record: Any) -> None:
        self.current.append(record)
        if len(self.current) == self.size:
            self._rotate()

    def _rotate(self) -> None:
        if self.held is not None:
            self.write(self.number, self.held, False)
            self.number += 1
        self.held, self.current = self.current, []

    def close(self) -> None:
        if self.current or self.held is None:
            self._rotate()
        assert self.held is not None
        self.write(self.number, self.held, True)


class RecordedExport(abc.ABC):
    """One biobank's source as recorded pages under `folder/<format>/` (the `_Tables` API)."""

    format = ""

    def __init__(self, folder: Path, fields: dict[str, tuple[str, ...]], page_size: int) -> None:
        self.root = folder / self.format
        for name in RECORDING_FOLDERS:
            shutil.rmtree(folder / name, ignore_errors=True)
        self.fields = fields
        self.page_size = page_size
        self.pages = {stream: _Pages(page_size, self._writer(stream)) for stream in fields}

    def add(self, stream: str, rows: Iterable[Sequence[Any]]) -> None:
        names = self.fields[stream]
        for row in rows:
            for record in self.records(stream, dict(zip(names, row, strict=True))):
                self.pages[stream].add(record)

    def close(self) -> None:
        for pages in self.pages.values():
            pages.close()

    def __enter__(self) -> RecordedExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def records(self, stream: str, row: dict[str, Any]) -> list[Any]: ...

    @abc.abstractmethod
    def _writer(self, stream: str) -> Any: ...

    @classmethod
    @abc.abstractmethod
    def options(cls, folder: str, page_size: int) -> dict[str, Any]:
        """The connector options that read this recording."""


class FhirExport(RecordedExport):
    format = "fhir"

    def records(self, stream: str, row: dict[str, Any]) -> list[Any]:
        if stream == "collections":
            return [_fhir_collection(row)]
        if stream == "donors":
            return [_fhir_patient(row)]
        return [_fhir_specimen(row)]

    def _writer(self, stream: str) -> Any:
        resource, params = fhir_search_request(stream, {"page_size": self.page_size})

        def url(number: int) -> str:
            query = {**params, **({"_offset": number * self.page_size} if number else {})}
            return f"{resource}?" + "&".join(f"{k}={v}" for k, v in query.items())

        def write(number: int, records: list[Any], last: bool) -> None:
            entries: list[dict[str, Any]] = []
            for record in records:
                conditions = record.pop("_conditions", [])
                entries.append({"resource": record, "search": {"mode": "match"}})
                entries += [{"resource": c, "search": {"mode": "include"}} for c in conditions]
            links = [{"relation": "self", "url": url(number)}]
            if not last:
                links.append({"relation": "next", "url": url(number + 1)})
            bundle = {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": links,
                "entry": entries,
            }
            _json(self.root / recorded_name(url(number)), bundle)

        return write

    @classmethod
    def options(cls, folder: str, page_size: int) -> dict[str, Any]:
        return {"base_url": f"{folder}/fhir", "page_size": page_size}


def _extension(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _fhir_collection(row: dict[str, Any]) -> dict[str, Any]:
    extensions = [_extension(fhir.DESCRIPTION_EXTENSION, valueString=row["description"])]
    extensions += [
        _extension(
            fhir.COLLECTION_TYPE_EXTENSION,
            valueCodeableConcept=_concept(fhir.COLLECTION_TYPE_SYSTEM, t),
        )
        for t in _split(row["types"])
    ]
    if row["default_consent"]:
        extensions.append(_extension(fhir.DATA_USE_EXTENSION, valueString=row["default_consent"]))
    return {
        "resourceType": "Organization",
        "id": row["id"],
        "meta": {"profile": [fhir.COLLECTION_PROFILE]},
        "name": row["name"],
        "extension": extensions,
    }


def _fhir_patient(row: dict[str, Any]) -> dict[str, Any]:
    sex = str(row["sex"])
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": row["id"],
        "gender": _FHIR_GENDERS.get(sex.upper(), sex),
    }
    if row["birth_year"] not in (None, ""):
        patient["birthDate"] = str(row["birth_year"])
    extensions = []
    if row["consent"]:
        extensions.append(_extension(fhir.DATA_USE_EXTENSION, valueString=row["consent"]))
    extensions.append(
        _extension(
            fhir.CONSENT_WITHDRAWN_EXTENSION,
            valueBoolean=str(row["consent_withdrawn"]).lower() == "true",
        )
    )
    patient["extension"] = extensions
    conditions = [
        {
            "resourceType": "Condition",
            "id": f"{row['id']}-c{n}",
            "subject": {"reference": f"Patient/{row['id']}"},
            "code": _concept(fhir.ICD10_SYSTEMS[0], code),
        }
        for n, code in enumerate(_split(row["diagnoses"]))
    ]
    conditions += [
        {
            "resourceType": "Condition",
            "id": f"{row['id']}-o{n}",
            "subject": {"reference": f"Patient/{row['id']}"},
            "code": _concept(fhir.ORPHA_SYSTEM, code.removeprefix("ORPHA:")),
        }
        for n, code in enumerate(_split(row["orpha"]))
    ]
    patient["_conditions"] = conditions
    return patient


def _fhir_specimen(row: dict[str, Any]) -> dict[str, Any]:
    specimen: dict[str, Any] = {"resourceType": "Specimen", "id": row["id"]}
    if row["last_updated"]:
        specimen["meta"] = {"lastUpdated": row["last_updated"]}
    material = str(row["material_type"] or "")
    if material:
        code = _FHIR_MATERIALS.get(material.upper(), material)
        specimen["type"] = _concept(fhir.MATERIAL_SYSTEM, code)
    if row["donor_id"]:
        specimen["subject"] = {"reference": f"Patient/{row['donor_id']}"}
    if row["collection_date"]:
        specimen["collection"] = {"collectedDateTime": row["collection_date"]}
    if row["availability"]:
        specimen["status"] = row["availability"]
    extensions = [
        _extension(
            fhir.CUSTODIAN_EXTENSION,
            valueReference={"reference": f"Organization/{row['collection_id']}"},
        )
    ]
    if row["storage_temperature"]:
        extensions.append(
            _extension(
                fhir.STORAGE_TEMPERATURE_EXTENSION,
                valueCodeableConcept=_concept(
                    fhir.STORAGE_TEMPERATURE_SYSTEM,
                    row["storage_temperature"],
                ),
            )
        )
    extensions += [
        _extension(
            fhir.SAMPLE_DIAGNOSIS_EXTENSION,
            valueCodeableConcept=_concept(fhir.ICD10_SYSTEMS[0], code),
        )
        for code in _split(row["diagnoses"])
    ]
    specimen["extension"] = extensions
    return specimen


class BeaconExport(RecordedExport):
    format = "beacon"

    def records(self, stream: str, row: dict[str, Any]) -> list[Any]:
        if stream == "collections":
            return [_beacon_dataset(row)]
        if stream == "donors":
            return [_beacon_individual(row)]
        return [_beacon_biosample(row)]

    def _writer(self, stream: str) -> Any:
        counted: list[int] = []

        def write(number: int, records: list[Any], last: bool) -> None:
            counted.append(len(records))
            # Beacon v2 counts skip in pages: page `number` is asked for as skip=number.
            self._page(stream, number, records)
            if last and len(records) == self.page_size:
                self._page(stream, number + 1, [])  # the empty page that ends it

        return write

    def _page(self, stream: str, skip: int, records: list[Any]) -> None:
        path, params = beacon_page_request(stream, skip, self.page_size)
        meta = {
            "beaconId": "org.example.demo",
            "apiVersion": "v2.0.0",
            "returnedGranularity": "record",
        }
        if stream == "collections":
            response: dict[str, Any] = {"collections": records}
        else:
            by_set: dict[str, list[Any]] = {}
            for record in records:
                by_set.setdefault(str(record.get("datasetId") or "default"), []).append(record)
            response = {
                "resultSets": [
                    {
                        "id": d,
                        "setType": "dataset",
                        "exists": True,
                        "resultsCount": len(r),
                        "results": r,
                    }
                    for d, r in by_set.items()
                ]
            }
        body = {"meta": meta, "responseSummary": {"exists": bool(records)}, "response": response}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        _json(self.root / recorded_name(f"{path}?{query}"), body)

    @classmethod
    def options(cls, folder: str, page_size: int) -> dict[str, Any]:
        return {
            "base_url": f"{folder}/beacon",
            "page_size": page_size,
            "collection_types": _BEACON_COLLECTION_TYPES,
            # ORPHA terms travel as disease CURIEs beside the ICD-10 ones; this network
            # indexes ICD-10, so they are let go knowingly rather than rejecting donors.
            "unmapped_diseases": "ignore",
        }


def _beacon_dataset(row: dict[str, Any]) -> dict[str, Any]:
    from federation.model import duo

    uses: list[dict[str, Any]] = []
    for part in _split(row["default_consent"]):
        code, _, rest_ = part.partition("(")
        definition = duo.definitions().get(code.strip().upper())
        if definition is None:
            uses.append({"id": part})
            continue
        use: dict[str, Any] = {"id": definition.id, "label": definition.label}
        params = [p.strip() for p in rest_.rstrip(")").split(",") if p.strip()]
        if params:
            use["modifiers"] = [{"id": f"ICD10:{p}"} for p in params]
        uses.append(use)
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "dataUseConditions": {"duoDataUse": uses},
    }


def _beacon_individual(row: dict[str, Any]) -> dict[str, Any]:
    sex = str(row["sex"])
    codes = _split(row["diagnoses"])
    diseases = [
        {"diseaseCode": {"id": c if c.upper().startswith("ICD10:") else f"ICD10:{c}"}}
        for c in codes
    ]
    diseases += [{"diseaseCode": {"id": o}} for o in _split(row["orpha"])]
    individual: dict[str, Any] = {
        "id": row["id"],
        "sex": {"id": _BEACON_SEXES.get(sex.upper(), sex)},
        "diseases": diseases,
        "info": {"consentWithdrawn": str(row["consent_withdrawn"]).lower() == "true"},
    }
    if row["consent"]:
        individual["info"]["dataUse"] = row["consent"]
    return individual


def _beacon_biosample(row: dict[str, Any]) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "id": row["id"],
        "individualId": row["donor_id"],
        "datasetId": row["collection_id"],
    }
    material = str(row["material_type"] or "")
    if material:
        sample["sampleOriginType"] = {"id": _BEACON_ORIGINS.get(material.upper(), material)}
    if row["collection_date"]:
        sample["collectionDate"] = row["collection_date"]
    if row["age_at_collection"] not in (None, ""):
        sample["collectionMoment"] = f"P{row['age_at_collection']}Y"
    codes = _split(row["diagnoses"])
    if codes:
        # Beacon has one histological diagnosis: the last code (a dirty one comes last).
        code = codes[-1]
        sample["histologicalDiagnosis"] = {
            "id": code if code.upper().startswith("ICD10:") else f"ICD10:{code}"
        }
    return sample


class RestExport(RecordedExport):
    format = "rest"

    def records(self, stream: str, row: dict[str, Any]) -> list[Any]:
        attributes = {k: ("" if v is None else str(v)) for k, v in row.items() if k != "id"}
        return [{"id": row["id"], "attributes": attributes}]

    def _writer(self, stream: str) -> Any:
        paging = self.paging()

        def write(number: int, records: list[Any], last: bool) -> None:
            params = rest_page_params(paging, {"page": number + 1})
            query = "&".join(f"{k}={v}" for k, v in params.items())
            body = {"data": records, "meta": {"page": number + 1}}
            _json(self.root / recorded_name(f"{stream}?{query}"), body)
            if last and len(records) == self.page_size:
                params = rest_page_params(paging, {"page": number + 2})
                query = "&".join(f"{k}={v}" for k, v in params.items())
                _json(self.root / recorded_name(f"{stream}?{query}"), {"data": [], "meta": {}})

        return write

    def paging(self) -> dict[str, Any]:
        return {
            "style": "page",
            "size": self.page_size,
            "page_param": "page",
            "size_param": "per_page",
            "first_page": 1,
        }

    @classmethod
    def options(cls, folder: str, page_size: int) -> dict[str, Any]:
        streams = {
            stream: {
                "path": stream,
                "fields": {f: ("id" if f == "id" else f"attributes.{f}") for f in fields},
            }
            for stream, fields in FIELDS.items()
        }
        return {
            "base_url": f"{folder}/rest",
            "paging": {"style": "page", "size": page_size},
            "records": "data",
            "list_separator": LIST_SEPARATOR,
            "streams": streams,
        }


EXPORTS: dict[str, type[RecordedExport]] = {
    "fhir": FhirExport,
    "beacon": BeaconExport,
    "rest": RestExport,
}
CONNECTORS = {"fhir": "fhir", "beacon": "beacon", "rest": "rest"}
