"""Who the gateway takes the caller to be."""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import graphene
from graphql import GraphQLResolveInfo

from federation.disclosure.budget import BudgetStatus
from federation.disclosure.roles import Identity
from federation.disclosure.roles import Role as RoleData
from federation.gateway.types.common import context

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


class PrivacyBudget(graphene.ObjectType):
    class Meta:
        description = (
            "One privacy budget you have spent from in the current period: each count "
            "released with fresh noise costs epsilon = 1 / noise scale; a count of rows "
            "already released to you is free. When it is spent, counts fall back to a "
            "coarser release (precision BUDGET_SPENT) until it refills."
        )

    role = graphene.String(required=True, description="The role the budget belongs to.")
    scope = graphene.String(
        required=True, description="A biobank id, or `network` for a network-wide budget."
    )
    period = graphene.String(required=True, description="The period, e.g. `2026-12-07`.")
    spent = graphene.Float(required=True, description="Epsilon spent in the period.")
    limit = graphene.Float(required=True, description="Epsilon the period allows.")
    remaining = graphene.Float(required=True, description="Epsilon left in the period.")
    refills_at = graphene.String(
        required=True, description="When the next period starts (ISO 8601, UTC)."
    )


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

    privacy_budget = graphene.List(
        graphene.NonNull(PrivacyBudget),
        required=True,
        description="What is left of the privacy budgets you have spent from this period.",
    )

    @staticmethod
    def resolve_privacy_budget(parent: Identity, info: GraphQLResolveInfo) -> list[BudgetStatus]:
        return list(context(info).search.budget_status(parent))

    @staticmethod
    def resolve_roles(parent: Identity, info: GraphQLResolveInfo) -> list[RoleData]:
        return list(parent.roles)

    @staticmethod
    def resolve_admin_of(parent: Identity, info: GraphQLResolveInfo) -> list[str]:
        return sorted(parent.admin_of)

    @staticmethod
    def resolve_approved_for(parent: Identity, info: GraphQLResolveInfo) -> list[str]:
        return sorted(parent.approved_for)


class IdentityQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    me = graphene.Field(
        IdentityType,
        required=True,
        description="Who the gateway takes you to be: subject, roles and biobank memberships.",
    )

    @staticmethod
    def resolve_me(root: None, info: GraphQLResolveInfo) -> Identity:
        return context(info).identity
