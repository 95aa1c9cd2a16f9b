"""Beacon v2 framework responses: informational endpoints, entry answers and errors.

Counts are the search service's released figures, written in Beacon's terms: a released
number is `numTotalResults` with v2.2's `countPrecision` (exact, rounded, imprecise) and
`countAdjustedTo` (which adjustments of the biobank's rule made it what it is: `roundedTo:N`,
`noiseScale:S`, `minimumCount:K`, `belowMinimumCount:K`, `lowerBound`); a withheld number
is not written at all. Per-biobank figures, with the granularity the role has there, are
in `info.biobanks`: the same figures GraphQL's `byBiobank` gives the same role.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.beacon import API_VERSION, ENTRY_TYPES, BeaconRequestError
from federation.beacon.answer import EntryPage
from federation.beacon.filters import filtering_terms, resources
from federation.beacon.request import BeaconRequest
from federation.disclosure.policy import Granularity, RoleRule
from federation.disclosure.release import total
from federation.disclosure.roles import Role
from federation.search.result import BiobankResult, Count, Precision, SearchResult

MODEL = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/models/json/beacon-v2-default-model"
# entry type -> (schema id, default-model path, name, ontology term for the type)
ENTRY_SCHEMAS: dict[str, tuple[str, str, str, tuple[str, str]]] = {
    "individual": (
        "beacon-individual-v2.0.0",
        "individuals",
        "Individual",
        ("NCIT:C25190", "Person"),
    ),
    "biosample": (
        "beacon-biosample-v2.0.0",
        "biosamples",
        "Biosample",
        ("NCIT:C70699", "Biospecimen"),
    ),
    "dataset": ("beacon-dataset-v2.0.0", "datasets", "Dataset", ("NCIT:C47824", "Data set")),
}
# The roles a Beacon security level stands for: the public, a signed-in researcher, one
# with a data access agreement (an approved access request).
SECURITY_LEVELS = {
    "PUBLIC": Role.ANONYMOUS,
    "REGISTERED": Role.REGISTERED,
    "CONTROLLED": Role.APPROVED,
}
ENVIRONMENTS = ("prod", "test", "dev", "staging")
STATUSES = ("DEV", "TEST", "PROD")
_PRECISIONS = {
    Precision.EXACT: "exact",
    Precision.ROUNDED: "rounded",
    Precision.NOISED: "imprecise",
    Precision.LOWER_BOUND: "imprecise",
    Precision.BELOW_THRESHOLD: "imprecise",
}
_ORDER = list(Granularity)


@dataclass(frozen=True)
class BeaconInfo:
    """Who runs this beacon: the `beacon` settings section (docs/beacon.md)."""

    id: str = "org.biofed.beacon"
    name: str = "Biobank federation Beacon"
    description: str = (
        "Donors and samples of the biobanks of a federation, under each biobank's consent "
        "and disclosure rules"
    )
    environment: str = "dev"
    production_status: str = "DEV"
    organization_id: str = "biofed"
    organization_name: str = "Biobank federation network"
    organization_url: str = "https://github.com/biobank-federation"
    contact_url: str = ""
    welcome_url: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> BeaconInfo:
        """Read the `beacon` settings section; unknown keys and bad values are refused."""
        raw = dict(raw or {})
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - names)
        if unknown:
            raise BeaconRequestError(f"beacon.{unknown[0]}", raw[unknown[0]], "unknown setting")
        info = cls(**{k: str(v) for k, v in raw.items()})
        if info.environment not in ENVIRONMENTS:
            raise BeaconRequestError(
                "beacon.environment", info.environment, f"one of {ENVIRONMENTS}"
            )
        if info.production_status not in STATUSES:
            raise BeaconRequestError(
                "beacon.production_status", info.production_status, f"one of {STATUSES}"
            )
        return info


def _schemas(entry: str) -> list[dict[str, str]]:
    return (
        [{"entityType": entry, "schema": ENTRY_SCHEMAS[entry][0]}] if entry in ENTRY_SCHEMAS else []
    )


def informational_meta(info: BeaconInfo, returned: str = "info") -> dict[str, Any]:
    """`meta` of the informational endpoints."""
    return {
        "beaconId": info.id,
        "apiVersion": API_VERSION,
        "returnedSchemas": [{"entityType": returned, "schema": f"beacon-{returned}-v2.0.0"}],
    }


def response_meta(
    info: BeaconInfo, request: BeaconRequest, entry: str, granularity: str
) -> dict[str, Any]:
    """`meta` of an answer (or an error) to a request."""
    return {
        "beaconId": info.id,
        "apiVersion": API_VERSION,
        "returnedSchemas": _schemas(entry),
        "returnedGranularity": granularity,
        "receivedRequestSummary": request.summary(),
        "testMode": request.test_mode,
    }


def error(info: BeaconInfo, request: BeaconRequest, status: int, message: str) -> dict[str, Any]:
    """A `beaconErrorResponse`."""
    return {
        "meta": response_meta(info, request, "", "boolean"),
        "error": {"errorCode": status, "errorMessage": message},
    }


def beacon_info(info: BeaconInfo) -> dict[str, Any]:
    """`/` and `/info`: a `beaconInfoResponse`."""
    organization: dict[str, Any] = {
        "id": info.organization_id,
        "name": info.organization_name,
        "welcomeUrl": info.organization_url,
    }
    if info.contact_url:
        organization["contactUrl"] = info.contact_url
    response: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "apiVersion": API_VERSION,
        "environment": info.environment,
        "organization": organization,
        "description": info.description,
    }
    if info.welcome_url:
        response["welcomeUrl"] = info.welcome_url
    return {"meta": informational_meta(info), "response": response}


def service_info(info: BeaconInfo) -> dict[str, Any]:
    """`/service-info`: GA4GH service-info 1.0."""
    out: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
        "description": info.description,
        "organization": {"name": info.organization_name, "url": info.organization_url},
        "version": API_VERSION,
        "environment": info.environment,
    }
    if info.contact_url:
        out["contactUrl"] = info.contact_url
    return out


def _entry_type(entry: str) -> dict[str, Any]:
    schema_id, path, name, (term_id, term_label) = ENTRY_SCHEMAS[entry]
    return {
        "id": entry,
        "name": name,
        "ontologyTermForThisType": {"id": term_id, "label": term_label},
        "partOfSpecification": f"Beacon {API_VERSION}",
        "defaultSchema": {
            "id": schema_id,
            "name": f"Default schema for {path}",
            "referenceToSchemaDefinition": f"{MODEL}/{path}/defaultSchema.json",
            "schemaVersion": "v2.0.0",
        },
        "nonFilteredQueriesAllowed": True,
    }


def entry_types(info: BeaconInfo) -> dict[str, Any]:
    """`/entry_types`."""
    types = {entry: _entry_type(entry) for entry in ENTRY_SCHEMAS}
    return {"meta": informational_meta(info, "entry_type"), "response": {"entryTypes": types}}


RuleLookup = Callable[[str, Role], RoleRule]


def security_levels(biobanks: Sequence[str], rule: RuleLookup) -> dict[str, str]:
    """The most a role of each security level gets at any biobank of the network."""
    out = {}
    for level, role in SECURITY_LEVELS.items():
        best = max(
            (rule(b, role).granularity for b in biobanks),
            key=_ORDER.index,
            default=Granularity.NONE,
        )
        out[level] = best.value
    return out


def configuration(info: BeaconInfo, levels: Mapping[str, str]) -> dict[str, Any]:
    """`/configuration`: entry types, maturity and security from the disclosure policy."""
    served = [level for level, granularity in levels.items() if granularity != "none"]
    public = levels.get("PUBLIC", "none")
    return {
        "meta": informational_meta(info, "configuration"),
        "response": {
            "$schema": "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/framework/json/configuration/beaconConfigurationSchema.json",
            "maturityAttributes": {"productionStatus": info.production_status},
            "securityAttributes": {
                "defaultGranularity": public if public != "none" else "boolean",
                "securityLevels": served or ["CONTROLLED"],
            },
            "entryTypes": {entry: _entry_type(entry) for entry in ENTRY_SCHEMAS},
        },
    }


def beacon_map(info: BeaconInfo, root: str, levels: Mapping[str, str]) -> dict[str, Any]:
    """`/map`: each entry type's endpoint, with the security level it answers from."""
    lowest = next((level for level, g in levels.items() if g != "none"), "CONTROLLED")
    sets: dict[str, Any] = {}
    for path, entry in ENTRY_TYPES.items():
        endpoint: dict[str, Any] = {
            "entryType": entry,
            "rootUrl": f"{root}/{path}",
            "filteringTermsUrl": f"{root}/filtering_terms",
        }
        if entry == "dataset":
            # The catalogue of collections, public as GraphQL's `collections` is.
            endpoint["singleEntryUrl"] = f"{root}/datasets/{{id}}"
            endpoint["securityLevel"] = "PUBLIC"
            endpoint["granularityBySecurityLevel"] = dict.fromkeys(SECURITY_LEVELS, "record")
        else:
            endpoint["securityLevel"] = lowest
            endpoint["granularityBySecurityLevel"] = dict(levels)
        sets[entry] = endpoint
    return {
        "meta": informational_meta(info, "map"),
        "response": {
            "$schema": "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/framework/json/configuration/beaconMapSchema.json",
            "endpointSets": sets,
        },
    }


