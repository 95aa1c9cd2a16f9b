"""FHIR R4 servers with the BBMRI.de profiles: collections, patients with conditions, specimens.

Streams and what they map:

- `collections`: `Organization` resources with the BBMRI.de Collection profile. Name,
  description (OrganizationDescription extension), MIABIS collection types (CollectionType
  extensions) and the default consent (the DataUse extension below).
- `donors`: `Patient` resources, read with `_revinclude=Condition:subject` so each page
  carries the patients' conditions. Sex from `gender`, birth year from `birthDate` (and
  the full date when it has day precision, so ages at collection are exact),
  diagnoses from the conditions' ICD-10 codings (WHO or ICD-10-GM systems; a code that is
  not WHO ICD-10 is left out of the donor, with a quarantine row unless
  `unmapped_diseases: ignore`; codings in other systems count only when mapped under
  `mappings.diseases`, keyed `system|code` or `code`), ORPHA codes from orpha.net
  codings, consent and withdrawal from the extensions below.
- `samples`: `Specimen` resources. Material from the BBMRI.de SampleMaterialType coding
  (`MATERIALS`: the IG's CodeSystem with its sub-types such as `plasma-edta`, `cf-dna`,
  `tumor-tissue-frozen`, kept in `schema/vocab/bbmri_de_sample_material_types.csv`),
  donor from `subject`, collection from the Custodian extension, date from
  `collection.collectedDateTime`, storage temperature and sample diagnosis from their
  extensions, availability from `status`, last update from `meta.lastUpdated`.

BBMRI.de has no consent profile, so consent travels in two extensions this project
defines: `DATA_USE_EXTENSION` (valueString, DUO shorthand such as `DS(C50);NCU`) on a
collection or a patient, and `CONSENT_WITHDRAWN_EXTENSION` (valueBoolean) on a patient.

Paging follows the Bundle's `next` links; each page ends with a checkpoint holding the
link, so a killed run resumes at the page it was reading. The matches read are checked
against the first page's `Bundle.total` (carried through checkpoints): a read that
disagrees fails the run; a server that reports no total is said in the run record.
Incremental runs ask for `_lastUpdated=ge<bookmark>` sorted by `_lastUpdated`, re-read
patients whose conditions changed, and take deletions from
`<Type>/_history?_since=<bookmark>` (DELETE entries are tombstones). Records the source
sends that cannot be used are rejected with the field:
an unknown gender or material code, an ICD-10 code that is not WHO, a date that is not a
date, a specimen `entered-in-error`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import fields, validate

from connectors.http import HttpConnector, HttpOptions, Page, later
from connectors.mapping import CodeMapper, CodeMappingOptions, with_dropped
from federation.model.fhir_vocab import (
    COLLECTION_PROFILE,
    COLLECTION_TYPE_EXTENSION,
    CONSENT_WITHDRAWN_EXTENSION,
    CUSTODIAN_EXTENSION,
    DATA_USE_EXTENSION,
    DESCRIPTION_EXTENSION,
    GENDERS,
    ICD10_SYSTEMS,
    MATERIALS,
    ORPHA_SYSTEM,
    SAMPLE_DIAGNOSIS_EXTENSION,
    STORAGE_TEMPERATURE_EXTENSION,
)
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

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 500
# Patients fetched per request when re-reading those whose conditions changed.
PATIENT_CHUNK = 50

# A FHIR date with day precision (birthDate may also be a year or a year-month).
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Gaseous nitrogen is the vapour phase of a liquid nitrogen tank; MIABIS has one code.
TEMPERATURES = {"temperatureGN": "temperatureLN"}
AVAILABILITY = {"available": "available", "unavailable": "unavailable"}
UNAVAILABLE_STATUSES = frozenset({"unsatisfactory"})

# stream -> (resource type, search parameters besides paging and sorting)
SEARCHES: dict[str, tuple[str, dict[str, str]]] = {
    "collections": ("Organization", {"_profile": COLLECTION_PROFILE}),
    "donors": ("Patient", {"_revinclude": "Condition:subject"}),
    "samples": ("Specimen", {}),
}


class FhirConfig(HttpOptions, CodeMappingOptions):
    page_size = fields.Integer(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(1, 10_000))
    sort = fields.Boolean(
        load_default=True, metadata={"description": "ask for _sort=_lastUpdated (oldest first)"}
    )
    history = fields.Boolean(
        load_default=True,
        metadata={"description": "read deletions from <Type>/_history in incremental runs"},
    )
    default_collection = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "collection of specimens without a Custodian extension"},
    )
    values = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.String()),
        load_default=dict,
        metadata={"description": "per canonical field, source code -> canonical code"},
    )


def search_request(stream: str, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The first request of a full read of `stream` (a recorder answers exactly this)."""
    resource, params = SEARCHES[stream]
    request: dict[str, Any] = {**params, "_count": config.get("page_size", DEFAULT_PAGE_SIZE)}
    if config.get("sort", True):
        request["_sort"] = "_lastUpdated"
    return resource, request


