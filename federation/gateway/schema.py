"""The public GraphQL schema: types, descriptions and thin resolvers over the search service.

Resolvers parse arguments, call one service function and convert its dataclasses; the
search service owns the logic. A count is never a bare integer: it is a `Count` that says
how precise it is, because disclosure rules may round, noise or withhold it.
"""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import graphene
from graphql import GraphQLObjectType, GraphQLResolveInfo, get_argument_values, get_named_type
from graphql.execution.collect_fields import collect_sub_fields

from federation.consent import ResearchPurpose as ResearchPurposeData
from federation.disclosure.roles import Identity
from federation.disclosure.roles import Role as RoleData
from federation.gateway.audit import (
    DEFAULT_AUDIT_PAGE,
    AuditEntry,
    AuditPage,
    BadAuditCursor,
    record_search,
)
from federation.gateway.auth import require_admin, require_operator, require_signed_in
from federation.gateway.context import GatewayContext
from federation.gateway.errors import UserInputError, bad_input, camel
from federation.model import duo, icd10
from federation.model.records import ConsentField
from federation.search.query import (
    DEFAULT_PAGE_SIZE,
    FACETS,
    MAX_PAGE_SIZE,
    BadQuery,
    PageRequest,
    SampleQuery,
)
from federation.search.result import BiobankResult as BiobankResultData
from federation.search.result import Count as CountResult
from federation.search.result import Facet as FacetResult
from federation.search.result import OutcomeCounts as OutcomeCountsData
from federation.search.result import Precision as PrecisionData
from federation.search.result import RecordConnection
from federation.search.result import SearchResult as SearchResultData
from federation.settings import BiobankSource
from federation.sync.state import QuarantinedRecord as QuarantinedRecordData
from federation.sync.state import SyncRun as SyncRunData

DEFAULT_DISEASE_MATCHES = 10
DEFAULT_SYNC_RUNS = 20
DEFAULT_QUARANTINE_PAGE = 50

# Where a BadQuery raised by `SearchService.search` points in the GraphQL request: the
# service names its own parameters, the client knows the fields of SearchResult.
_SEARCH_ARGUMENTS = {"facets": "facets.names", "first": "records.first", "after": "records.after"}


def _context(info: GraphQLResolveInfo) -> GatewayContext:
    context = info.context
    assert isinstance(context, GatewayContext)
    return context


def _strings(description: str) -> graphene.List:
    return graphene.List(graphene.NonNull(graphene.String), required=True, description=description)


# --- parents: what resolvers of each type receive ------------------------------------------


@dataclass(frozen=True)
class SearchAnswer:
    """One search's result plus what is needed to fetch a page nobody planned for."""

    query: SampleQuery
    result: SearchResultData
    page: PageRequest | None
    purpose: ResearchPurposeData | None = None


@dataclass(frozen=True)
class BiobankNode:
    """A biobank by id, with its entry in the network file when the file lists it."""

    # `source` is None while the index still serves a biobank that has left the network
    # file: its counts stay visible, named by id, until it is removed from the index.

    id: str
    source: BiobankSource | None


@dataclass(frozen=True)
class CollectionNode:
    biobank_id: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class DiseaseNode:
    code: str
    name: str
    language: str


def _biobank_node(context: GatewayContext, biobank_id: str) -> BiobankNode:
    return BiobankNode(biobank_id, context.biobank(biobank_id))


def _collections(context: GatewayContext, biobank_id: str) -> list[CollectionNode]:
    info = context.generations().get(biobank_id)
    if info is None:
        return []
    return [CollectionNode(biobank_id, c) for c in info.metadata.get("collections", ())]