def filtering_terms_response(info: BeaconInfo, skip: int, limit: int | None) -> dict[str, Any]:
    """`/filtering_terms`: everything the filters accept (all of it unless `limit` is given)."""
    terms = filtering_terms()
    if limit:
        terms = terms[skip * limit : (skip + 1) * limit]
    return {
        "meta": informational_meta(info, "filtering_terms"),
        "response": {"filteringTerms": list(terms), "resources": resources()},
    }


# --- answers ------------------------------------------------------------------------------


def adjustments(count: Count, rule: RoleRule) -> list[str]:
    """`countAdjustedTo` of one biobank's released figure: what its rule did to it."""
    if count.precision is Precision.BELOW_THRESHOLD:
        return [f"belowMinimumCount:{rule.min_count}"]
    if count.precision not in (Precision.ROUNDED, Precision.NOISED):
        return []
    out = []
    if rule.noise > 0:
        out.append(f"noiseScale:{rule.noise:g}")
    if rule.rounding > 1:
        out.append(f"roundedTo:{rule.rounding}")
    if rule.min_count > 1:
        out.append(f"minimumCount:{rule.min_count}")
    return out


def _figure(count: Count, adjusted: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"exists": _exists(count)}
    if count.value is not None:
        out["numTotalResults"] = count.value
    if count.precision in _PRECISIONS:
        out["countPrecision"] = _PRECISIONS[count.precision]
    if adjusted:
        out["countAdjustedTo"] = list(adjusted)
    return out


