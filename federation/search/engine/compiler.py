"""Filter trees and questions compiled to query DSL: counts, facets and record pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from federation.model import expr as ex
from federation.search.backend import Fingerprints, decode_cursor
from federation.search.documents import COLUMNS, RECORD_COLUMNS
from federation.search.engine.layout import (
    DONOR_KIND,
    LIST_COLUMNS,
    MAX_TERMS,
    NESTED,
    SAMPLE_KIND,
)
from federation.search.facets import FACET
from federation.search.fingerprint import DONOR_KEY_FIELD
from federation.search.query import (
    Criteria,
    PageRequest,
    missing_sort_value,
)


def _field(column: str, path: str) -> str:
    if column not in COLUMNS:
        raise ValueError(f"unknown index column {column!r}")
    return f"{path}{column}"


def _value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


MATCH_ALL: dict[str, Any] = {"match_all": {}}
MATCH_NONE: dict[str, Any] = {"match_none": {}}


def compile_filter(node: ex.Expr, path: str = "") -> dict[str, Any]:
    """Translate a filter tree to query DSL over the fields under `path` (e.g. "samples.").

    Inside a nested query every clause applies to one sample, as one row does in SQL.
    The tree is first put in negation normal form (engine queries are two-valued, so De
    Morgan's laws hold exactly): consent trees negate whole disjunctions, and a bool with
    only negative clauses makes the engine walk every document to subtract from.
    """
    return _compile(normal_form(node), path)


def normal_form(node: ex.Expr, negated: bool = False) -> ex.Expr:
    """`node` (or its negation) with NOT pushed down to the leaves, ANDs and ORs flattened,
    and "c is null" absorbed where a sibling already settles it."""
    if isinstance(node, ex.Not):
        return normal_form(node.item, not negated)
    if isinstance(node, ex.Const):
        return ex.Const(node.value != negated)
    if isinstance(node, ex.And | ex.Or):
        if negated:
            positive = normal_form(node)
            if not _has_negation(positive):
                # Nothing to cancel: one must_not of the positive clause is what an expert
                # writes, and cheaper than a disjunction of negated leaves.
                return ex.Not(positive)
        conjunction = isinstance(node, ex.And) != negated
        kind: type[ex.And] | type[ex.Or] = ex.And if conjunction else ex.Or
        items = _flattened([normal_form(i, negated) for i in node.items], kind)
        items = _absorbed(items, conjunction)
        if conjunction:
            items = [i for i in items if not _implied_not_null(i, items)]
        else:
            items = [i for i in items if not _implied_null(i, items)]
        return items[0] if len(items) == 1 else kind(tuple(items))
    return ex.Not(node) if negated else node


def _has_negation(node: ex.Expr) -> bool:
    if isinstance(node, ex.Not):
        return True
    if isinstance(node, ex.And | ex.Or):
        return any(_has_negation(i) for i in node.items)
    return False


def _requires_value(node: ex.Expr, column: str) -> bool:
    """Whether `node` can only match a row whose `column` is not null."""
    if isinstance(node, ex.In | ex.HasAny | ex.Range):
        return node.column == column
    if isinstance(node, ex.And):
        return any(_requires_value(i, column) for i in node.items)
    if isinstance(node, ex.Or):
        return bool(node.items) and all(_requires_value(i, column) for i in node.items)
    return False


def _absorbed(items: list[ex.Expr], conjunction: bool) -> list[ex.Expr]:
    """Drop null tests a sibling decides: x AND (x is null OR y) is x AND y when x is
    "c is not null"; (c is null) OR (c is not null AND y) is (c is null) OR y."""
    settled = ex.Not if conjunction else ex.IsNull
    columns = {_null_test_column(i) for i in items if isinstance(i, settled)} - {None}
    if not columns:
        return items
    out: list[ex.Expr] = []
    for item in items:
        inner = ex.Or if conjunction else ex.And
        if isinstance(item, inner):
            kept = [i for i in item.items if not _decided(i, columns, conjunction)]
            item = kept[0] if len(kept) == 1 else inner(tuple(kept))
        out.append(item)
    return out


def _implied_not_null(item: ex.Expr, siblings: list[ex.Expr]) -> bool:
    # "c is not null AND c in (...)": the second says the first already.
    if not (isinstance(item, ex.Not) and isinstance(item.item, ex.IsNull)):
        return False
    column = item.item.column
    return any(s is not item and _requires_value(s, column) for s in siblings)


def _implied_null(item: ex.Expr, siblings: list[ex.Expr]) -> bool:
    # "c is null OR NOT (c in (...))": the second matches every null row already.
    if not isinstance(item, ex.IsNull):
        return False
    return any(isinstance(s, ex.Not) and _requires_value(s.item, item.column) for s in siblings)


def _null_test_column(node: ex.Expr) -> str | None:
    if isinstance(node, ex.IsNull):
        return node.column
    if isinstance(node, ex.Not) and isinstance(node.item, ex.IsNull):
        return node.item.column
    return None


def _decided(node: ex.Expr, columns: set[str | None], conjunction: bool) -> bool:
    # Under "c is not null" (an AND), a disjunct "c is null" is false: drop it. Under
    # "c is null" (an OR), a conjunct "c is not null" is true wherever it matters: drop it.
    wanted = ex.IsNull if conjunction else ex.Not
    return isinstance(node, wanted) and _null_test_column(node) in columns


def _compile(node: ex.Expr, path: str) -> dict[str, Any]:
    if isinstance(node, ex.Const):
        return dict(MATCH_ALL) if node.value else dict(MATCH_NONE)
    if isinstance(node, ex.In):
        values = [_value(v) for v in node.values]
        name = _field(node.column, path)
        if len(values) == 1:
            return {"term": {name: values[0]}}
        return {"terms": {name: values}}
    if isinstance(node, ex.HasAny):
        return {"terms": {_field(node.column, path): list(node.values)}}
    if isinstance(node, ex.Range):
        bounds = {
            op: _value(v) for op, v in (("gte", node.gte), ("lte", node.lte), ("lt", node.lt))
        }
        bounds = {op: v for op, v in bounds.items() if v is not None}
        name = _field(node.column, path)
        if not bounds:
            return {"exists": {"field": name}}
        return {"range": {name: bounds}}
    if isinstance(node, ex.IsNull):
        name = _field(node.column, path)
        if node.column in LIST_COLUMNS:
            # Rows always carry a list (maybe empty), never null; the engine cannot tell
            # an empty list from a missing one, so mirror the embedded store: no match.
            return dict(MATCH_NONE)
        return {"bool": {"must_not": [{"exists": {"field": name}}]}}
    if isinstance(node, ex.Not):
        # In normal form only leaves are negated; "not null" is "exists".
        if isinstance(node.item, ex.IsNull) and node.item.column not in LIST_COLUMNS:
            return {"exists": {"field": _field(node.item.column, path)}}
        # must_not of a clause that cannot match a null field matches it: "not matched".
        return {"bool": {"must_not": [_compile(node.item, path)]}}
    if isinstance(node, ex.And):
        # Negated leaves become must_not clauses of the same bool, beside the positive ones.
        positive = [_compile(i, path) for i in node.items if not _plain_negation(i)]
        # NOT a AND NOT b on one field is NOT (a OR b): one terms clause.
        negated_items = [i.item for i in node.items if isinstance(i, ex.Not) and _plain_negation(i)]
        negative = [_compile(i, path) for i in _merged_terms(negated_items)]
        query: dict[str, Any] = {}
        if positive:
            query["filter"] = positive
        if negative:
            query["must_not"] = negative
        return {"bool": query}
    if isinstance(node, ex.Or):
        items = _merged_terms(list(node.items))
        if not items:
            return dict(MATCH_NONE)
        if len(items) == 1:
            return _compile(items[0], path)
        return {
            "bool": {
                "should": [_compile(i, path) for i in items],
                "minimum_should_match": 1,
            }
        }
    raise TypeError(f"unknown filter node {node!r}")


def _plain_negation(node: ex.Expr) -> bool:
    """A negated leaf that compiles to must_not (not "not null", which is `exists`)."""
    return isinstance(node, ex.Not) and not (
        isinstance(node.item, ex.IsNull) and node.item.column not in LIST_COLUMNS
    )


def _flattened(items: Sequence[ex.Expr], kind: type[ex.And] | type[ex.Or]) -> list[ex.Expr]:
    """The items of nested ANDs (or ORs) in one list: one bool level instead of several."""
    out: list[ex.Expr] = []
    for item in items:
        if isinstance(item, kind):
            out.extend(_flattened(item.items, kind))
        else:
            out.append(item)
    return out


def _merged_terms(items: list[ex.Expr]) -> list[ex.Expr]:
    """OR-ed value tests on one column as one test: "modifier is IRB or COL" is one terms.

    Exact for the engine: a list field matches `terms` when any of its values is listed,
    which is what HasAny means, and a scalar field the same for In.
    """
    out: list[ex.Expr] = []
    at: dict[tuple[str, str], int] = {}
    for item in items:
        if isinstance(item, ex.In | ex.HasAny):
            key = (type(item).__name__, item.column)
            if key in at:
                previous = out[at[key]]
                if isinstance(previous, ex.In) and isinstance(item, ex.In):
                    values = tuple(dict.fromkeys((*previous.values, *item.values)))
                    out[at[key]] = ex.In(item.column, values)
                elif isinstance(previous, ex.HasAny) and isinstance(item, ex.HasAny):
                    names = tuple(dict.fromkeys((*previous.values, *item.values)))
                    out[at[key]] = ex.HasAny(item.column, names)
                continue
            at[key] = len(out)
        out.append(item)
    return out


def _donors_with_a_sample(sample_filter: dict[str, Any]) -> dict[str, Any]:
    return {
        "bool": {
            "filter": [
                {"term": {"kind": DONOR_KIND}},
                {"nested": {"path": NESTED, "query": sample_filter}},
            ]
        }
    }


# The per-biobank buckets, and (asked with a set of biobanks to key) those that sum keys.
BIOBANK = "biobank"
BIOBANK_KEYED = "biobank_keyed"
# Facets whose buckets within one biobank's bucket are that bucket itself (one value of
# biobank_id): read from the biobank's own donors, never grouped again, as the embedded
# store copies them from its per-biobank counts.
BIOBANK_FACETS = frozenset(f for f in FACET if FACET[f].column == "biobank_id")


def _key_sum(keyed: bool) -> dict[str, Any]:
    # One sum of the donors' 26-bit keys: exact as a double up to 2^27 donors per bucket
    # (search/fingerprint.py). Sample figures need none: they are keyed on their donors.
    return {"fp": {"sum": {"field": DONOR_KEY_FIELD}}} if keyed else {}


def _donors(keyed: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Distinct donors of the bucket, with the sum of their keys (at the donor root)."""
    return {"reverse_nested": {}, "aggs": {**_key_sum(keyed), **(extra or {})}}


def _counted(keyed: bool) -> dict[str, Any]:
    """A bucket's donors, and with `keyed` the sum of their keys."""
    return {"donors": _donors(keyed)}


def _per_biobank(inner: dict[str, Any]) -> dict[str, Any]:
    return {
        "terms": {"field": f"{NESTED}.biobank_id", "size": MAX_TERMS},
        "aggs": inner,
    }


def _over_matching_samples(sample_filter: dict[str, Any], per_biobank: dict[str, Any]) -> Any:
    return {
        "nested": {"path": NESTED},
        "aggs": {"matching": {"filter": sample_filter, "aggs": per_biobank}},
    }


def _biobank_figures(
    facets: Sequence[str], segments: Mapping[str, ex.Expr] | None, keyed: bool
) -> dict[str, Any]:
    """The aggregations under one biobank's bucket: its donors (where the answer needs
    them), its segments and its facets, each with its donors' key sum when `keyed`."""
    inner: dict[str, Any] = {}
    if segments is not None:
        # The donors' index names say which generation answered.
        index = {"index": {"terms": {"field": "_index", "size": 4}}}
        inner["donors"] = _donors(keyed, index)
        for n, segment in enumerate(segments.values()):
            inner[f"segment{n}"] = {
                "filter": compile_filter(segment, f"{NESTED}."),
                "aggs": _counted(keyed),
            }
    elif set(facets) & BIOBANK_FACETS:
        inner.update(_counted(keyed))
    for facet in facets:
        definition = FACET[facet]
        field = f"{NESTED}.{definition.column}"
        if definition.bucket_width is not None:
            inner[f"facet_{facet}"] = {
                "histogram": {
                    "field": field,
                    "interval": definition.bucket_width,
                    "min_doc_count": 1,
                },
                "aggs": _counted(keyed),
            }
        elif facet not in BIOBANK_FACETS:
            inner[f"facet_{facet}"] = {
                "terms": {"field": field, "size": MAX_TERMS},
                "aggs": _counted(keyed),
            }
    return inner


def answer_search(
    expr: ex.Expr,
    facets: Sequence[str],
    segments: Mapping[str, ex.Expr] | None = None,
    *,
    fingerprints: Fingerprints = True,
) -> dict[str, Any]:
    """Per-biobank figures over the samples matching `expr`, in one search.

    With `segments` (the counts search): donors and samples per biobank and per segment,
    and the index that answered. Each facet's buckets ride along as sibling aggregations:
    facets asked under the same filter share one pass over the matching samples, which
    halved the landing page against one search per facet (docs/performance.md).
    Without `fingerprints` no key is summed (every fingerprint reads as 0); with a set of
    biobank ids only those biobanks' buckets sum keys: the others' buckets are a sibling
    `terms` without sums (`BIOBANK_KEYED` holds the summed ones).
    """
    sample_filter = compile_filter(expr, f"{NESTED}.")
    keyed_ids = sorted(fingerprints) if isinstance(fingerprints, frozenset) else None
    per_biobank: dict[str, Any] = {}
    if keyed_ids:
        # A sum costs the engine a doc-values read per donor and bucket (+12 % to +34 % of
        # a facet-heavy search at 1M): biobanks whose figures carry no noise never use one.
        plain = _per_biobank(_biobank_figures(facets, segments, False))
        plain["terms"]["exclude"] = keyed_ids
        keyed = _per_biobank(_biobank_figures(facets, segments, True))
        keyed["terms"]["include"] = keyed_ids
        per_biobank = {BIOBANK: plain, BIOBANK_KEYED: keyed}
    else:
        inner = _biobank_figures(facets, segments, bool(fingerprints))
        per_biobank = {BIOBANK: _per_biobank(inner)}
    if segments is not None:
        # Every biobank of the searched indices gets a bucket, matches or not: the answer
        # then says which biobanks' data it covered (an index gone leaves its biobank out).
        for terms in per_biobank.values():
            terms["terms"]["min_doc_count"] = 0
    return {
        "size": 0,
        "track_total_hits": False,
        "query": _donors_with_a_sample(sample_filter),
        "aggs": {"samples": _over_matching_samples(sample_filter, per_biobank)},
    }


def facet_groups(criteria: Criteria, facets: Sequence[str]) -> dict[Criteria, list[str]]:
    """Facets by the criteria their buckets are counted under, the question's own first.

    A facet is counted without its own clause (its buckets show the alternatives), so a
    facet whose clause the question does not use is counted under the question itself.
    """
    groups: dict[Criteria, list[str]] = {criteria: []}
    for facet in facets:
        groups.setdefault(criteria.without(facet), []).append(facet)
    return groups


def page_search(expr: ex.Expr, page: PageRequest) -> dict[str, Any]:
    """One page of sample records in the page's order (ties by biobank_id, sample_id),
    after the cursor, with the exact number of records over all pages."""
    order = "desc" if page.descending else "asc"
    keys = page.sort_keys()
    sort: list[dict[str, Any]] = [{"biobank_id": order}, {"sample_id": order}]
    if len(keys) > len(sort):
        # A missing value sorts as the embedded backend sorts it: the smallest of its kind.
        missing = _sort_value(keys[0], missing_sort_value(keys[0]))
        sort.insert(0, {keys[0]: {"order": order, "missing": missing}})
    body: dict[str, Any] = {
        "size": page.first + 1,  # one more tells whether there is a next page
        "track_total_hits": True,
        "query": {"bool": {"filter": [{"term": {"kind": SAMPLE_KIND}}, compile_filter(expr)]}},
        "sort": sort,
        "_source": list(RECORD_COLUMNS),
    }
    if page.after:
        position = decode_cursor(page.after, len(keys))
        body["search_after"] = [_sort_value(k, v) for k, v in zip(keys, position, strict=True)]
    return body


def _sort_value(column: str, value: Any) -> Any:
    """A cursor value as the engine sorts it: a date (ISO text in the cursor) as epoch ms."""
    if COLUMNS.get(column) != "date" or not isinstance(value, str):
        return value
    midnight = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    return int(midnight.timestamp() * 1000)
