"""What an operation costs, and how deep it nests, judged before it runs.

The operation is walked the way execution will walk it (graphql-core's own field
collection, so aliases, named and inline fragments and @skip/@include count exactly as
they will run), and the walk stops as soon as it passes the depth limit, so even a
fragment cycle that validation had missed could not make it run away. Saleor's query
cost validator is the model; docs/access.md has the numbers and the reasons behind them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    get_argument_values,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields

from federation.errors import BadInput
from federation.gateway.errors import ErrorCode, GatewayError
from federation.search.query import FACETS, MAX_PAGE_SIZE

PAGE_ARGUMENT = "first"
SEARCH_FIELD = "search"
# Root fields that each ask searches: counted against the per-request search limit.
SEARCH_FIELDS = frozenset({SEARCH_FIELD, "holdings"})
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class DepthLimitExceeded(GatewayError):
    """The operation nests fields deeper than the limit."""

    code = ErrorCode.DEPTH_LIMIT_EXCEEDED


class CostLimitExceeded(GatewayError):
    """The operation's computed cost is over the budget."""

    code = ErrorCode.COST_LIMIT_EXCEEDED


@dataclass(frozen=True)
class FieldCost:
    """What one selection of a field costs: `complexity` per item, children once per item.

    Items are counted by the page argument when the field has one (`records(first: 50)` is
    50 items), else assumed to be `items` (a list whose length no argument bounds).
    """

    complexity: int = 1
    page_argument: str | None = None
    items: int = 1

    def price(self, args: Mapping[str, Any]) -> tuple[int, int]:
        """(the field's own cost, the multiplier for its children's cost)."""
        count = self.items
        if self.page_argument is not None:
            count = int(args.get(self.page_argument) or 0)
        return self.complexity * count, count


@dataclass(frozen=True)
class FacetsCost(FieldCost):
    """Facets: `per_facet` for each facet named, `all_facets` when all are asked for."""

    per_facet: int = 5
    all_facets: int = 20

    def price(self, args: Mapping[str, Any]) -> tuple[int, int]:
        names = args.get("names")
        if names is None:
            return self.all_facets, len(FACETS)
        # The service computes all facets in one pass, so naming many costs no more than all.
        return min(self.per_facet * len(set(names)), self.all_facets), max(len(set(names)), 1)


# Lists no argument bounds: a network has tens to a thousand biobanks, a biobank a handful
# of collections. The estimate only has to make nesting them (biobank -> collections ->
# biobank -> ...) grow the cost the way it grows the work.
NETWORK_LIST_ITEMS = 10

# Costs by type and field (GraphQL names). A field not listed costs 0 when it returns a
# scalar or enum and 1 when it returns an object (or a list of them), with its children
# counted once. Each selection counts, so aliases repeating a field pay for every copy.
COST_MAP: Mapping[str, Mapping[str, FieldCost]] = {
    "Query": {
        "search": FieldCost(10),  # a backend round of counts, per biobank and consent split
        # A search of the biobank and one per collection (a handful).
        "holdings": FieldCost(10, items=NETWORK_LIST_ITEMS),
        "diseases": FieldCost(1, PAGE_ARGUMENT),
        "syncRuns": FieldCost(1, PAGE_ARGUMENT),
        "syncRequests": FieldCost(1, PAGE_ARGUMENT),
        "syncSchedules": FieldCost(1, items=NETWORK_LIST_ITEMS),
        "quarantine": FieldCost(1, PAGE_ARGUMENT),
        "auditLog": FieldCost(1, PAGE_ARGUMENT),
        "biobanks": FieldCost(1, items=NETWORK_LIST_ITEMS),
        "collections": FieldCost(1, items=NETWORK_LIST_ITEMS),
        # A consent check is a search.
        "previewAccessRequest": FieldCost(10),
    },
    "Mutation": {"submitAccessRequest": FieldCost(10), "saveSearch": FieldCost(10)},
    "Biobank": {"collections": FieldCost(1, items=NETWORK_LIST_ITEMS)},
    "SearchResult": {
        "facets": FacetsCost(),
        "records": FieldCost(1, PAGE_ARGUMENT),  # a record costs 1, and so does each object in it
    },
}


@dataclass(frozen=True)
class QueryCost:
    """An operation's computed cost against the budget; reported as `extensions.cost`."""

    requested: int
    budget: int
    searches: int = 0  # root `search` fields, aliases each counted

    def as_extension(self) -> dict[str, int]:
        """The `extensions.cost` entry of a response."""
        return {"requested": self.requested, "budget": self.budget}