def _exists(count: Count) -> bool:
    if count.value is not None:
        return count.value > 0
    return bool(count.exists) or count.precision is Precision.BELOW_THRESHOLD


@dataclass(frozen=True)
class Released:
    """One entry type's released figures: the total and each biobank's, with the rules."""

    total: Count
    rows: tuple[tuple[BiobankResult, Count, RoleRule], ...]

    @classmethod
    def of(cls, result: SearchResult, entry: str, rule: Callable[[str], RoleRule]) -> Released:
        donors = entry == "individual"
        return cls(
            result.donors if donors else result.samples,
            # Collection-level biobanks declare sizes and hold no records a Beacon returns:
            # their declared figures are never part of a Beacon count.
            tuple(
                (row, row.donors if donors else row.samples, rule(row.biobank_id))
                for row in result.by_biobank
                if not row.declared_only
            ),
        )

    def exists(self) -> bool:
        return _exists(self.total) or any(_exists(c) for _, c, _ in self.rows)

    def summary(self, granularity: str) -> dict[str, Any]:
        """`responseSummary` at the granularity returned.

        With records, the total is that of the biobanks whose records are returned (a sum
        of their released figures, as every total is), so it counts what can be paged.
        """
        if granularity == "boolean":
            return {"exists": self.exists()}
        rows = self.rows
        figure = self.total
        if granularity == "record":
            rows = tuple(r for r in rows if r[2].granularity is Granularity.RECORD)
            figure = total(count for _, count, _ in rows)
        adjusted: list[str] = []
        for _, count, rule in rows:
            adjusted.extend(a for a in adjustments(count, rule) if a not in adjusted)
        if figure.precision is Precision.LOWER_BOUND:
            adjusted.append("lowerBound")
        out = _figure(figure, adjusted)
        out["exists"] = self.exists() if granularity != "record" else _exists(figure)
        return out

    def biobanks(self, granularity: str) -> list[dict[str, Any]]:
        """`info.biobanks`: each biobank's figure as its rule for this role releases it."""
        out = []
        for row, count, rule in self.rows:
            item: dict[str, Any] = {"id": row.biobank_id, "granularity": rule.granularity.value}
            if granularity == "boolean" or rule.granularity is Granularity.BOOLEAN:
                item["exists"] = _exists(count)
            else:
                item.update(_figure(count, adjustments(count, rule)))
            if count.reason:
                item["reason"] = count.reason
            out.append(item)
        return out