def _check_range(argument: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UserInputError(argument, value, f"must be {limit}")


# --- counts -------------------------------------------------------------------------------

_PRECISION_DESCRIPTIONS = {
    "exact": "The true number.",
    "rounded": "Rounded to the step the biobank's disclosure policy sets.",
    "noised": "The true number plus noise that is fixed for this query and biobank, so "
    "repeating the query does not average it away.",
    "below_threshold": "Fewer than the biobank's minimum count but more than zero; the "
    "number itself is withheld.",
    "boolean": "Only whether there are any matches may be told; the number is withheld.",
    "lower_bound": "A total that leaves out withheld counts: the true number is at least this.",
    "hidden": "Withheld: your role may not see counts for this biobank.",
}


def _precision_description(member: PrecisionData | None) -> str:
    if member is None:
        return "How a released count relates to the true number of donors or samples."
    return _PRECISION_DESCRIPTIONS.get(member.value, member.value.replace("_", " "))


# Built from the result model's enum, so a precision the disclosure code adds cannot be
# released without appearing here (and, through the SDL test, in schema/schema.graphql).
Precision = graphene.Enum.from_enum(PrecisionData, description=_precision_description)


class Count(graphene.ObjectType):
    class Meta:
        description = (
            "A released count of donors or samples. `value` is null when the number is "
            "withheld; `precision` always says how the value relates to the true number."
        )

    value = graphene.Int(description="The released number, or null when it is withheld.")
    precision = graphene.Field(
        Precision, required=True, description="Exact, rounded, noised or withheld, and how."
    )
    reason = graphene.String(
        description="Why the count is not exact (for example the biobank's minimum count)."
    )
    exists = graphene.Boolean(
        description="Whether there are any matches, when only that may be told (precision "
        "BOOLEAN); null otherwise."
    )

    @staticmethod
    def resolve_precision(parent: CountResult, info: GraphQLResolveInfo) -> PrecisionData:
        return parent.precision


# --- biobanks and collections -------------------------------------------------------------


class Collection(graphene.ObjectType):
    class Meta:
        description = "A collection of samples held by a biobank, such as a disease cohort."

    id = graphene.ID(required=True, description="The collection's id, unique within its biobank.")
    biobank = graphene.Field(
        lambda: Biobank, required=True, description="The biobank that holds the collection."
    )
    name = graphene.String(required=True, description="The collection's name.")
    types = _strings("MIABIS collection types, such as DISEASE_SPECIFIC or POPULATION_BASED.")
    description = graphene.String(description="What the collection is, in the biobank's words.")
    default_consent = graphene.String(
        description="The GA4GH DUO consent that applies to donors without their own consent "
        "record, written as DUO shorthand (for example `DS(C50);NCU`)."
    )

    @staticmethod
    def resolve_id(parent: CollectionNode, info: GraphQLResolveInfo) -> str:
        return str(parent.data["id"])

    @staticmethod
    def resolve_biobank(parent: CollectionNode, info: GraphQLResolveInfo) -> BiobankNode:
        return _biobank_node(_context(info), parent.biobank_id)

    @staticmethod
    def resolve_name(parent: CollectionNode, info: GraphQLResolveInfo) -> str:
        return str(parent.data["name"])

    @staticmethod
    def resolve_types(parent: CollectionNode, info: GraphQLResolveInfo) -> list[str]:
        return list(parent.data.get("types") or ())

    @staticmethod
    def resolve_description(parent: CollectionNode, info: GraphQLResolveInfo) -> str | None:
        return parent.data.get("description")

    @staticmethod
    def resolve_default_consent(parent: CollectionNode, info: GraphQLResolveInfo) -> str | None:
        terms = parent.data.get("default_consent")
        if not terms:
            return None
        consent = ConsentField().deserialize(terms)
        return consent.to_text() if isinstance(consent, duo.Consent) else None


class Biobank(graphene.ObjectType):
    class Meta:
        description = "A biobank of the network: who holds the samples and how to reach them."

    id = graphene.ID(required=True, description="The biobank's id in this network.")
    name = graphene.String(required=True, description="The biobank's name in English.")
    name_ja = graphene.String(description="The biobank's name in Japanese, when it has one.")
    country = graphene.String(
        description="ISO 3166 country code; null only for a biobank that has left the network "
        "while its samples are still being served."
    )
    url = graphene.String(description="The biobank's web site.")
    contact_email = graphene.String(description="Where to ask about access to samples.")
    description = graphene.String(description="What the biobank holds, in its own words.")
    kind = graphene.String(
        description="The kind of biobank (for example population or disease-oriented), as "
        "the network operator records it."
    )
    collections = graphene.List(
        graphene.NonNull(Collection),
        required=True,
        description="The biobank's collections as of its last published data.",
    )
    last_published = graphene.String(
        description="When the biobank's searchable data was last published (ISO 8601); null "
        "when it has never been published."
    )

    @staticmethod
    def resolve_name(parent: BiobankNode, info: GraphQLResolveInfo) -> str:
        return parent.source.biobank.name if parent.source else parent.id

    @staticmethod
    def resolve_name_ja(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.name_ja if parent.source else None

    @staticmethod
    def resolve_country(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.country if parent.source else None

    @staticmethod
    def resolve_url(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.url if parent.source else None

    @staticmethod
    def resolve_contact_email(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.contact_email if parent.source else None

    @staticmethod
    def resolve_description(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.description if parent.source else None

    @staticmethod
    def resolve_kind(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return (parent.source.kind or None) if parent.source else None

    @staticmethod
    def resolve_collections(parent: BiobankNode, info: GraphQLResolveInfo) -> list[CollectionNode]:
        return _collections(_context(info), parent.id)

    @staticmethod
    def resolve_last_published(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        published = _context(info).generations().get(parent.id)
        return published.published_at if published else None


# --- diseases -----------------------------------------------------------------------------


class DiseaseKind(graphene.Enum):
    class Meta:
        description = "The level of an ICD-10 item in the WHO hierarchy."

    CHAPTER = "chapter"
    BLOCK = "block"
    CATEGORY = "category"
    SUBCATEGORY = "subcategory"


class Disease(graphene.ObjectType):
    class Meta:
        description = (
            "A WHO ICD-10 (2019) item: a chapter, block, category or subcategory. Searching "
            "for an item also finds everything beneath it."
        )

    code = graphene.String(
        required=True, description="The WHO code, such as `C50`, `C50.9`, `C50-C50` or `II`."
    )
    name = graphene.String(required=True, description="The name that matched, in `language`.")
    language = graphene.String(required=True, description="The language of `name` (`en`, `ja`).")
    kind = graphene.Field(DiseaseKind, required=True, description="The level in the hierarchy.")
    chapter = graphene.String(required=True, description="The chapter the item belongs to.")
    ancestors = _strings("The items above this one, nearest first, ending with the chapter.")

    @staticmethod
    def resolve_kind(parent: DiseaseNode, info: GraphQLResolveInfo) -> str:
        return icd10.kind(parent.code)

    @staticmethod
    def resolve_chapter(parent: DiseaseNode, info: GraphQLResolveInfo) -> str:
        return icd10.chapter(parent.code)

    @staticmethod
    def resolve_ancestors(parent: DiseaseNode, info: GraphQLResolveInfo) -> list[str]:
        return list(icd10.ancestors(parent.code))


# --- search -------------------------------------------------------------------------------


class SampleQueryInput(graphene.InputObjectType):
    class Meta:
        name = "SampleQuery"
        description = (
            "What to look for. Values within one field are alternatives (any may match); "
            "different fields must all match."
        )

    diseases = graphene.List(
        graphene.NonNull(graphene.String),
        description="ICD-10 codes in any common spelling (`C50`, `C509`, `icd10:C50.9`, a "
        "block such as `C00-C97` or a chapter such as `II`); each finds everything beneath it.",
    )
    text = graphene.String(
        description="Disease words in English or Japanese (for example `breast cancer`), "
        "matched against ICD-10 names; `textDiseases` shows the codes they found."
    )
    materials = graphene.List(
        graphene.NonNull(graphene.String),
        description="MIABIS material types, such as PLASMA, SERUM, DNA or TISSUE_FROZEN.",
    )
    sexes = graphene.List(
        graphene.NonNull(graphene.String), description="Donor sex: FEMALE, MALE, ..."
    )
    age_min = graphene.Int(description="Youngest age of the donor at sample collection, in years.")
    age_max = graphene.Int(description="Oldest age of the donor at sample collection, in years.")
    biobanks = graphene.List(
        graphene.NonNull(graphene.ID), description="Only these biobanks (by id)."
    )
    collection_types = graphene.List(
        graphene.NonNull(graphene.String),
        description="MIABIS collection types, such as DISEASE_SPECIFIC or POPULATION_BASED.",
    )
    data_categories = graphene.List(
        graphene.NonNull(graphene.String),
        description="Data that must be available with the sample, such as GENOMIC_DATA.",
    )


class BiobankResult(graphene.ObjectType):
    class Meta:
        description = "How many matching donors and samples one biobank holds."

    biobank = graphene.Field(Biobank, required=True, description="The biobank.")
    donors = graphene.Field(Count, required=True, description="Matching donors in this biobank.")
    samples = graphene.Field(Count, required=True, description="Matching samples in this biobank.")
    access = graphene.Field(
        lambda: Access,
        required=True,
        description="What your role may see of this biobank's answer, and why.",
    )
    consent = graphene.List(
        graphene.NonNull(lambda: OutcomeCounts),
        description="With a declared purpose: the matches split by what their donors' consent "
        "says about that purpose (permitted, conditional, not permitted); null without one.",
    )

    @staticmethod
    def resolve_biobank(parent: BiobankResultData, info: GraphQLResolveInfo) -> BiobankNode:
        return _biobank_node(_context(info), parent.biobank_id)


class Access(graphene.ObjectType):
    class Meta:
        description = (
            "How a biobank's disclosure policy applies to you: your role toward that biobank, "
            "the granularity it releases to that role, and the rules in words."
        )

    role = graphene.String(
        required=True,
        description="anonymous, registered, approved, biobank_admin or network_operator.",
    )
    granularity = graphene.String(
        required=True, description="none, boolean, count or record: the most you may see."
    )
    explanation = graphene.String(
        required=True, description="The minimum count, rounding and noise that apply, in words."
    )


class ConsentOutcome(graphene.Enum):
    class Meta:
        description = "What a donor's GA4GH DUO consent says about the declared purpose."

    PERMITTED = "permitted"
    CONDITIONAL = "conditional"
    NOT_PERMITTED = "not_permitted"


class OutcomeCounts(graphene.ObjectType):
    class Meta:
        description = "Matching donors and samples whose consent gives one outcome."

    outcome = graphene.Field(ConsentOutcome, required=True, description="The consent outcome.")
    donors = graphene.Field(Count, required=True, description="Donors with this outcome.")
    samples = graphene.Field(Count, required=True, description="Samples with this outcome.")

    @staticmethod
    def resolve_outcome(parent: OutcomeCountsData, info: GraphQLResolveInfo) -> str:
        return parent.outcome


class Obligation(graphene.ObjectType):
    class Meta:
        description = (
            "A condition the donor's consent sets on the declared purpose, such as "
            "collaboration (COL) or a publication moratorium (MOR)."
        )

    code = graphene.String(required=True, description="The DUO modifier's shorthand.")
    description = graphene.String(required=True, description="What it asks of you.")
    until = graphene.String(description="For a moratorium (MOR): the date it ends.")


class PurposeKind(graphene.Enum):
    class Meta:
        description = "What the research is for, in the categories DUO consent distinguishes."

    DISEASE = "disease"
    HEALTH = "health"
    ANCESTRY = "ancestry"
    METHODS = "methods"
    GENERAL = "general"
    CLINICAL_CARE = "clinical_care"


class ResearchPurposeInput(graphene.InputObjectType):
    class Meta:
        name = "ResearchPurpose"
        description = (
            "What you will use the samples for. Each donor's GA4GH DUO consent is matched "
            "against it inside the search: counts are split by outcome, and records come only "
            "from donors whose consent permits the purpose, with their conditions."
        )

    kind = graphene.Field(PurposeKind, required=True, description="The kind of research.")
    diseases = graphene.List(
        graphene.NonNull(graphene.String),
        description="ICD-10 codes the research is about (required for DISEASE; for METHODS, "
        "the disease scope).",
    )
    commercial = graphene.Boolean(default_value=False, description="Commercial use.")
    for_profit = graphene.Boolean(
        default_value=False, description="Your organisation is for-profit."
    )
    country = graphene.String(description="Where the research is done (ISO 3166 code).")
    ethics_approval = graphene.Boolean(
        default_value=False, description="You hold ethics (IRB/ERB) approval for this use."
    )
    genetic = graphene.Boolean(default_value=False, description="The study is genetic.")


class FacetBucket(graphene.ObjectType):
    class Meta:
        description = "One value of a facet and how many matching donors and samples have it."

    key = graphene.String(required=True, description="The value as a code, for filtering.")
    label = graphene.String(required=True, description="The value as a person reads it.")
    donors = graphene.Field(Count, required=True, description="Matching donors with this value.")
    samples = graphene.Field(Count, required=True, description="Matching samples with this value.")


class Facet(graphene.ObjectType):
    class Meta:
        description = (
            "A breakdown of the matches by one property. Each facet ignores the query's own "
            "filter on that property, so its buckets show the alternatives too."
        )

    name = graphene.String(required=True, description=f"The facet: one of {', '.join(FACETS)}.")
    buckets = graphene.List(
        graphene.NonNull(FacetBucket),
        required=True,
        description="The values found, most samples first.",
    )


class SampleRecord(graphene.ObjectType):
    class Meta:
        description = "One sample and what is known about its donor, as the biobank released it."

    sample_id = graphene.ID(required=True, description="The sample's id at its biobank.")
    biobank_id = graphene.ID(required=True, description="The id of the biobank holding it.")
    biobank = graphene.Field(Biobank, required=True, description="The biobank holding it.")
    collection_id = graphene.ID(required=True, description="The collection it belongs to.")
    donor_id = graphene.ID(
        required=True, description="The donor's pseudonymous id, unique within the biobank."
    )
    sex = graphene.String(required=True, description="The donor's sex.")
    age = graphene.Int(description="The donor's age at collection, in years.")
    material_type = graphene.String(required=True, description="The MIABIS material type.")
    collection_date = graphene.String(description="When it was collected (ISO 8601 date).")
    storage_temperature = graphene.String(description="How it is stored (MIABIS temperature).")
    availability = graphene.String(required=True, description="Whether it can be requested.")
    diagnoses = _strings("ICD-10 diagnoses of the sample and its donor.")
    data_categories = _strings("Data available with the sample, such as GENOMIC_DATA.")
    consent = graphene.String(description="The donor's GA4GH DUO consent, in DUO shorthand.")
    last_updated = graphene.String(description="When the biobank last changed the record.")
    consent_outcome = graphene.Field(
        ConsentOutcome, description="With a declared purpose: what the consent says about it."
    )
    obligations = graphene.List(
        graphene.NonNull(Obligation),
        description="With a declared purpose: the conditions the consent sets on it.",
    )

    @staticmethod
    def resolve_consent_outcome(parent: Mapping[str, Any], info: GraphQLResolveInfo) -> Any:
        return parent.get("consent_outcome")

    @staticmethod
    def resolve_obligations(parent: Mapping[str, Any], info: GraphQLResolveInfo) -> Any:
        return parent.get("obligations")

    @staticmethod
    def resolve_biobank(parent: Mapping[str, Any], info: GraphQLResolveInfo) -> BiobankNode:
        return _biobank_node(_context(info), str(parent["biobank_id"]))


class PageInfo(graphene.ObjectType):
    class Meta:
        description = "Where a page of records ends and whether more follow."

    end_cursor = graphene.String(
        description="Pass as `after` to get the next page; null for an empty page."
    )
    has_next_page = graphene.Boolean(required=True, description="True when more records follow.")


class SampleConnection(graphene.ObjectType):
    class Meta:
        description = "A page of matching sample records, ordered by biobank and sample id."

    nodes = graphene.List(
        graphene.NonNull(SampleRecord), required=True, description="The records of this page."
    )
    page_info = graphene.Field(PageInfo, required=True, description="How to get the next page.")

    @staticmethod
    def resolve_nodes(parent: RecordConnection, info: GraphQLResolveInfo) -> Sequence[Any]:
        return parent.records

    @staticmethod
    def resolve_page_info(parent: RecordConnection, info: GraphQLResolveInfo) -> RecordConnection:
        return parent


class SearchResult(graphene.ObjectType):
    class Meta:
        description = (
            "The answer to one search: donors and samples across the network and per biobank, "
            "with facets and sample records when asked for."
        )

    donors = graphene.Field(
        Count,
        required=True,
        description="Matching donors in the network, summed from the "
        "per-biobank counts as released.",
    )
    samples = graphene.Field(
        Count,
        required=True,
        description="Matching samples in the network, summed from the "
        "per-biobank counts as released.",
    )
    by_biobank = graphene.List(
        graphene.NonNull(BiobankResult),
        required=True,
        description="Matching donors and samples per biobank, for biobanks with matches.",
    )
    facets = graphene.List(
        graphene.NonNull(Facet),
        required=True,
        names=graphene.List(
            graphene.NonNull(graphene.String),
            description=f"Which facets, in this order (default: all of {', '.join(FACETS)}).",
        ),
        description="Breakdowns of the matches by material, sex, age, disease and more.",
    )
    records = graphene.Field(
        SampleConnection,
        first=graphene.Int(
            default_value=DEFAULT_PAGE_SIZE, description=f"How many records (1 to {MAX_PAGE_SIZE})."
        ),
        after=graphene.String(description="The `endCursor` of the previous page."),
        description="Matching sample records, a page at a time; null where your role may not "
        "see records.",
    )
    text_diseases = graphene.List(
        graphene.NonNull(Disease),
        required=True,
        description="The ICD-10 items the query's `text` was matched to (empty without text).",
    )
    consent = graphene.List(
        graphene.NonNull(OutcomeCounts),
        description="With a declared purpose: network totals per consent outcome, summed from "
        "the released per-biobank figures; null without a purpose.",
    )
    records_note = graphene.String(
        description="Why `records` is null or leaves biobanks out, when it does."
    )

    @staticmethod
    def resolve_consent(parent: SearchAnswer, info: GraphQLResolveInfo) -> Any:
        return parent.result.consent

    @staticmethod
    def resolve_records_note(parent: SearchAnswer, info: GraphQLResolveInfo) -> Any:
        return parent.result.records_note

    @staticmethod
    def resolve_donors(parent: SearchAnswer, info: GraphQLResolveInfo) -> CountResult:
        return parent.result.donors

    @staticmethod
    def resolve_samples(parent: SearchAnswer, info: GraphQLResolveInfo) -> CountResult:
        return parent.result.samples

    @staticmethod
    def resolve_by_biobank(parent: SearchAnswer, info: GraphQLResolveInfo) -> Sequence[Any]:
        return parent.result.by_biobank

    @staticmethod
    def resolve_facets(
        parent: SearchAnswer, info: GraphQLResolveInfo, names: list[str] | None = None
    ) -> list[FacetResult]:
        # The search already computed every facet any selection of this field asked for.
        computed = {facet.name: facet for facet in parent.result.facets}
        wanted = FACETS if names is None else tuple(dict.fromkeys(names))
        return [computed[name] for name in wanted]

    @staticmethod
    def resolve_records(
        parent: SearchAnswer, info: GraphQLResolveInfo, first: int | None, after: str | None = None
    ) -> RecordConnection | None:
        page = _page_request({"first": first, "after": after})
        if page == parent.page:
            return parent.result.records
        # A second `records` selection (an alias) with other arguments: its own backend round.
        context = _context(info)
        try:
            extra = context.search.search(
                parent.query,
                identity=context.identity,
                purpose=parent.purpose,
                facets=(),
                page=page,
            )
        except BadQuery as err:
            raise bad_input(err, _SEARCH_ARGUMENTS.get(err.argument, err.argument)) from None
        record_search(context, parent.query, parent.purpose, extra)  # unaudited: unanswered
        return extra.records

    @staticmethod
    def resolve_text_diseases(parent: SearchAnswer, info: GraphQLResolveInfo) -> list[DiseaseNode]:
        names = _context(info).search.names
        return [DiseaseNode(c, names.name(c), "en") for c in parent.result.text_diseases]


def _selections(info: GraphQLResolveInfo, field_name: str) -> list[dict[str, Any]]:
    """The arguments of every selection of `field_name` under the field being resolved.

    graphql-core's own field collection is used so that aliases, fragments and
    @skip/@include count exactly as execution will count them.
    """
    parent_type = get_named_type(info.return_type)
    assert isinstance(parent_type, GraphQLObjectType)
    fields = collect_sub_fields(
        info.schema, info.fragments, info.variable_values, parent_type, info.field_nodes
    )
    definition = parent_type.fields[field_name]
    return [
        get_argument_values(definition, node, info.variable_values)
        for nodes in fields.values()
        for node in nodes
        if node.name.value == field_name
    ]


def _planned_facets(info: GraphQLResolveInfo) -> tuple[str, ...]:
    selections = _selections(info, "facets")
    if any(args.get("names") is None for args in selections):
        return FACETS
    return tuple(dict.fromkeys(name for args in selections for name in args["names"]))


def _planned_page(info: GraphQLResolveInfo) -> PageRequest | None:
    selections = _selections(info, "records")
    if not selections:
        return None
    return _page_request(selections[0])


def _page_request(args: Mapping[str, Any]) -> PageRequest:
    return PageRequest(_given(args.get("first"), DEFAULT_PAGE_SIZE), args.get("after"))


def _given(value: int | None, default: int) -> int:
    # `first: null` sent explicitly means "the default", as leaving it out does.
    return default if value is None else value


# --- sync history and quarantine ----------------------------------------------------------


class SyncOutcome(graphene.Enum):
    class Meta:
        description = "How a sync run ended."

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class SyncRun(graphene.ObjectType):
    class Meta:
        description = "One run that pulled a biobank's data into the network's search index."

    id = graphene.ID(required=True, description="The run's id.")
    biobank_id = graphene.ID(required=True, description="The biobank that was synced.")
    kind = graphene.String(required=True, description="`full` or `incremental`.")
    triggered_by = graphene.String(required=True, description="Who or what started the run.")
    started_at = graphene.String(required=True, description="When it started (ISO 8601).")
    finished_at = graphene.String(description="When it ended (ISO 8601); null while running.")
    outcome = graphene.Field(SyncOutcome, required=True, description="How it ended.")
    read = graphene.Int(required=True, description="Records read from the source.")
    indexed = graphene.Int(required=True, description="Samples made searchable.")
    rejected = graphene.Int(required=True, description="Records quarantined as invalid.")
    deleted = graphene.Int(
        required=True,
        description="Samples gone from the source since the "
        "previous run, and so no longer searchable.",
    )
    withdrawn = graphene.Int(
        required=True, description="Samples left out because their donor withdrew consent."
    )
    duration_seconds = graphene.Float(description="How long the run took, in seconds.")
    generation = graphene.String(description="The data generation the run published.")
    error = graphene.String(description="Why the run failed, when it did.")

    @staticmethod
    def resolve_duration_seconds(parent: SyncRunData, info: GraphQLResolveInfo) -> float | None:
        return parent.duration_s


class QuarantinedRecord(graphene.ObjectType):
    class Meta:
        description = (
            "A record from a biobank's source that failed validation and is kept out of "
            "search, with the reason, so the biobank can fix it at the source."
        )

    biobank_id = graphene.ID(required=True, description="The biobank the record came from.")
    stream = graphene.String(required=True, description="The table or feed (e.g. `samples`).")
    source_id = graphene.String(description="The record's id at the source, when it had one.")
    position = graphene.String(description="Where the record sits at the source (e.g. a row).")
    field = graphene.String(description="The field that failed.")
    value = graphene.String(description="The value that failed.")
    reason = graphene.String(required=True, description="Why the record was rejected.")
    payload = graphene.String(
        required=True,
        description="The record as the source sent it (JSON; very large records are cut).",
    )
    run_id = graphene.ID(required=True, description="The sync run that last rejected it.")
    first_seen = graphene.String(required=True, description="When it was first rejected.")
    last_seen = graphene.String(required=True, description="When it was last rejected.")


# --- who is asking, and the audit log of searches -------------------------------------------


_ROLE_DESCRIPTIONS = {
    RoleData.ANONYMOUS: "No credentials were sent.",
    RoleData.REGISTERED: "Signed in with an API key or a token.",
    RoleData.APPROVED: "Holds an approved access request at one or more biobanks.",
    RoleData.BIOBANK_ADMIN: "Administers one or more biobanks.",
    RoleData.NETWORK_OPERATOR: "Runs the network: adds biobanks, monitors, reads the audit log.",
}


def _role_description(member: RoleData | None) -> str:
    if member is None:
        return "A role disclosure policies distinguish."
    return _ROLE_DESCRIPTIONS[member]


Role = graphene.Enum.from_enum(RoleData, description=_role_description)


class IdentityType(graphene.ObjectType):
    class Meta:
        name = "Identity"
        description = "Who the gateway takes you to be for this request, and why."

    subject = graphene.String(
        required=True,
        description="Who: the API key's holder or the token's subject; `anonymous` without "
        "credentials.",
    )
    authenticated = graphene.Boolean(required=True, description="Whether you are signed in.")
    roles = graphene.List(
        graphene.NonNull(Role),
        required=True,
        description="Your roles; toward one biobank the most trusted one that applies counts.",
    )
    admin_of = graphene.List(
        graphene.NonNull(graphene.ID), required=True, description="Biobanks you administer."
    )
    approved_for = graphene.List(
        graphene.NonNull(graphene.ID),
        required=True,
        description="Biobanks where you hold an approved access request.",
    )
    via = graphene.String(
        required=True, description="How you signed in: `api_key`, `oidc`, or `none`."
    )

    @staticmethod
    def resolve_roles(parent: Identity, info: GraphQLResolveInfo) -> list[RoleData]:
        return list(parent.roles)

    @staticmethod
    def resolve_admin_of(parent: Identity, info: GraphQLResolveInfo) -> list[str]:
        return sorted(parent.admin_of)

    @staticmethod
    def resolve_approved_for(parent: Identity, info: GraphQLResolveInfo) -> list[str]:
        return sorted(parent.approved_for)


class AuditedRelease(graphene.ObjectType):
    class Meta:
        description = "The precision one biobank released a search's counts at (never the counts)."

    biobank_id = graphene.ID(required=True, description="The biobank.")
    donors = graphene.String(required=True, description="The donor count's precision.")
    samples = graphene.String(required=True, description="The sample count's precision.")
    generation = graphene.String(description="The data generation that answered.")


class AuditLogEntry(graphene.ObjectType):
    class Meta:
        description = (
            "One answered search: who asked, what for, with which filters, and how precisely "
            "each biobank answered. Never the records or the numbers released."
        )

    id = graphene.ID(required=True, description="The entry's id; later entries have larger ids.")
    at = graphene.String(required=True, description="When the search was answered (ISO 8601).")
    subject = graphene.String(required=True, description="Who asked (see `Identity.subject`).")
    via = graphene.String(required=True, description="How they signed in.")
    roles = _strings("Their roles at the time (lower case, as `Role` values).")
    admin_of = graphene.List(
        graphene.NonNull(graphene.ID), required=True, description="Biobanks they administered."
    )
    approved_for = graphene.List(
        graphene.NonNull(graphene.ID),
        required=True,
        description="Biobanks they were approved for.",
    )
    client_ip = graphene.String(description="The client's address.")
    filters = graphene.String(required=True, description="The normalised query, as JSON.")
    purpose = graphene.String(description="The normalised research purpose as JSON, if declared.")
    released = graphene.List(
        graphene.NonNull(AuditedRelease),
        required=True,
        description="Per biobank with matches: the precision its counts were released at.",
    )
    records_returned = graphene.Boolean(
        required=True, description="Whether sample records were returned."
    )
    record_count = graphene.Int(required=True, description="How many sample records.")

    @staticmethod
    def resolve_filters(parent: AuditEntry, info: GraphQLResolveInfo) -> str:
        return json.dumps(parent.filters, ensure_ascii=False, sort_keys=True)

    @staticmethod
    def resolve_purpose(parent: AuditEntry, info: GraphQLResolveInfo) -> str | None:
        return None if parent.purpose is None else json.dumps(parent.purpose, sort_keys=True)


class AuditLogConnection(graphene.ObjectType):
    class Meta:
        description = "A page of the audit log, newest first."

    nodes = graphene.List(
        graphene.NonNull(AuditLogEntry), required=True, description="The entries of this page."
    )
    page_info = graphene.Field(PageInfo, required=True, description="How to get the next page.")

    @staticmethod
    def resolve_nodes(parent: AuditPage, info: GraphQLResolveInfo) -> Sequence[AuditEntry]:
        return parent.entries

    @staticmethod
    def resolve_page_info(parent: AuditPage, info: GraphQLResolveInfo) -> AuditPage:
        return parent


# --- the root -----------------------------------------------------------------------------


class Query(graphene.ObjectType):
    class Meta:
        description = "Find samples and donors across the biobanks of the network."

    search = graphene.Field(
        SearchResult,
        required=True,
        query=graphene.Argument(SampleQueryInput, required=True, description="What to look for."),
        purpose=graphene.Argument(
            ResearchPurposeInput,
            description="What the samples are for; consent is matched against it.",
        ),
        description="Count matching donors and samples in every biobank, with facets and "
        "records. One search answers one research question. Every count is released under "
        "each biobank's disclosure policy for your role: small counts may be withheld, "
        "rounded or carry fixed noise, and each count says which and why.",
    )
    biobanks = graphene.List(
        graphene.NonNull(Biobank), required=True, description="Every biobank of the network."
    )
    biobank = graphene.Field(
        Biobank,
        id=graphene.ID(required=True, description="The biobank's id."),
        description="One biobank by id; null when the network has no such biobank.",
    )
    collections = graphene.List(
        graphene.NonNull(Collection),
        required=True,
        biobank=graphene.ID(description="Only this biobank's collections."),
        description="The collections of the network's biobanks.",
    )
    diseases = graphene.List(
        graphene.NonNull(Disease),
        required=True,
        text=graphene.String(required=True, description="A code prefix or words of a name."),
        first=graphene.Int(
            default_value=DEFAULT_DISEASE_MATCHES,
            description=f"How many matches (1 to {MAX_PAGE_SIZE}).",
        ),
        description="ICD-10 items by code or name in English or Japanese, best match first "
        "(for autocomplete).",
    )
    sync_runs = graphene.List(
        graphene.NonNull(SyncRun),
        required=True,
        biobank=graphene.ID(description="Only this biobank's runs."),
        first=graphene.Int(
            default_value=DEFAULT_SYNC_RUNS,
            description=f"How many runs, newest first (1 to {MAX_PAGE_SIZE}).",
        ),
        description="Recent sync runs: when each biobank's data was pulled and what happened.",
    )
    quarantine = graphene.List(
        graphene.NonNull(QuarantinedRecord),
        required=True,
        biobank=graphene.ID(required=True, description="The biobank."),
        first=graphene.Int(
            default_value=DEFAULT_QUARANTINE_PAGE,
            description=f"How many records (1 to {MAX_PAGE_SIZE}).",
        ),
        offset=graphene.Int(default_value=0, description="How many records to skip."),
        description="Records of a biobank's source that failed validation, with the reasons. "
        "Only for admins of that biobank: the payloads are the biobank's own data.",
    )
    me = graphene.Field(
        IdentityType,
        required=True,
        description="Who the gateway takes you to be: subject, roles and biobank memberships.",
    )
    audit_log = graphene.Field(
        AuditLogConnection,
        required=True,
        first=graphene.Int(
            default_value=DEFAULT_AUDIT_PAGE,
            description=f"How many entries, newest first (1 to {MAX_PAGE_SIZE}).",
        ),
        after=graphene.String(description="The `endCursor` of the previous page."),
        subject=graphene.String(description="Only this subject's searches."),
        description="Every answered search, for network operators only.",
    )

    @staticmethod
    def resolve_search(
        root: None,
        info: GraphQLResolveInfo,
        query: Mapping[str, Any],
        purpose: Mapping[str, Any] | None = None,
    ) -> SearchAnswer:
        raw = {name: value for name, value in dict(query).items() if value is not None}
        try:
            sample_query = SampleQuery.parse(raw)
        except BadQuery as err:
            raise bad_input(err, f"query.{camel(err.argument)}") from None
        declared = None
        if purpose is not None:
            # graphene hands enum arguments over as enum members; the service reads values.
            fields = {k: getattr(v, "value", v) for k, v in dict(purpose).items() if v is not None}
            try:
                declared = ResearchPurposeData.parse(fields)
            except BadQuery as err:
                raise bad_input(err, camel(err.argument)) from None
        # One backend round for what the request selected: facets and records that are
        # not selected are not computed.
        page = _planned_page(info)
        context = _context(info)
        try:
            result = context.search.search(
                sample_query,
                identity=context.identity,
                purpose=declared,
                facets=_planned_facets(info),
                page=page,
            )
        except BadQuery as err:
            raise bad_input(err, _SEARCH_ARGUMENTS.get(err.argument, err.argument)) from None
        # A search that cannot be audited is not answered: record_search raises then.
        record_search(context, sample_query, declared, result)
        return SearchAnswer(sample_query, result, page, declared)

    @staticmethod
    def resolve_biobanks(root: None, info: GraphQLResolveInfo) -> list[BiobankNode]:
        return [BiobankNode(s.biobank.id, s) for s in _context(info).network().biobanks]

    @staticmethod
    def resolve_biobank(root: None, info: GraphQLResolveInfo, id: str) -> BiobankNode | None:
        source = _context(info).biobank(id)
        return BiobankNode(id, source) if source else None

    @staticmethod
    def resolve_collections(
        root: None, info: GraphQLResolveInfo, biobank: str | None = None
    ) -> list[CollectionNode]:
        context = _context(info)
        if biobank is not None:
            return _collections(context, context.require_biobank(biobank, "biobank").biobank.id)
        return [
            collection
            for source in context.network().biobanks
            for collection in _collections(context, source.biobank.id)
        ]

    @staticmethod
    def resolve_diseases(
        root: None, info: GraphQLResolveInfo, text: str, first: int | None
    ) -> list[DiseaseNode]:
        try:
            matches = _context(info).search.diseases(text, _given(first, DEFAULT_DISEASE_MATCHES))
        except BadQuery as err:
            raise bad_input(err, err.argument) from None
        return [DiseaseNode(m.code, m.name, m.language) for m in matches]

    @staticmethod
    def resolve_sync_runs(
        root: None, info: GraphQLResolveInfo, first: int | None, biobank: str | None = None
    ) -> list[SyncRunData]:
        # A biobank's admins and the network's operators; an admin asking without `biobank`
        # gets the runs of the biobanks they administer.
        context = _context(info)
        identity = context.identity
        require_signed_in(identity, "syncRuns")
        limit = _given(first, DEFAULT_SYNC_RUNS)
        _check_range("first", limit, 1, MAX_PAGE_SIZE)
        state = context.runtime.state
        if biobank is not None:
            context.require_biobank(biobank, "biobank")
            require_admin(identity, biobank, "syncRuns", operators=True)
            return state.runs(biobank, limit=limit)
        if identity.operator:
            return state.runs(None, limit=limit)
        if not identity.admin_of:
            require_admin(identity, "", "syncRuns", operators=True)
        runs = [run for bb in sorted(identity.admin_of) for run in state.runs(bb, limit=limit)]
        return sorted(runs, key=lambda run: (run.started_at, run.id), reverse=True)[:limit]

    @staticmethod
    def resolve_quarantine(
        root: None,
        info: GraphQLResolveInfo,
        biobank: str,
        first: int | None,
        offset: int | None,
    ) -> list[QuarantinedRecordData]:
        context = _context(info)
        require_signed_in(context.identity, "quarantine")
        limit, skip = _given(first, DEFAULT_QUARANTINE_PAGE), _given(offset, 0)
        _check_range("first", limit, 1, MAX_PAGE_SIZE)
        _check_range("offset", skip, 0)
        context.require_biobank(biobank, "biobank")
        # Rejected payloads are the biobank's raw data: its admins only, not operators.
        require_admin(context.identity, biobank, "quarantine", operators=False)
        return context.runtime.state.quarantine(biobank, limit=limit, offset=skip)

    @staticmethod
    def resolve_me(root: None, info: GraphQLResolveInfo) -> Identity:
        return _context(info).identity

    @staticmethod
    def resolve_audit_log(
        root: None,
        info: GraphQLResolveInfo,
        first: int | None,
        after: str | None = None,
        subject: str | None = None,
    ) -> AuditPage:
        context = _context(info)
        require_operator(context.identity, "auditLog")
        limit = _given(first, DEFAULT_AUDIT_PAGE)
        _check_range("first", limit, 1, MAX_PAGE_SIZE)
        if context.audit is None:
            return AuditPage((), None, False)
        try:
            return context.audit.entries(first=limit, after=after, subject=subject)
        except BadAuditCursor:
            raise UserInputError("after", after, "not a cursor of the audit log") from None

    # --- names of ICD-10 items in a language, for the web UI (issue 6) ----------------------
    # The UI shows the hierarchy of a disease and the chapter and block facets in the
    # reader's language; `diseases` answers by text and names each item as it matched.
    disease_names = graphene.List(
        graphene.NonNull(Disease),
        required=True,
        codes=graphene.List(
            graphene.NonNull(graphene.String),
            required=True,
            description=f"ICD-10 codes in any common spelling (1 to {MAX_PAGE_SIZE}).",
        ),
        language=graphene.String(
            default_value="en",
            description="`en` or `ja`; an item without a name in that language comes in English.",
        ),
        description="ICD-10 items by code, each named in `language`, in the order asked.",
    )

    @staticmethod
    def resolve_disease_names(
        root: None, info: GraphQLResolveInfo, codes: list[str], language: str | None
    ) -> list[DiseaseNode]:
        if not 1 <= len(codes) <= MAX_PAGE_SIZE:
            raise UserInputError("codes", len(codes), f"give 1 to {MAX_PAGE_SIZE} codes")
        names = _context(info).search.names
        nodes = []
        for n, value in enumerate(codes):
            try:
                code = icd10.normalise(value)
            except icd10.UnknownCode as err:
                raise UserInputError(f"codes[{n}]", value, str(err)) from None
            nodes.append(DiseaseNode(code, *names.localised(code, language or "en")))
        return nodes


# --- operations: a biobank admin starts a sync (connectors and sync) ----------------------
# The gateway never talks to a source: it queues the request in the sync state store and
# `biofed worker` runs it (federation/sync/schedule.py, docs/connectors.md).


class SyncRequested(graphene.ObjectType):
    class Meta:
        description = (
            "A sync a biobank admin asked for, queued for the sync worker (`biofed worker`). "
            "Its run appears in `syncRuns` once the worker starts it."
        )

    request_id = graphene.ID(required=True, description="The queued request's id.")
    biobank_id = graphene.ID(required=True, description="The biobank to sync.")
    mode = graphene.String(
        required=True, description="`auto` (incremental where the source can) or `full`."
    )
    requested_by = graphene.String(required=True, description="Who asked for it.")
    requested_at = graphene.String(required=True, description="When (ISO 8601).")
    already_queued = graphene.Boolean(
        required=True,
        description="True when a request for this biobank was already waiting: this is it.",
    )


@dataclass(frozen=True)
class _Queued:
    request_id: int
    biobank_id: str
    mode: str
    requested_by: str
    requested_at: str
    already_queued: bool


class StartSync(graphene.Mutation):
    class Meta:
        description = (
            "Queue a sync of a biobank. Only admins of that biobank may; others get FORBIDDEN."
        )

    class Arguments:
        biobank = graphene.ID(required=True, description="The biobank to sync.")
        full = graphene.Boolean(
            default_value=False,
            description="Read the whole source (finds deletions a source without a change "
            "feed cannot report) instead of only what changed.",
        )

    Output = SyncRequested

    @staticmethod
    def mutate(root: None, info: GraphQLResolveInfo, biobank: str, full: bool = False) -> _Queued:
        from federation.sync.schedule import SyncQueue

        context = _context(info)
        identity: Identity = context.identity
        require_admin(identity, biobank, "startSync", operators=False)
        context.require_biobank(biobank, "biobank")
        queue = SyncQueue(context.runtime.state)
        waiting = {r.biobank_id for r in queue.pending()}
        request = queue.request(biobank, identity.subject, "full" if full else "auto")
        return _Queued(
            request.id,
            request.biobank_id,
            request.mode,
            request.requested_by,
            request.requested_at,
            biobank in waiting,
        )


class Mutation(graphene.ObjectType):
    class Meta:
        description = "Operations on the network (for biobank admins)."

    start_sync = StartSync.Field(
        description="Queue a sync of your biobank; returns the queued request."
    )


schema = graphene.Schema(query=Query, mutation=Mutation)