@dataclass(frozen=True)
class Shape:
    """What walking an operation found: its cost, depth and whether it introspects."""

    cost: int
    depth: int
    introspection: bool
    # Root `search` selections, each alias apart: each is a question of its own.
    searches: int = 0


def measure(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
    *,
    max_depth: int,
    cost_map: Mapping[str, Mapping[str, FieldCost]] = COST_MAP,
) -> Shape:
    """Walk an operation as execution would; raise on depth or page size, else its shape.

    Fields under `__schema` and `__type` are not counted: introspection is bounded by the
    schema's own size and has its own switch.
    """
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = schema.get_root_type(operation.operation)
    if root is None:
        return Shape(0, 0, False)
    walk = _Walk(schema, fragments, dict(variables), max_depth, cost_map)
    fields = collect_fields(schema, fragments, walk.variables, root, operation.selection_set)
    introspection = any(nodes[0].name.value in INTROSPECTION_FIELDS for nodes in fields.values())
    searches = sum(1 for nodes in fields.values() if nodes[0].name.value in SEARCH_FIELDS)
    cost, depth = walk.fields(root, fields, 1, ())
    return Shape(cost, depth, introspection, searches)


class _Walk:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        max_depth: int,
        cost_map: Mapping[str, Mapping[str, FieldCost]],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.max_depth = max_depth
        self.cost_map = cost_map
        # A fragment spread many times is walked once per parent type: without this a
        # document of nested, repeated fragments costs exponential time to measure.
        self._memo: dict[tuple[str, tuple[int, ...]], tuple[int, int]] = {}

    def fields(
        self,
        parent: GraphQLObjectType,
        fields: Mapping[str, list[FieldNode]],
        level: int,
        path: tuple[str, ...],
    ) -> tuple[int, int]:
        """(cost, height) of a selection set's fields at `level` (the root's fields are 1)."""
        cost, height = 0, 0
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name.startswith("__"):
                continue  # __typename costs nothing; introspection has its own switch
            if level > self.max_depth:
                shown = ".".join((*path, key))
                raise DepthLimitExceeded(
                    f"the query nests fields more than {self.max_depth} deep (at {shown})",
                    depth={"limit": self.max_depth},
                )
            definition = parent.fields.get(name)
            if definition is None:
                continue  # validation has reported it already
            own, multiplier = self._price(parent, definition, nodes[0], level)
            child_cost, child_height = self._children(definition, nodes, level, (*path, key))
            cost += own + multiplier * child_cost
            height = max(height, 1 + child_height)
        return cost, height

    def _price(
        self, parent: GraphQLObjectType, definition: GraphQLField, node: FieldNode, level: int
    ) -> tuple[int, int]:
        args = get_argument_values(definition, node, self.variables)
        if PAGE_ARGUMENT in definition.args:
            args[PAGE_ARGUMENT] = _page_size(definition, node, args, top_level=level == 1)
        field_cost = self.cost_map.get(parent.name, {}).get(node.name.value)
        if field_cost is not None:
            return field_cost.price(args)
        return (0 if is_leaf_type(get_named_type(definition.type)) else 1), 1

    def _children(
        self,
        definition: GraphQLField,
        nodes: list[FieldNode],
        level: int,
        path: tuple[str, ...],
    ) -> tuple[int, int]:
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0, 0
        types = (
            self.schema.get_possible_types(named)  # type: ignore[arg-type]
            if is_abstract_type(named)
            else [named]
        )
        cost, height = 0, 0
        for object_type in types:
            assert isinstance(object_type, GraphQLObjectType)
            key = (object_type.name, tuple(id(n) for n in nodes))
            known = self._memo.get(key)
            if known is None or known[1] > self.max_depth - level:
                sub = collect_sub_fields(
                    self.schema, self.fragments, self.variables, object_type, nodes
                )
                known = self.fields(object_type, sub, level + 1, path)
                self._memo[key] = known
            cost, height = max(cost, known[0]), max(height, known[1])
        return cost, height


def _page_size(
    definition: GraphQLField, node: FieldNode, args: Mapping[str, Any], *, top_level: bool
) -> int:
    """The page argument's value, checked against the cap; null means the default."""
    value = args.get(PAGE_ARGUMENT)
    if value is None:
        default = definition.args[PAGE_ARGUMENT].default_value
        value = default if isinstance(default, int) else 1
    if not 1 <= value <= MAX_PAGE_SIZE:
        argument = PAGE_ARGUMENT if top_level else f"{node.name.value}.{PAGE_ARGUMENT}"
        raise BadInput(argument, value, f"must be between 1 and {MAX_PAGE_SIZE}")
    return int(value)
