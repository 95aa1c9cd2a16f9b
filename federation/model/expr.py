"""A small boolean filter language over index columns, shared by every backend.

The search service and the consent matcher build these trees once; each backend only
translates them (to SQL for the embedded store, to query DSL for the engine), so a filter
means the same thing everywhere and the conformance suite checks one semantics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Scalar = str | int | bool | dt.date


@dataclass(frozen=True)
class In:
    """A scalar column equals one of `values`."""

    column: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class HasAny:
    """A list column shares at least one element with `values`."""

    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """A column within bounds; a null column is never in range."""

    column: str
    gte: Scalar | None = None
    lte: Scalar | None = None
    lt: Scalar | None = None


@dataclass(frozen=True)
class IsNull:
    column: str


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


@dataclass(frozen=True)
class Const:
    value: bool


Expr = In | HasAny | Range | IsNull | And | Or | Not | Const
TRUE = Const(True)
FALSE = Const(False)


def all_of(*items: Expr) -> Expr:
    """AND, simplified: constants fold away so backends get small trees."""
    kept = tuple(i for i in items if i != TRUE)
    if FALSE in kept:
        return FALSE
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else And(kept)


def any_of(*items: Expr) -> Expr:
    """OR, simplified."""
    kept = tuple(i for i in items if i != FALSE)
    if TRUE in kept:
        return TRUE
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else Or(kept)


def negate(item: Expr) -> Expr:
    if isinstance(item, Const):
        return Const(not item.value)
    if isinstance(item, Not):
        return item.item
    return Not(item)


def evaluate(node: Expr, row: Mapping[str, Any]) -> bool:
    """Evaluate a filter tree on one index row, with the same semantics as the backends.

    Used to explain a single record (its consent obligations) and by tests as the
    reference the backends are checked against.
    """
    if isinstance(node, Const):
        return node.value
    if isinstance(node, In):
        return row.get(node.column) in node.values
    if isinstance(node, HasAny):
        return bool(set(row.get(node.column) or ()) & set(node.values))
    if isinstance(node, Range):
        value = row.get(node.column)
        if value is None:
            return False
        return (
            (node.gte is None or value >= node.gte)
            and (node.lte is None or value <= node.lte)
            and (node.lt is None or value < node.lt)
        )
    if isinstance(node, IsNull):
        return row.get(node.column) is None
    if isinstance(node, Not):
        return not evaluate(node.item, row)
    if isinstance(node, And):
        return all(evaluate(i, row) for i in node.items)
    if isinstance(node, Or):
        return any(evaluate(i, row) for i in node.items)
    raise TypeError(f"unknown filter node {node!r}")