def returned_granularity(request: BeaconRequest, released: Released, page: EntryPage) -> str:
    """The granularity an answer truly has: never more than asked or than the role gets."""
    if request.granularity == "boolean":
        return "boolean"
    if request.granularity == "record" and page.records is not None:
        return "record"
    return "count" if released.total.value is not None else "boolean"


def entry_response(
    info: BeaconInfo,
    request: BeaconRequest,
    entry: str,
    page: EntryPage,
    rule: Callable[[str], RoleRule],
) -> dict[str, Any]:
    """The answer to an individuals or biosamples request."""
    released = Released.of(page.result, entry, rule)
    granularity = returned_granularity(request, released, page)
    body: dict[str, Any] = {
        "meta": response_meta(info, request, entry, granularity),
        "responseSummary": released.summary(granularity),
    }
    extra: dict[str, Any] = {"biobanks": released.biobanks(granularity)}
    if granularity == "record":
        assert page.records is not None
        body["response"] = {"resultSets": _result_sets(request, page.records)}
        extra["hasMoreResults"] = page.has_more
    elif request.granularity == "record":
        extra["recordsNote"] = page.result.records_note or "your role may not see records"
    if page.result.records_note and granularity == "record":
        extra["recordsNote"] = page.result.records_note
    body["info"] = extra
    return body


def _result_sets(
    request: BeaconRequest, records: Sequence[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    if request.include_resultsets in ("MISS", "NONE"):
        return []  # only result sets with hits are ever built
    by_set: dict[str, list[dict[str, Any]]] = {}
    for dataset_id, document in records:
        by_set.setdefault(dataset_id, []).append(document)
    return [
        {
            "id": dataset_id,
            "setType": "dataset",
            "exists": True,
            # The records of this set on this page; the released totals are in the summary.
            "resultsCount": len(documents),
            "results": documents,
        }
        for dataset_id, documents in by_set.items()
    ]


def datasets_response(
    info: BeaconInfo, request: BeaconRequest, datasets: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """`/datasets`: the catalogue of collections, paged."""
    window = list(datasets[request.offset : request.offset + request.limit])
    granularity = request.granularity
    body: dict[str, Any] = {
        "meta": response_meta(info, request, "dataset", granularity),
        "responseSummary": {"exists": bool(datasets)},
        "response": {"collections": window if granularity == "record" else []},
    }
    if granularity != "boolean":
        body["responseSummary"]["numTotalResults"] = len(datasets)
        body["responseSummary"]["countPrecision"] = "exact"
    return body
