"""The search: a question in, released counts per biobank, facets and records out.

The resolver parses the arguments, plans which facets and record pages the request
selected (one backend round for all of them) and calls the search service, which also
audits the search.
"""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import graphene
from graphql import GraphQLObjectType, GraphQLResolveInfo, get_argument_values, get_named_type
from graphql.execution.collect_fields import collect_sub_fields

from federation.consent import ResearchPurpose as ResearchPurposeData
from federation.gateway.errors import bad_input, camel
from federation.gateway.types.catalogue import Biobank, BiobankNode, biobank_node
from federation.gateway.types.common import Count, context, given, page_type, strings
from federation.gateway.types.diseases import Disease, DiseaseNode
from federation.gateway.types.purpose import (
    ConsentOutcome,
    Obligation,
    OutcomeCounts,
    ResearchPurposeInput,
)
from federation.i18n import language_of
from federation.search.query import (
    DEFAULT_ORDER,
    DEFAULT_PAGE_SIZE,
    FACETS,
    MAX_PAGE_SIZE,
    BadQuery,
    PageRequest,
    SampleQuery,
)
from federation.search.result import Access as AccessResult
from federation.search.result import BiobankResult as BiobankResultData
from federation.search.result import Count as CountResult
from federation.search.result import Facet as FacetResult
from federation.search.result import RecordConnection
from federation.search.result import SearchResult as SearchResultData

# Where a BadQuery raised by `SearchService.search` points in the GraphQL request: the
# service names its own parameters, the client knows the fields of SearchResult.
_SEARCH_ARGUMENTS = {
    "facets": "facets.names",
    "first": "records.first",
    "after": "records.after",
    "order_by": "records.orderBy",
    "biobanks": "query.biobanks",
}