class FhirConnector(HttpConnector):
    """FHIR R4 with the BBMRI.de profiles: Organization, Patient + Condition, Specimen."""

    name = "fhir"
    description = "FHIR R4 server (BBMRI.de profiles): Patient, Condition, Specimen"
    config_schema = FhirConfig
    streams = (
        Stream("collections", "collection", replication_key="meta.lastUpdated"),
        Stream("donors", "donor", replication_key="meta.lastUpdated"),
        Stream("samples", "sample", replication_key="meta.lastUpdated"),
    )

    # --- pulling ---------------------------------------------------------------------------

    def pull(self, stream: Stream, state: Mapping[str, Any] | None) -> Iterator[PulledItem]:
        """Pages of the stream's search from the bookmark (`since`) or a saved `next` link."""
        state = dict(state or {})
        since: str | None = state.get("since")
        high: str | None = state.get("high", since)
        seen: set[str] = set()
        page = self._resume(state.get("next"))
        # Matches read and the Bundle.total announced, carried through checkpoints so a
        # resumed read is checked as a whole.
        read, total = int(state.get("read", 0)), state.get("total")
        resource_type = SEARCHES[stream.name][0]
        if page is None:
            _, params = search_request(stream.name, self.config)
            if since:
                params["_lastUpdated"] = f"ge{since}"
            page = self.source.get(resource_type, params)
            read, total = 0, _total(page.body)
        while True:
            matches, included = _entries(page, stream)
            conditions = _conditions_by_patient(included)
            read += len(matches)
            for resource in matches:
                high = later(high, _last_updated(resource))
                ident = str(resource.get("id") or "")
                seen.add(ident)
                payload = dict(resource)
                if stream.name == "donors":
                    payload["_conditions"] = conditions.get(ident, [])
                yield SourceRecord(
                    stream.name, ident or None, payload, f"{resource.get('resourceType')}/{ident}"
                )
            link = _next_link(page.body)
            if link is None:
                break
            yield Checkpoint(
                stream.name,
                {"since": since, "high": high, "next": link, "read": read, "total": total},
            )
            page = self.source.get(link)
        if total is None:
            self.note(
                f"{resource_type}: the server does not report Bundle.total; completeness "
                "rests on its next links alone"
            )
        check_total(f"{self.config['base_url'].rstrip('/')}/{resource_type}", read, total)
        if since:
            if stream.name == "donors":
                yield from self._patients_with_changed_conditions(since, seen)
            if self.config["history"]:
                yield from self._deletions(stream, since)
        yield Checkpoint(stream.name, {"since": high})

    def _resume(self, link: str | None) -> Page | None:
        if not link:
            return None
        try:
            return self.source.get(link)
        except SourceError as err:
            if err.status not in (404, 410):
                raise
            # The server forgot its paging state: read again from the bookmark (the records
            # already staged are simply replaced).
            log.warning("%s: saved page link expired (HTTP %s); restarting", self.name, err.status)
            return None

    def _patients_with_changed_conditions(self, since: str, seen: set[str]) -> Iterator[PulledItem]:
        """A changed Condition does not touch its Patient's lastUpdated: re-read those."""
        changed: list[str] = []
        page: Page | None = self.source.get(
            "Condition",
            {
                "_lastUpdated": f"ge{since}",
                "_count": self.config["page_size"],
                "_elements": "subject",
            },
        )
        while page is not None:
            for condition in _resources(page.body):
                patient = _reference_id(condition.get("subject"))
                if patient and patient not in seen and patient not in changed:
                    changed.append(patient)
            link = _next_link(page.body)
            page = self.source.get(link) if link else None
        for start in range(0, len(changed), PATIENT_CHUNK):
            chunk = changed[start : start + PATIENT_CHUNK]
            found = self.source.get(
                "Patient", {"_id": ",".join(chunk), "_revinclude": "Condition:subject"}
            )
            matches, included = _entries(found, self.streams[1])
            conditions = _conditions_by_patient(included)
            for resource in matches:
                ident = str(resource.get("id") or "")
                seen.add(ident)
                yield SourceRecord(
                    "donors",
                    ident or None,
                    {**resource, "_conditions": conditions.get(ident, [])},
                    f"Patient/{ident}",
                )

    def _deletions(self, stream: Stream, since: str) -> Iterator[PulledItem]:
        """Tombstones from the type's history: the newest entry per id, when it is a DELETE."""
        resource = SEARCHES[stream.name][0]
        decided: set[str] = set()
        try:
            page: Page | None = self.source.get(
                f"{resource}/_history", {"_since": since, "_count": self.config["page_size"]}
            )
        except SourceError as err:
            if err.status in (400, 404, 405, 501):
                log.warning(
                    "%s: %s/_history is not supported (HTTP %s): deletions are found by full "
                    "syncs only",
                    self.name,
                    resource,
                    err.status,
                )
                return
            raise
        while page is not None:
            for entry in page.body.get("entry") or ():
                request = entry.get("request") or {}
                ident = str(request.get("url") or entry.get("fullUrl") or "").rstrip("/")
                ident = ident.split("/_history", 1)[0].rsplit("/", 1)[-1]
                if not ident or ident in decided:
                    continue
                decided.add(ident)  # history is newest first: the first entry decides
                if str(request.get("method", "")).upper() == "DELETE":
                    yield Tombstone(stream.name, ident, f"{resource}/{ident}")
            link = _next_link(page.body)
            page = self.source.get(link) if link else None

    # --- mapping ---------------------------------------------------------------------------

    def map(self, record: SourceRecord) -> dict[str, Any]:
        """BBMRI.de resources to canonical fields; codes that cannot be mapped are rejected."""
        resource = record.payload
        expected = SEARCHES[record.stream][0]
        if resource.get("resourceType") != expected:
            raise RecordRejected("resourceType", resource.get("resourceType"), f"not {expected}")
        if record.stream == "collections":
            return self._collection(resource)
        if record.stream == "donors":
            return self._donor(resource)
        return self._sample(resource)

    @functools.cached_property
    def mapper(self) -> CodeMapper:
        """The code mapping options every connector shares (connectors.mapping)."""
        return CodeMapper(self.config)

    def _recode(self, field: str, value: str) -> str:
        recoded: str = self.config["values"].get(field, {}).get(value, value)
        return recoded

    def _collection(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": resource.get("id"),
            "name": resource.get("name"),
            "description": _extension_value(resource, DESCRIPTION_EXTENSION),
            "types": [
                self._recode("types", code)
                for code in _extension_codes(resource, COLLECTION_TYPE_EXTENSION)
            ],
        }
        consent = _extension_value(resource, DATA_USE_EXTENSION)
        if consent:
            mapped["default_consent"] = consent
        return mapped

    def _donor(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        gender = resource.get("gender")
        if gender is None:
            raise RecordRejected("gender", None, "a Patient needs a gender (`unknown` if so)")
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": resource.get("id"),
            "sex": self._recode("sex", self.mapper.sex(str(gender), GENDERS)),
        }
        birth = resource.get("birthDate")
        if birth:
            mapped["birth_year"] = str(birth)[:4]
            if _FULL_DATE.match(str(birth)):
                mapped["birth_date"] = str(birth)
        terms: list[tuple[str, str, str]] = []
        orpha: list[str] = []
        for condition in resource.get("_conditions") or ():
            where = f"Condition/{condition.get('id')}.code"
            for coding in (condition.get("code") or {}).get("coding") or ():
                system, code = coding.get("system"), coding.get("code")
                if not code:
                    continue
                mapped_key = f"{system}|{code}"
                if system in ICD10_SYSTEMS:
                    terms.append((where, str(code), str(code)))
                elif system == ORPHA_SYSTEM:
                    orpha.append(f"ORPHA:{code}")
                elif mapped_key in self.mapper.diseases or str(code) in self.mapper.diseases:
                    source = mapped_key if mapped_key in self.mapper.diseases else str(code)
                    terms.append((where, source, mapped_key))
        dropped: list[dict[str, Any]] = []
        mapped["diagnoses"] = list(dict.fromkeys(self.mapper.diagnoses(terms, dropped)))
        mapped["orpha"] = list(dict.fromkeys(orpha))
        consent = _extension_value(resource, DATA_USE_EXTENSION)
        if consent:
            mapped["consent"] = (
                self.mapper.consent(consent) if isinstance(consent, str) else consent
            )
        withdrawn = _extension_value(resource, CONSENT_WITHDRAWN_EXTENSION)
        if withdrawn is not None:
            mapped["consent_withdrawn"] = withdrawn
        return with_dropped(mapped, dropped)

    def _sample(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        status = resource.get("status")
        if status == "entered-in-error":
            raise RecordRejected("status", status, "the source marks this specimen as an error")
        material = _first_code(resource.get("type"))
        mapped: dict[str, Any] = {
            "biobank_id": self.biobank_id,
            "id": resource.get("id"),
            "donor_id": _reference_id(resource.get("subject")),
            "collection_id": _reference_id(_extension_value(resource, CUSTODIAN_EXTENSION))
            or self.config["default_collection"],
            "material_type": self._recode(
                "material_type", self.mapper.material(material, MATERIALS)
            )
            if material
            else None,
        }
        collected = (resource.get("collection") or {}).get("collectedDateTime")
        if collected:
            mapped["collection_date"] = str(collected)[:10]
        temperature = next(iter(_extension_codes(resource, STORAGE_TEMPERATURE_EXTENSION)), None)
        if temperature:
            mapped["storage_temperature"] = self._recode(
                "storage_temperature", TEMPERATURES.get(temperature, temperature)
            )
        terms = [
            (f"extension[SampleDiagnosis][{n}]", str(coding["code"]), str(coding["code"]))
            for n, ext in enumerate(_extensions(resource, SAMPLE_DIAGNOSIS_EXTENSION))
            for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or ()
            if coding.get("system") in ICD10_SYSTEMS and coding.get("code")
        ]
        dropped: list[dict[str, Any]] = []
        mapped["diagnoses"] = self.mapper.diagnoses(terms, dropped)
        if status:
            mapped["availability"] = (
                "unavailable"
                if status in UNAVAILABLE_STATUSES
                else AVAILABILITY.get(str(status), str(status))
            )
        updated = (resource.get("meta") or {}).get("lastUpdated")
        if updated:
            mapped["last_updated"] = updated
        return with_dropped({k: v for k, v in mapped.items() if v is not None}, dropped)


# --- reading bundles -----------------------------------------------------------------------


def _entries(page: Page, stream: Stream) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The page's matches and its included resources; a page that is not a Bundle fails."""
    bundle = page.body
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        kind = bundle.get("resourceType") if isinstance(bundle, Mapping) else type(bundle).__name__
        raise SourceError(f"{page.url}: expected a FHIR Bundle, got {kind}", retriable=True)
    expected = SEARCHES[stream.name][0]
    matches, included = [], []
    for entry in bundle.get("entry") or ():
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            continue
        mode = (entry.get("search") or {}).get("mode")
        if mode == "include" or resource.get("resourceType") != expected:
            included.append(resource)
        elif mode != "outcome":
            matches.append(resource)
    return matches, included


def _total(bundle: Any) -> int | None:
    """A searchset Bundle's `total` (the number of matches, includes not counted)."""
    total = bundle.get("total") if isinstance(bundle, Mapping) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def _resources(bundle: Any) -> list[Mapping[str, Any]]:
    if not isinstance(bundle, Mapping):
        return []
    return [e["resource"] for e in bundle.get("entry") or () if isinstance(e.get("resource"), dict)]


def _conditions_by_patient(
    included: list[Mapping[str, Any]],
) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for resource in included:
        if resource.get("resourceType") == "Condition":
            patient = _reference_id(resource.get("subject"))
            if patient:
                out.setdefault(patient, []).append(resource)
    return out


def _next_link(bundle: Any) -> str | None:
    for link in bundle.get("link") or () if isinstance(bundle, Mapping) else ():
        if link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def _reference_id(reference: Any) -> str | None:
    """`Patient/12`, `http://x/fhir/Organization/c-2` or {"reference": ...} -> the id."""
    if isinstance(reference, Mapping):
        reference = reference.get("reference")
    if not reference:
        return None
    return str(reference).rstrip("/").split("/_history", 1)[0].rsplit("/", 1)[-1] or None


def _extensions(resource: Mapping[str, Any], url: str) -> list[Mapping[str, Any]]:
    return [e for e in resource.get("extension") or () if e.get("url") == url]


def _extension_value(resource: Mapping[str, Any], url: str) -> Any:
    for ext in _extensions(resource, url):
        for key, value in ext.items():
            if key.startswith("value"):
                return value
    return None


def _extension_codes(resource: Mapping[str, Any], url: str) -> list[str]:
    return [
        code
        for ext in _extensions(resource, url)
        if (code := _first_code(ext.get("valueCodeableConcept")))
    ]


def _first_code(concept: Any) -> str | None:
    if not isinstance(concept, Mapping):
        return None
    for coding in concept.get("coding") or ():
        if coding.get("code"):
            return str(coding["code"])
    return None


def _last_updated(resource: Mapping[str, Any]) -> str | None:
    value = (resource.get("meta") or {}).get("lastUpdated")
    return str(value) if value else None
