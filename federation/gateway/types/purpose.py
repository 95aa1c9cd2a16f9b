"""A declared research purpose and what each donor's consent says about it."""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import graphene
from graphql import GraphQLResolveInfo

from federation.gateway.types.common import Count
from federation.search.result import OutcomeCounts as OutcomeCountsData


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
