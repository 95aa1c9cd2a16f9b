"""What every area of the schema shares: the request context, counts and pages.

A count is never a bare integer: it is a `Count` that says how precise it is, because
disclosure rules may round, noise or withhold it. A page of anything is built by
`page_type`, so every paged list has the same `nodes` and `pageInfo` shape.
"""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import graphene
from graphql import GraphQLResolveInfo

from federation.gateway.context import GatewayContext
from federation.search.result import Count as CountResult
from federation.search.result import Precision as PrecisionData


def context(info: GraphQLResolveInfo) -> GatewayContext:
    """The request's context, as the endpoint built it."""
    value = info.context
    assert isinstance(value, GatewayContext)
    return value


def strings(description: str) -> graphene.List:
    """A required list of strings: `[String!]!`."""
    return graphene.List(graphene.NonNull(graphene.String), required=True, description=description)


def given(value: int | None, default: int) -> int:
    """An optional page argument: `first: null` sent explicitly means the default."""
    return default if value is None else value


# --- counts -------------------------------------------------------------------------------

_PRECISION_DESCRIPTIONS = {
    "exact": "The true number.",
    "rounded": "Rounded to the step the biobank's disclosure policy sets.",
    "noised": "The true number plus noise fixed by the rows it counts, so every question "
    "counting the same rows gets the same number and rewording does not average it away.",
    "below_threshold": "Fewer than the biobank's minimum count but more than zero; the "
    "number itself is withheld.",
    "boolean": "Only whether there are any matches may be told; the number is withheld.",
    "lower_bound": "A total that leaves out withheld counts: the true number is at least this.",
    "hidden": "Withheld: your role may not see counts for this biobank.",
    "declared": "Declared by collections, not counted from sample rows: the whole declared "
    "size of each collection whose facts overlap the query (an upper bound of the matching "
    "part), after the biobank's disclosure rule; `reason` says how many collections.",
    "budget_spent": "Your privacy budget for this biobank is spent: the number is withheld "
    "and the coarser release the network names is shown (`exists`, and `reason` says when "
    "the budget refills).",
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

    @staticmethod
    def resolve_reason(parent: CountResult, info: GraphQLResolveInfo) -> str | None:
        return parent.reason_in(context(info).language)


# --- pages --------------------------------------------------------------------------------


class PageInfo(graphene.ObjectType):
    class Meta:
        description = "Where a page of records ends and whether more follow."

    end_cursor = graphene.String(
        description="Pass as `after` to get the next page; null for an empty page."
    )
    has_next_page = graphene.Boolean(required=True, description="True when more records follow.")


def page_type(
    name: str,
    node: type[graphene.ObjectType],
    *,
    description: str,
    items: str,
    nodes: str,
    extra: Mapping[str, Any] | None = None,
) -> type[graphene.ObjectType]:
    """A page of `node`s: `nodes` and `pageInfo`, over a parent with `items`, `end_cursor`
    and `has_next_page` (the search's record page, the audit log's page, ...); `extra`
    adds fields (and their resolvers) of one kind of page."""
    read_items = operator.attrgetter(items)

    def resolve_nodes(parent: Any, info: GraphQLResolveInfo) -> Sequence[Any]:
        return read_items(parent)  # type: ignore[no-any-return]

    def resolve_page_info(parent: Any, info: GraphQLResolveInfo) -> Any:
        return parent

    attributes = {
        "Meta": type("Meta", (), {"name": name, "description": description}),
        "nodes": graphene.List(graphene.NonNull(node), required=True, description=nodes),
        "page_info": graphene.Field(
            PageInfo, required=True, description="How to get the next page."
        ),
        "resolve_nodes": staticmethod(resolve_nodes),
        "resolve_page_info": staticmethod(resolve_page_info),
        **(extra or {}),
    }
    return type(name, (graphene.ObjectType,), attributes)