@dataclass(frozen=True)
class SearchAnswer:
    """One search's result plus what is needed to fetch a page nobody planned for."""

    query: SampleQuery
    result: SearchResultData
    page: PageRequest | None
    purpose: ResearchPurposeData | None = None


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
    text_exclude = graphene.List(
        graphene.NonNull(graphene.String),
        description="ICD-10 codes to leave out of what `text` resolved to (as listed in "
        "`textDiseases`), so a researcher can drop a code the text found.",
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
    countries = graphene.List(
        graphene.NonNull(graphene.String),
        description="Only biobanks in these countries (ISO 3166-1 alpha-2, such as JP or DE).",
    )
    collections = graphene.List(
        graphene.NonNull(graphene.ID),
        description="Only these collections (by id; an id is unique within its biobank, "
        "so name the biobank in `biobanks` too).",
    )


class DeclaredCounts(graphene.ObjectType):
    class Meta:
        description = (
            "What collection-level collections declare of themselves (the BBMRI-ERIC "
            "Directory's way: diseases, materials, sizes per collection, no sample rows). "
            "Each matching collection counts whole: its facts are matched by overlap with "
            "the filters, so these are upper bounds of the matching part, precision "
            "DECLARED, and never added to counted donors and samples."
        )

    donors = graphene.Field(
        Count, required=True, description="Donors the matching collections declare."
    )
    samples = graphene.Field(
        Count, required=True, description="Samples the matching collections declare."
    )
    collections = graphene.List(
        graphene.NonNull(graphene.ID),
        required=True,
        description="Ids of the matching collections (see `collections`).",
    )


class BiobankResult(graphene.ObjectType):
    class Meta:
        description = (
            "How many matching donors and samples one biobank holds. A collection-level "
            "biobank (no sample rows) answers with what its collections declare: precision "
            "DECLARED, and `declared` says which collections."
        )

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
    declared = graphene.Field(
        DeclaredCounts,
        description="What this biobank's matching collection-level collections declare; "
        "null when it has none.",
    )

    @staticmethod
    def resolve_biobank(parent: BiobankResultData, info: GraphQLResolveInfo) -> BiobankNode:
        return biobank_node(context(info), parent.biobank_id)


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

    @staticmethod
    def resolve_explanation(parent: AccessResult, info: GraphQLResolveInfo) -> str:
        return parent.explanation_in(context(info).language)


class FacetBucket(graphene.ObjectType):
    class Meta:
        description = "One value of a facet and how many matching donors and samples have it."

    key = graphene.String(required=True, description="The value as a code, for filtering.")
    label = graphene.String(required=True, description="The value as a person reads it.")
    donors = graphene.Field(Count, required=True, description="Matching donors with this value.")
    samples = graphene.Field(Count, required=True, description="Matching samples with this value.")
    declared = graphene.Field(
        DeclaredCounts,
        description="What matching collections that declare this value declare (each counted "
        "whole in every value it lists); never part of `donors`/`samples`.",
    )


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
    diagnoses = strings("ICD-10 diagnoses of the sample and its donor.")
    data_categories = strings("Data available with the sample, such as GENOMIC_DATA.")
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
        return biobank_node(context(info), str(parent["biobank_id"]))


def _resolve_total_count(parent: RecordConnection, info: GraphQLResolveInfo) -> int | None:
    return parent.total_count


SampleConnection = page_type(
    "SampleConnection",
    SampleRecord,
    description="A page of matching sample records, in the order asked for (by default by "
    "biobank and sample id).",
    items="records",
    nodes="The records of this page.",
    extra={
        "total_count": graphene.Int(
            description="How many records you may see over all pages: those of the biobanks "
            "whose records your role may read (and, with a purpose, whose consent permits it)."
        ),
        "resolve_total_count": staticmethod(_resolve_total_count),
    },
)


class RecordOrder(graphene.Enum):
    class Meta:
        description = (
            "A record column to order by; ties are ordered by biobank and sample id, and a "
            "missing value sorts as the smallest."
        )

    BIOBANK = "biobank_id"
    SAMPLE = "sample_id"
    DONOR = "donor_id"
    SEX = "sex"
    AGE = "age"
    MATERIAL_TYPE = "material_type"
    COLLECTION_DATE = "collection_date"
    STORAGE_TEMPERATURE = "storage_temperature"
    AVAILABILITY = "availability"


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
        "per-biobank counts of sample rows as released (collection-level counts are in "
        "`declared`, never in this sum).",
    )
    samples = graphene.Field(
        Count,
        required=True,
        description="Matching samples in the network, summed from the "
        "per-biobank counts of sample rows as released (collection-level counts are in "
        "`declared`, never in this sum).",
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
        order_by=graphene.Argument(
            RecordOrder, default_value="biobank_id", description="The column to order by."
        ),
        descending=graphene.Boolean(default_value=False, description="Largest value first."),
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
    declared = graphene.Field(
        DeclaredCounts,
        description="The network sum of what matching collection-level collections declare, "
        "kept apart from `donors` and `samples` (which count sample rows only); null when "
        "none matched.",
    )

    @staticmethod
    def resolve_declared(parent: SearchAnswer, info: GraphQLResolveInfo) -> Any:
        return parent.result.declared

    @staticmethod
    def resolve_consent(parent: SearchAnswer, info: GraphQLResolveInfo) -> Any:
        return parent.result.consent

    @staticmethod
    def resolve_records_note(parent: SearchAnswer, info: GraphQLResolveInfo) -> Any:
        return parent.result.records_note_in(context(info).language)

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
        parent: SearchAnswer,
        info: GraphQLResolveInfo,
        first: int | None,
        after: str | None = None,
        **order: Any,
    ) -> RecordConnection | None:
        page = _page_request({"first": first, "after": after, **order})
        if page == parent.page:
            return parent.result.records
        # A second `records` selection (an alias) with other arguments: its own backend round.
        request = context(info)
        try:
            extra = request.search.search(
                parent.query,
                identity=request.identity,
                purpose=parent.purpose,
                facets=(),
                page=page,
            )
        except BadQuery as err:
            raise bad_input(err, _SEARCH_ARGUMENTS.get(err.argument, err.argument)) from None
        return extra.records

    @staticmethod
    def resolve_text_diseases(parent: SearchAnswer, info: GraphQLResolveInfo) -> list[DiseaseNode]:
        request = context(info)
        names = request.search.names
        return [
            DiseaseNode(c, *names.localised(c, request.language))
            for c in parent.result.text_diseases
        ]


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
    # graphene may hand an enum argument over as its member; the page wants the column.
    order = args.get("order_by", args.get("orderBy")) or DEFAULT_ORDER
    return PageRequest(
        given(args.get("first"), DEFAULT_PAGE_SIZE),
        args.get("after"),
        str(getattr(order, "value", order)),
        bool(args.get("descending")),
    )


class SearchQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    search = graphene.Field(
        SearchResult,
        required=True,
        query=graphene.Argument(SampleQueryInput, required=True, description="What to look for."),
        purpose=graphene.Argument(
            ResearchPurposeInput,
            description="What the samples are for; consent is matched against it.",
        ),
        language=graphene.String(
            description="`en` or `ja`: the language of the reasons, explanations and notes "
            "this request returns (default: the request's Accept-Language, else English)."
        ),
        description="Count matching donors and samples in every biobank, with facets and "
        "records. One search answers one research question. Every count is released under "
        "each biobank's disclosure policy for your role: small counts may be withheld, "
        "rounded or carry fixed noise, and each count says which and why.",
    )

    @staticmethod
    def resolve_search(
        root: None,
        info: GraphQLResolveInfo,
        query: Mapping[str, Any],
        purpose: Mapping[str, Any] | None = None,
        language: str | None = None,
    ) -> SearchAnswer:
        if language is not None:  # an unknown one is BAD_USER_INPUT naming `language`
            context(info).language = language_of(language, ())
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
        request = context(info)
        try:
            # The service audits the search; one it cannot record is not answered.
            result = request.search.search(
                sample_query,
                identity=request.identity,
                purpose=declared,
                facets=_planned_facets(info),
                page=page,
            )
        except BadQuery as err:
            raise bad_input(err, _SEARCH_ARGUMENTS.get(err.argument, err.argument)) from None
        request.note_budget(result.budget)
        return SearchAnswer(sample_query, result, page, declared)
