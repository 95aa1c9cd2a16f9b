"""The engine backend: Elasticsearch or OpenSearch behind one query compiler and result reader.

Layout (docs/engine.md has the reasoning and the numbers):

- Each published generation of a biobank is one index, `{prefix}-samples-{biobank}-{generation}`,
  behind the read alias `{prefix}-samples` (what searches use) and the biobank's alias
  `{prefix}-samples-{biobank}` (what syncs use). A full sync builds a new index and
  publishes it by one `update_aliases` call that removes the old index from both aliases
  and adds the new one, so a search sees the old generation or the new one, never half.
- An index holds two kinds of documents. A donor document carries all of the donor's
  samples as nested documents: a donor matches when one of its samples matches the whole
  filter, `reverse_nested` counts each donor once per bucket, and so donor counts are exact
  (no cardinality estimate). A flat sample document per sample serves record pages, sorted
  by (biobank_id, sample_id) and paged with `search_after`.
- The only module importing the clients is `engine_client`; everything here is shared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from federation import SCHEMA_DIR
from federation.errors import FederationError
from federation.model import expr as ex
from federation.search.backend import (
    ChangeOutcome,
    GenerationInfo,
    GenerationWriter,
    SearchBackend,
    decode_cursor,
    encode_cursor,
)
from federation.search.documents import COLUMNS
from federation.search.engine_client import (
    ClientOptions,
    EngineClient,
    EngineConflict,
    EngineError,
    EngineNotFound,
    EngineUnavailable,
    Written,
    connect,
)
from federation.search.query import (
    AGE_BUCKET_YEARS,
    BackendAnswer,
    Cell,
    Criteria,
    FacetCell,
    PageRequest,
    RecordPage,
)
from federation.settings import Settings, SettingsError

log = logging.getLogger(__name__)

ENGINE_SCHEMA_DIR = SCHEMA_DIR / "engine"
NESTED = "samples"
DONOR_KIND = "donor"
SAMPLE_KIND = "sample"
# Buckets one terms aggregation may return. Counts are exact only when every bucket comes
# back, so a response that leaves some out is an error, not a smaller answer.
MAX_TERMS = 10_000
# Bulk requests of a few MB keep the engine busy without queueing huge requests.
BULK_MAX_BYTES = 8 * 1024 * 1024
BULK_MAX_ACTIONS = 10_000
# Shard count follows data size: one primary shard per this many samples of a generation.
SAMPLES_PER_SHARD = 5_000_000
MAX_SHARDS = 16
# Retries of engine writes (bulk, create, alias swap) back off from this, doubling.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 15.0
SPOOL_BATCH_ROWS = 20_000
# Bulk requests in flight during a load: the engine indexes one while the next is encoded.
BULK_IN_FLIGHT = 2
# Ids of one sample_ids / donor rebuild page.
SCAN_PAGE = 10_000
# Index names allow 255 bytes; a long biobank id is shortened with a hash to stay unique.
MAX_BIOBANK_KEY = 120
RECORD_FIELDS = (
    "biobank_id",
    "sample_id",
    "collection_id",
    "donor_id",
    "sex",
    "age",
    "material_type",
    "collection_date",
    "storage_temperature",
    "availability",
    "diagnoses",
    "data_categories",
    "consent",
    "last_updated",
    # The consent columns let the service explain each record's obligations.
    "duo_permission",
    "duo_modifiers",
    "duo_diseases",
    "duo_countries",
    "duo_ts_date",
    "duo_mor_date",
)
LIST_COLUMNS = frozenset(c for c, kind in COLUMNS.items() if kind.endswith("[]"))
DATE_COLUMNS = frozenset(c for c, kind in COLUMNS.items() if kind == "date")
TIMESTAMP_COLUMNS = frozenset(c for c, kind in COLUMNS.items() if kind == "timestamp")
# Facet name -> nested field whose terms are the bucket keys ("age" is a histogram).
FACET_FIELDS = {
    "material_type": "material_type",
    "sex": "sex",
    "chapter": "chapters",
    "block": "blocks",
    "biobank": "biobank_id",
    "collection_type": "collection_types",
}

T = TypeVar("T")


# --- names ------------------------------------------------------------------------------------


def biobank_key(biobank_id: str) -> str:
    """The biobank id as it appears in index names: lowercase, no '-', one-to-one.

    Index names must be lowercase and the generation follows the last '-', so every
    character other than [a-z0-9] is escaped as `_xx` (its UTF-8 bytes in hex).
    """
    out = []
    for char in biobank_id:
        if "a" <= char <= "z" or "0" <= char <= "9":
            out.append(char)
        else:
            out.append("".join(f"_{byte:02x}" for byte in char.encode()))
    key = "".join(out)
    if len(key) > MAX_BIOBANK_KEY:
        digest = hashlib.sha256(biobank_id.encode()).hexdigest()[:16]
        key = f"{key[: MAX_BIOBANK_KEY - 18]}_h{digest}"
    return key


def new_generation() -> str:
    """A generation name that sorts by time and is valid in an index name."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S%fz")


@dataclass(frozen=True)
class IndexNames:
    """Every index and alias name the backend uses, from the configured prefix."""

    prefix: str

    @property
    def read_alias(self) -> str:
        return f"{self.prefix}-samples"

    @property
    def locks(self) -> str:
        return f"{self.prefix}-locks"

    def biobank_alias(self, biobank_id: str) -> str:
        return f"{self.read_alias}-{biobank_key(biobank_id)}"

    def index(self, biobank_id: str, generation: str) -> str:
        return f"{self.biobank_alias(biobank_id)}-{generation}"

    def generations(self, biobank_id: str) -> str:
        """Wildcard over every index of the biobank (never another's: keys hold no '-')."""
        return f"{self.biobank_alias(biobank_id)}-*"

    def all_generations(self) -> str:
        return f"{self.read_alias}-*"

    @staticmethod
    def generation_of(index: str) -> str:
        return index.rsplit("-", 1)[1]


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineConfig:
    """What the engine backend needs from the settings."""

    distribution: str
    urls: tuple[str, ...]
    username: str = ""
    password: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    verify_certs: bool = True
    ca_certs: Path | None = None
    search_timeout: float = 3.0
    search_retries: int = 1
    bulk_timeout: float = 120.0
    bulk_retries: int = 5
    prefix: str = "biofed"
    replicas: int = 0
    lock_ttl: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        """The engine part of the settings."""
        return cls(
            distribution=settings.backend,
            urls=settings.engine_urls,
            username=settings.engine_username,
            password=settings.engine_password,
            api_key=settings.engine_api_key,
            verify_certs=settings.engine_verify_certs,
            ca_certs=settings.engine_ca_certs,
            search_timeout=settings.engine_search_timeout,
            search_retries=settings.engine_search_retries,
            bulk_timeout=settings.engine_bulk_timeout,
            bulk_retries=settings.engine_bulk_retries,
            prefix=settings.engine_index_prefix,
            replicas=settings.engine_replicas,
            lock_ttl=settings.engine_lock_ttl,
        )

    def client_options(self, *, bulk: bool) -> ClientOptions:
        """Searches: short timeout, few immediate retries. Writes: long timeout; the
        backend retries them itself with backoff, so the client does not."""
        return ClientOptions(
            urls=self.urls,
            username=self.username,
            password=self.password,
            api_key=self.api_key,
            verify_certs=self.verify_certs,
            ca_certs=self.ca_certs,
            timeout=self.bulk_timeout if bulk else self.search_timeout,
            retries=0 if bulk else self.search_retries,
            retry_on_timeout=bulk,
            pool_size=BULK_IN_FLIGHT + 2 if bulk else 8,
        )


def load_index_schema(distribution: str, major: int) -> dict[str, Any]:
    """The index settings and mappings for an engine version, from schema/engine/."""
    path = ENGINE_SCHEMA_DIR / f"{distribution}-{major}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in ENGINE_SCHEMA_DIR.glob("*-*.json")))
        raise EngineError(f"{distribution} {major}.x is not supported (schema/engine has: {known})")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


# --- query compiler ----------------------------------------------------------------------------


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


def _donors() -> dict[str, Any]:
    return {"reverse_nested": {}}


def _per_biobank(inner: dict[str, Any]) -> dict[str, Any]:
    return {
        "terms": {"field": f"{NESTED}.biobank_id", "size": MAX_TERMS},
        "aggs": inner,
    }


def _over_matching_samples(sample_filter: dict[str, Any], per_biobank: dict[str, Any]) -> Any:
    return {
        "nested": {"path": NESTED},
        "aggs": {"matching": {"filter": sample_filter, "aggs": {"biobank": per_biobank}}},
    }


def answer_search(
    expr: ex.Expr, facets: Sequence[str], segments: Mapping[str, ex.Expr] | None = None
) -> dict[str, Any]:
    """Per-biobank figures over the samples matching `expr`, in one search.

    With `segments` (the counts search): donors and samples per biobank and per segment,
    and the index that answered. Each facet's buckets ride along as sibling aggregations:
    facets asked under the same filter share one pass over the matching samples, which
    halved the landing page against one search per facet (docs/performance.md).
    """
    sample_filter = compile_filter(expr, f"{NESTED}.")
    inner: dict[str, Any] = {}
    if segments is not None:
        # The donors' index names say which generation answered.
        inner["donors"] = {
            **_donors(),
            "aggs": {"index": {"terms": {"field": "_index", "size": 4}}},
        }
        for n, segment in enumerate(segments.values()):
            inner[f"segment{n}"] = {
                "filter": compile_filter(segment, f"{NESTED}."),
                "aggs": {"donors": _donors()},
            }
    elif "biobank" in facets:
        inner["donors"] = _donors()
    for facet in facets:
        if facet == "age":
            inner[f"facet_{facet}"] = {
                "histogram": {
                    "field": f"{NESTED}.age",
                    "interval": AGE_BUCKET_YEARS,
                    "min_doc_count": 1,
                },
                "aggs": {"donors": _donors()},
            }
        elif facet != "biobank":  # the per-biobank buckets themselves
            inner[f"facet_{facet}"] = {
                "terms": {"field": f"{NESTED}.{FACET_FIELDS[facet]}", "size": MAX_TERMS},
                "aggs": {"donors": _donors()},
            }
    return {
        "size": 0,
        "track_total_hits": False,
        "query": _donors_with_a_sample(sample_filter),
        "aggs": {"samples": _over_matching_samples(sample_filter, _per_biobank(inner))},
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
    """One page of sample records in (biobank_id, sample_id) order, after the cursor."""
    body: dict[str, Any] = {
        "size": page.first + 1,  # one more tells whether there is a next page
        "track_total_hits": False,
        "query": {"bool": {"filter": [{"term": {"kind": SAMPLE_KIND}}, compile_filter(expr)]}},
        "sort": [{"biobank_id": "asc"}, {"sample_id": "asc"}],
        "_source": list(RECORD_FIELDS),
    }
    if page.after:
        body["search_after"] = decode_cursor(page.after)
    return body


# --- result reader -----------------------------------------------------------------------------


def _biobank_buckets(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    aggs = response.get("aggregations")
    if not aggs:  # no index behind the alias yet: nothing is published
        return []
    terms = aggs["samples"]["matching"]["biobank"]
    _complete(terms)
    buckets: list[dict[str, Any]] = terms["buckets"]
    return buckets


def _complete(terms: Mapping[str, Any]) -> None:
    if terms.get("sum_other_doc_count", 0):
        raise EngineError(f"more than {MAX_TERMS} buckets in one aggregation; counts would be cut")


def read_counts(
    response: Mapping[str, Any], segment_names: Sequence[str]
) -> tuple[dict[str, Cell], dict[str, dict[str, Cell]], dict[str, str]]:
    """Cells per biobank, segment cells per biobank, and the generation that answered."""
    by_biobank: dict[str, Cell] = {}
    segments: dict[str, dict[str, Cell]] = {}
    generation: dict[str, str] = {}
    for bucket in _biobank_buckets(response):
        biobank = str(bucket["key"])
        by_biobank[biobank] = Cell(int(bucket["donors"]["doc_count"]), int(bucket["doc_count"]))
        segments[biobank] = {
            name: Cell(
                int(bucket[f"segment{n}"]["donors"]["doc_count"]),
                int(bucket[f"segment{n}"]["doc_count"]),
            )
            for n, name in enumerate(segment_names)
        }
        indices = bucket["donors"]["index"]["buckets"]
        if indices:
            generation[biobank] = IndexNames.generation_of(str(indices[0]["key"]))
    return by_biobank, segments, generation


def read_facet(facet: str, response: Mapping[str, Any]) -> list[FacetCell]:
    """A facet's cells (key, biobank, donors, samples) from its search."""
    cells = []
    for bucket in _biobank_buckets(response):
        biobank = str(bucket["key"])
        if facet == "biobank":
            cells.append(
                FacetCell(
                    facet,
                    biobank,
                    biobank,
                    int(bucket["donors"]["doc_count"]),
                    int(bucket["doc_count"]),
                )
            )
            continue
        agg = bucket[f"facet_{facet}"]
        if facet != "age":
            _complete(agg)
        for inner in agg["buckets"]:
            cells.append(
                FacetCell(
                    facet,
                    _facet_key(facet, inner["key"]),
                    biobank,
                    int(inner["donors"]["doc_count"]),
                    int(inner["doc_count"]),
                )
            )
    return cells


def _facet_key(facet: str, key: Any) -> str:
    if facet == "age":
        low = int(key)
        return f"{low}-{low + AGE_BUCKET_YEARS - 1}"
    return str(key)


def _from_source(source: Mapping[str, Any]) -> dict[str, Any]:
    # Dates come back as the embedded store returns them: date and aware datetime objects.
    row: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        value = source.get(name)
        if isinstance(value, str) and name in DATE_COLUMNS:
            value = dt.date.fromisoformat(value)
        elif isinstance(value, str) and name in TIMESTAMP_COLUMNS:
            value = dt.datetime.fromisoformat(value)
        row[name] = value
    return row


def read_page(response: Mapping[str, Any], page: PageRequest) -> RecordPage:
    """Rows of a page, the cursor after its last row, and whether more follow."""
    hits = response["hits"]["hits"]
    rows = [_from_source(hit["_source"]) for hit in hits[: page.first]]
    end = encode_cursor((rows[-1]["biobank_id"], rows[-1]["sample_id"])) if rows else None
    return RecordPage(tuple(rows), end, len(hits) > page.first)


# --- documents and bulk payloads ---------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # Stored in UTC, as the embedded store does; a naive time is taken to be UTC.
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in the engine")


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, default=_json_default, separators=(",", ":"), ensure_ascii=False
    ).encode()


_SAMPLE_HEAD = b'{"kind":"' + SAMPLE_KIND.encode() + b'",'


def _sql_json_value(name: str, kind: str) -> str:
    column = '"' + name + '"'
    if kind == "timestamp":
        # As _json_default writes it: ISO 8601 in UTC (DuckDB's own text has a space).
        return f"strftime(timezone('UTC', {column}), '%Y-%m-%dT%H:%M:%S.%f+00:00')"
    return column


def spool_json_sql(path: Path) -> str:
    """SQL reading a spool file as (donor_id, sample doc id as JSON, row JSON) by donor.

    The row JSON has the COLUMNS in order, as `_dumps` of the row would; the id comes out
    JSON-quoted so any character in a source's sample id survives into the bulk action.
    """
    fields = ", ".join(f"{name} := {_sql_json_value(name, kind)}" for name, kind in COLUMNS.items())
    source = "'" + str(path).replace("'", "''") + "'"
    return (
        f"SELECT donor_id, to_json('{sample_doc_id('')}' || sample_id)::VARCHAR AS doc_id, "
        f"to_json(struct_pack({fields}))::VARCHAR AS doc "
        f"FROM read_parquet({source}) ORDER BY donor_id, sample_id"
    )


def sample_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The flat document of one sample row (for record pages and incremental rebuilds)."""
    return {"kind": SAMPLE_KIND, **{name: row.get(name) for name in COLUMNS}}


def donor_document(biobank_id: str, donor_id: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    """A donor with every one of its sample rows nested: the unit donor counts are made of."""
    return {
        "kind": DONOR_KIND,
        "biobank_id": biobank_id,
        "donor_id": donor_id,
        NESTED: [{name: row.get(name) for name in COLUMNS} for row in rows],
    }


def sample_doc_id(sample_id: str) -> str:
    return f"s:{sample_id}"


def donor_doc_id(donor_id: str) -> str:
    return f"d:{donor_id}"


class BulkPayloads:
    """Accumulates actions into NDJSON payloads of a bounded size."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._size = 0
        self._actions = 0

    def add(self, action: Mapping[str, Any], document: Mapping[str, Any] | None) -> bytes | None:
        """Add one action; return a full payload when this one filled it."""
        return self.add_encoded(action, None if document is None else _dumps(document))

    def add_encoded(self, action: Mapping[str, Any], document: bytes | None) -> bytes | None:
        """Add one action whose document is already JSON."""
        return self.add_line(_dumps(action), document)

    def add_line(self, line: bytes, document: bytes | None) -> bytes | None:
        """Add one action already encoded as JSON, with its document if it has one."""
        self._lines.append(line)
        self._size += len(line) + 1
        if document is not None:
            self._lines.append(document)
            self._size += len(document) + 1
        self._actions += 1
        if self._size >= BULK_MAX_BYTES or self._actions >= BULK_MAX_ACTIONS:
            return self.take()
        return None

    def take(self) -> bytes | None:
        """The payload so far (None when empty), and start a new one."""
        if not self._lines:
            return None
        payload = b"\n".join(self._lines) + b"\n"
        self._lines, self._size, self._actions = [], 0, 0
        return payload


# --- locks ------------------------------------------------------------------------------------


class BiobankLockHeld(FederationError, BlockingIOError):
    """Another sync (on this host or another) holds the biobank's lock.

    A `BlockingIOError` (an `OSError`), as a held flock is, so the sync layer records a
    failed run for it.
    """

    code = "SYNC_LOCK_HELD"


class BiobankLockLost(BiobankLockHeld):
    """Our lock expired and another sync may hold it now: we must not publish."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class Lease:
    """A held sync lock of one biobank, renewed in the background until released."""

    def __init__(self, locks: EngineLocks, biobank_id: str, document: dict[str, Any]) -> None:
        self.locks = locks
        self.biobank_id = biobank_id
        self.document = document
        self.seq_no = -1
        self.primary_term = -1
        self.lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def doc_id(self) -> str:
        return biobank_key(self.biobank_id)

    def start_renewing(self) -> None:
        self._renewer = threading.Thread(
            target=self._renew_until_released, name=f"lock-{self.biobank_id}", daemon=True
        )
        self._renewer.start()

    def _renew_until_released(self) -> None:
        interval = self.locks.ttl / 3
        while not self._stop.wait(interval):
            try:
                self.renew()
            except EngineConflict:
                self.lost = "another sync took it over after it expired"
                log.error("sync lock of %s lost: %s", self.biobank_id, self.lost)
                return
            except (EngineUnavailable, EngineError) as err:
                # Keep trying: the engine may be back before the lease runs out.
                log.warning("could not renew the sync lock of %s: %s", self.biobank_id, err)

    def renew(self) -> None:
        """Push the expiry forward, provided nobody took the lock over meanwhile."""
        document = {**self.document, "expires_at": _now_ms() + int(self.locks.ttl * 1000)}
        self.seq_no, self.primary_term = self.locks.client.put(
            self.locks.index,
            self.doc_id,
            document,
            if_seq_no=self.seq_no,
            if_primary_term=self.primary_term,
        )
        self.document = document

    def check(self) -> None:
        """Raise BiobankLockLost unless the lock is still ours (called before publishing)."""
        if self.lost is None and _now_ms() >= int(self.document["expires_at"]):
            self.lost = "it expired: the sync could not renew it in time"
        if self.lost is not None:
            raise BiobankLockLost(f"sync lock of {self.biobank_id} lost: {self.lost}")

    def release(self) -> None:
        """Stop renewing and delete the lock document if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if self.lost is not None:
            return
        try:
            self.locks.client.delete(
                self.locks.index,
                self.doc_id,
                if_seq_no=self.seq_no,
                if_primary_term=self.primary_term,
            )
        except (EngineConflict, EngineNotFound):
            pass
        except (EngineUnavailable, EngineError) as err:
            log.warning(
                "sync lock of %s not released (%s); it expires by itself", self.biobank_id, err
            )


class EngineLocks:
    """One sync per biobank across hosts: a lock document per biobank in `{prefix}-locks`.

    Taking a lock creates the document with `op_type=create`, which exactly one caller
    wins. The holder renews its expiry; a lock past its expiry was left by a sync that
    died, and is taken over with a write conditional on its sequence number, which again
    exactly one caller wins. Expiry compares clocks of different hosts, so the TTL must
    be far above their skew (minutes against NTP's milliseconds).
    """

    def __init__(self, client: EngineClient, index: str, ttl: float, replicas: int) -> None:
        self.client = client
        self.index = index
        self.ttl = ttl
        self.replicas = replicas
        self._index_ready = False

    def _ensure_index(self) -> None:
        if self._index_ready:
            return
        body = json.loads((ENGINE_SCHEMA_DIR / "locks.json").read_text(encoding="utf-8"))
        body.pop("description", None)
        body["settings"]["index"]["number_of_replicas"] = self.replicas
        try:
            self.client.create_index(self.index, body)
        except EngineError as err:
            if "resource_already_exists" not in str(err):
                raise
        self._index_ready = True

    def acquire(self, biobank_id: str) -> Lease:
        """Take the biobank's lock or raise BiobankLockHeld naming its holder."""
        self._ensure_index()
        now = _now_ms()
        lease = Lease(
            self,
            biobank_id,
            {
                "biobank_id": biobank_id,
                "owner": uuid.uuid4().hex,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now,
                "expires_at": now + int(self.ttl * 1000),
            },
        )
        try:
            lease.seq_no, lease.primary_term = self.client.put(
                self.index, lease.doc_id, lease.document, create=True
            )
        except EngineConflict:
            self._take_over_if_stale(lease)
        lease.start_renewing()
        return lease

    def _take_over_if_stale(self, lease: Lease) -> None:
        current = self.client.get(self.index, lease.doc_id)
        if current is None:  # released between our two calls: try once more
            lease.seq_no, lease.primary_term = self.client.put(
                self.index, lease.doc_id, lease.document, create=True
            )
            return
        holder = current["_source"]
        expires = int(holder.get("expires_at", 0))
        if expires > _now_ms():
            until = dt.datetime.fromtimestamp(expires / 1000, dt.UTC).isoformat(timespec="seconds")
            raise BiobankLockHeld(
                f"a sync of {lease.biobank_id} is already running on {holder.get('host')} "
                f"(pid {holder.get('pid')}); its lock expires at {until} unless renewed"
            )
        try:
            lease.seq_no, lease.primary_term = self.client.put(
                self.index,
                lease.doc_id,
                lease.document,
                if_seq_no=int(current["_seq_no"]),
                if_primary_term=int(current["_primary_term"]),
            )
        except EngineConflict:
            raise BiobankLockHeld(
                f"a sync of {lease.biobank_id} has just started elsewhere"
            ) from None
        log.warning(
            "took over the stale sync lock of %s from %s (pid %s)",
            lease.biobank_id,
            holder.get("host"),
            holder.get("pid"),
        )


# --- generations -------------------------------------------------------------------------------


# ChangeOutcome (what apply_changes returns) is shared by every backend: search/backend.py.


class EngineGenerationWriter(GenerationWriter):
    """Builds a biobank's next generation as a new index; publishes it by an alias swap.

    Rows are spooled to a local Parquet file while the sync pulls (a donor's samples may
    arrive in any order and batch); `publish` sorts them by donor, bulk loads donor and
    sample documents into a new index with replicas 0 and refresh off, restores the
    settings, refreshes, checks the count, swaps the aliases in one call and deletes the
    old index. On any failure the new index is deleted and the old one serves on.
    """

    def __init__(self, backend: EngineBackend, biobank_id: str) -> None:
        super().__init__(biobank_id)
        import pyarrow.parquet as pq

        from federation.search.embedded import ARROW_SCHEMA

        self.backend = backend
        self.generation = new_generation()
        self.index = backend.names.index(biobank_id, self.generation)
        self.count = 0
        self._created = False
        self._swapped = False
        self._lease = backend.acquire_lock(biobank_id)
        try:
            self._spool_dir = Path(tempfile.mkdtemp(prefix="biofed-engine-spool-"))
            self._spool_path = self._spool_dir / "rows.parquet"
            self._spool: Any = pq.ParquetWriter(self._spool_path, ARROW_SCHEMA)
        except BaseException:
            backend.release_lock(biobank_id)
            raise
        self._arrow_schema = ARROW_SCHEMA

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        import pyarrow as pa

        assert self._spool is not None, "writer already closed"
        self._spool.write_table(pa.Table.from_pylist(list(rows), schema=self._arrow_schema))
        self.count += len(rows)

    def _close_spool(self) -> None:
        if self._spool is not None:
            with contextlib.suppress(Exception):
                self._spool.close()
            self._spool = None

    def _publish(self) -> GenerationInfo:
        self._close_spool()
        self._lease.check()
        backend = self.backend
        names = backend.names
        backend.drop_orphans(self.biobank_id)
        schema = backend.index_schema()
        shards = min(MAX_SHARDS, max(1, math.ceil(self.count / SAMPLES_PER_SHARD)))
        settings = _merge(schema["settings"], schema["loading_settings"])
        settings["index"]["number_of_shards"] = shards
        body = {
            "settings": settings,
            "mappings": {
                **schema["mappings"],
                "_meta": {"biobank_id": self.biobank_id, "generation": self.generation},
            },
        }
        backend.retrying("create index", lambda: backend.writer.create_index(self.index, body))
        self._created = True
        started = time.monotonic()
        self._load()
        loaded_s = time.monotonic() - started
        # Every setting the load changed goes back to its serving value.
        serving = _same_paths(schema["settings"], schema["loading_settings"])
        serving["index"]["number_of_replicas"] = backend.config.replicas
        backend.retrying(
            "restore settings", lambda: backend.writer.put_settings(self.index, serving)
        )
        backend.retrying("refresh", lambda: backend.writer.refresh(self.index))
        # The load ran with an asynchronous translog: commit it before anyone relies on it.
        backend.retrying("flush", lambda: backend.writer.flush(self.index))
        body_count = {"query": {"term": {"kind": SAMPLE_KIND}}}
        indexed = backend.retrying("count", lambda: backend.writer.count(self.index, body_count))
        if indexed != self.count:
            raise EngineError(f"{self.index} holds {indexed} samples, {self.count} were written")
        info = GenerationInfo(
            self.biobank_id,
            self.generation,
            self.count,
            dt.datetime.now(dt.UTC).isoformat(),
            self.metadata,
        )
        meta = _meta(info)
        backend.retrying("publish metadata", lambda: backend.writer.put_meta(self.index, meta))
        self._lease.check()
        old = backend.live_indices(self.biobank_id)
        actions: list[dict[str, Any]] = [
            {"add": {"index": self.index, "alias": names.read_alias}},
            {"add": {"index": self.index, "alias": names.biobank_alias(self.biobank_id)}},
        ]
        for index in old:
            actions.append({"remove": {"index": index, "alias": names.read_alias}})
            actions.append(
                {"remove": {"index": index, "alias": names.biobank_alias(self.biobank_id)}}
            )
        backend.swap_aliases(self.biobank_id, self.index, actions)
        self._swapped = True
        log.info(
            "published %s: %d samples in %.1fs (%.0f samples/s)",
            self.index,
            self.count,
            loaded_s,
            self.count / loaded_s if loaded_s else 0.0,
        )
        try:
            backend.writer.delete_indices(old)
        except (EngineUnavailable, EngineError) as err:
            log.warning("old generation %s not deleted (%s); the next sync removes it", old, err)
        self._finish()
        return info

    def _load(self) -> None:
        """Bulk load the spooled rows, grouped by donor, into the new index.

        DuckDB sorts the rows by donor and writes each row's JSON (Python's per-row dict and
        json.dumps were most of the sync's CPU at 10M samples; see docs/performance.md).
        Payloads are sent from a small thread pool while the next ones are built, so the
        engine indexes while this process works; an error in any payload stops the load.
        """
        import duckdb

        payloads = BulkPayloads()
        in_flight: deque[Future[None]] = deque()
        db = duckdb.connect(":memory:")
        with ThreadPoolExecutor(BULK_IN_FLIGHT, thread_name_prefix="bulk") as senders:

            def send(payload: bytes | None) -> None:
                if payload is None:
                    return
                while len(in_flight) >= BULK_IN_FLIGHT:
                    in_flight.popleft().result()  # raises the first failure
                in_flight.append(senders.submit(self._send, payload))

            try:
                reader = db.sql(spool_json_sql(self._spool_path)).to_arrow_reader(SPOOL_BATCH_ROWS)
                donor: str | None = None
                samples: list[tuple[bytes, bytes]] = []
                for batch in reader:
                    donors, ids, docs = (batch.column(i).to_pylist() for i in range(3))
                    for donor_id, doc_id, doc in zip(donors, ids, docs, strict=True):
                        if donor_id != donor and samples:
                            self._add_donor(payloads, str(donor), samples, send)
                            samples = []
                        donor = donor_id
                        samples.append((doc_id.encode(), doc.encode()))
                if samples:
                    self._add_donor(payloads, str(donor), samples, send)
                send(payloads.take())
                while in_flight:
                    in_flight.popleft().result()
            finally:
                for pending in in_flight:
                    pending.cancel()
                db.close()

    def _add_donor(
        self,
        payloads: BulkPayloads,
        donor_id: str,
        samples: list[tuple[bytes, bytes]],
        send: Callable[[bytes | None], None],
    ) -> None:
        # Each row's JSON is used twice: nested in the donor and on its own.
        head = _dumps({"kind": DONOR_KIND, "biobank_id": self.biobank_id, "donor_id": donor_id})
        nested = b",".join(body for _, body in samples)
        donor = head[:-1] + b',"' + NESTED.encode() + b'":[' + nested + b"]}"
        action = {"index": {"_index": self.index, "_id": donor_doc_id(donor_id)}}
        send(payloads.add_encoded(action, donor))
        # Index names are our own ASCII; the ids arrive JSON-quoted from the spool query.
        opening = b'{"index":{"_index":"' + self.index.encode() + b'","_id":'
        for doc_id, body in samples:
            send(payloads.add_line(opening + doc_id + b"}}", _SAMPLE_HEAD + body[1:]))

    def _send(self, payload: bytes) -> None:
        backend = self.backend

        def attempt() -> None:
            _raise_for_bulk(backend.writer.bulk(payload), conflicts_ok=False)

        backend.retrying("bulk load", attempt)

    def abort(self) -> None:
        self._close_spool()
        if self._created and not self._swapped:
            try:
                if self.index in self.backend.live_indices(self.biobank_id):
                    # The swap went through though its answer was lost: it is published.
                    log.warning("%s was published although the sync failed after it", self.index)
                else:
                    self.backend.writer.delete_indices([self.index])
            except (EngineUnavailable, EngineError) as err:
                log.warning(
                    "half-built %s not deleted (%s); the next sync of %s removes it",
                    self.index,
                    err,
                    self.biobank_id,
                )
        self._finish()

    def _finish(self) -> None:
        self._close_spool()
        shutil.rmtree(self._spool_dir, ignore_errors=True)
        if self._lease is not None:
            self.backend.release_lock(self.biobank_id)
            self._lease = None  # type: ignore[assignment]


def _move(samples: dict[str, dict[str, Any]], sample_id: str, document: Any) -> None:
    """Take a sample from whichever donor holds it and, given its document, add it to its donor."""
    for rows in samples.values():
        rows.pop(sample_id, None)
    if document is not None:
        samples.setdefault(str(document["donor_id"]), {})[sample_id] = document


def _meta(info: GenerationInfo) -> dict[str, Any]:
    return {
        "biobank_id": info.biobank_id,
        "generation": info.generation,
        "documents": info.documents,
        "published_at": info.published_at,
        "metadata": info.metadata,
    }


def _same_paths(values: Mapping[str, Any], shape: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` at the paths `shape` has (None where `values` has none)."""
    out: dict[str, Any] = {}
    for key, value in shape.items():
        if isinstance(value, Mapping):
            inner = values.get(key)
            out[key] = _same_paths(inner if isinstance(inner, Mapping) else {}, value)
        else:
            out[key] = values.get(key)
    return out


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    assert isinstance(out, dict)
    return out


class _Overloaded(EngineUnavailable):
    """Some bulk items were refused with 429: the whole payload is sent again (idempotent)."""


def _raise_for_bulk(written: Sequence[Written], *, conflicts_ok: bool) -> None:
    for item in written:
        if item.status < 300 or (conflicts_ok and item.status in (404, 409)):
            continue
        if item.status == 429 or item.status >= 500:
            raise _Overloaded(f"engine refused bulk items ({item.status}): {item.error}")
        raise EngineError(f"document {item.id} rejected ({item.status}): {item.error}", item.status)


# --- the backend -------------------------------------------------------------------------------


class EngineBackend(SearchBackend):
    """Searches and stores generations in Elasticsearch or OpenSearch."""

    name = "engine"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.names = IndexNames(config.prefix)
        try:
            # Two clients: searches fail fast, writes wait long and are retried with backoff.
            self.reader = connect(config.distribution, config.client_options(bulk=False))
            self.writer = connect(config.distribution, config.client_options(bulk=True))
        except ValueError as err:
            raise SettingsError(str(err)) from None
        self.locks = EngineLocks(self.writer, self.names.locks, config.lock_ttl, config.replicas)
        self._held: dict[str, tuple[Lease, int]] = {}
        self._held_lock = threading.Lock()
        self._schema: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineBackend:
        """The backend for `settings.backend` elasticsearch / opensearch."""
        return cls(EngineConfig.from_settings(settings))

    # --- engine version and schema -------------------------------------------------------------

    def index_schema(self) -> dict[str, Any]:
        """Settings and mappings for the engine's version (asked once, on first write)."""
        if self._schema is None:
            info = self.retrying("read the engine version", self.writer.info)
            version = info.get("version", {})
            distribution = str(version.get("distribution", "elasticsearch"))
            if distribution != self.config.distribution:
                raise EngineError(
                    f"backend is {self.config.distribution} but {self.config.urls[0]} runs "
                    f"{distribution}; set backend: {distribution}"
                )
            major = int(str(version.get("number", "0")).split(".")[0])
            self._schema = load_index_schema(distribution, major)
        return self._schema

    # --- reading -------------------------------------------------------------------------------

    def answer(
        self,
        criteria: Criteria,
        *,
        facets: Sequence[str] = (),
        page: PageRequest | None = None,
        segments: Mapping[str, ex.Expr] | None = None,
        page_filter: ex.Expr | None = None,
    ) -> BackendAnswer:
        segments = dict(segments or {})
        expr = criteria.to_expr()
        read = self.names.read_alias
        groups = facet_groups(criteria, facets)
        searches: list[tuple[str, Mapping[str, Any]]] = [
            (read, answer_search(c.to_expr(), grouped, segments if c == criteria else None))
            for c, grouped in groups.items()
        ]
        if page is not None:
            condition = expr if page_filter is None else ex.all_of(expr, page_filter)
            searches.append((read, page_search(condition, page)))
        # One round trip: the engine runs the searches side by side.
        responses = self.reader.msearch(searches)
        by_biobank, split, generation = read_counts(responses[0], list(segments))
        cells: list[FacetCell] = []
        for grouped, response in zip(groups.values(), responses, strict=False):
            for facet in grouped:
                cells.extend(read_facet(facet, response))
        record_page = read_page(responses[-1], page) if page is not None else None
        return BackendAnswer(by_biobank, tuple(cells), record_page, generation, split)

    def published(self) -> dict[str, GenerationInfo]:
        out = {}
        for mapping in self.reader.mappings(self.names.read_alias).values():
            meta = mapping.get("_meta") or {}
            if "documents" not in meta:
                continue
            out[meta["biobank_id"]] = GenerationInfo(
                meta["biobank_id"],
                meta["generation"],
                int(meta["documents"]),
                meta["published_at"],
                meta.get("metadata") or {},
            )
        return out

    def sample_ids(self, biobank_id: str) -> set[str]:
        query = {"term": {"kind": SAMPLE_KIND}}
        return {
            str(hit["_source"]["sample_id"])
            for hit in self._scan(self.names.biobank_alias(biobank_id), query, ["sample_id"])
        }

    def _scan(
        self, index: str, query: Mapping[str, Any], fields: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """Every hit of a query, paged with search_after on the unique sample_id."""
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": SCAN_PAGE,
                "query": query,
                "sort": [{"sample_id": "asc"}],
                "_source": list(fields),
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            response = self.retrying("scan", partial(self.writer.search, index, body))
            hits = response["hits"]["hits"]
            yield from hits
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    def ready(self) -> bool:
        try:
            return self.reader.health() in ("green", "yellow")
        except (EngineUnavailable, EngineError):
            return False

    # --- writing -------------------------------------------------------------------------------

    def generation_writer(self, biobank_id: str) -> GenerationWriter:
        return EngineGenerationWriter(self, biobank_id)

    def live_indices(self, biobank_id: str) -> list[str]:
        """The index (normally one) behind the biobank's alias."""
        alias = self.names.biobank_alias(biobank_id)
        found = self.retrying(
            "read aliases", lambda: self.writer.aliases(self.names.generations(biobank_id))
        )
        return sorted(index for index, aliases in found.items() if alias in aliases)

    def drop_orphans(self, biobank_id: str) -> list[str]:
        """Delete the biobank's indices that no alias serves: left by a crashed sync.

        Safe only under the biobank's lock, when no other sync is building one.
        """
        alias = self.names.biobank_alias(biobank_id)
        found = self.retrying(
            "read aliases", lambda: self.writer.aliases(self.names.generations(biobank_id))
        )
        orphans = sorted(index for index, aliases in found.items() if alias not in aliases)
        if orphans:
            log.warning("deleting indices a failed sync of %s left behind: %s", biobank_id, orphans)
            self.retrying("delete orphans", lambda: self.writer.delete_indices(orphans))
        return orphans

    def swap_aliases(
        self, biobank_id: str, index: str, actions: Sequence[Mapping[str, Any]]
    ) -> None:
        """Apply the alias swap once, even when an answer is lost and the call retried."""

        def attempt() -> None:
            try:
                self.writer.update_aliases(actions)
            except (EngineUnavailable, EngineError):
                # The change may have been applied before the connection dropped.
                with contextlib.suppress(EngineUnavailable, EngineError):
                    if index in self.writer.aliases(self.names.biobank_alias(biobank_id)):
                        return
                raise

        self.retrying("swap aliases", attempt)

    def remove_biobank(self, biobank_id: str) -> None:
        with self.lock(biobank_id):
            indices = list(self.writer.aliases(self.names.generations(biobank_id)))
            self.retrying("delete indices", lambda: self.writer.delete_indices(indices))

    def apply_changes(
        self,
        biobank_id: str,
        upserts: Sequence[Mapping[str, Any]],
        deletes: Sequence[str],
        *,
        version: int,
    ) -> ChangeOutcome:
        """Upsert sample rows and delete samples by id in the live generation (incremental sync).

        `version` grows with every change at the source (e.g. the change feed position in
        epoch milliseconds); each write carries it as an external version, so a stale or
        replayed change loses to a newer one and is counted as a conflict, not applied.
        A withdrawn donor's row is deleted, never indexed. The donors concerned are rebuilt
        from their samples so donor counts stay exact. Live indices do not refresh on their
        own, so the batch (samples and donors) becomes searchable at one refresh at the end.
        """
        if version < 2:
            raise ValueError(f"version: {version!r} must be 2 or more (full syncs write 1)")
        with self.lock(biobank_id):
            live = self.live_indices(biobank_id)
            if not live:
                raise EngineError(f"{biobank_id} has no published generation; run a full sync")
            index = live[0]
            kept = [r for r in upserts if not r.get("withdrawn")]
            removed = [str(r["sample_id"]) for r in upserts if r.get("withdrawn")] + list(deletes)
            touched = [str(r["sample_id"]) for r in kept] + removed
            # The donors concerned as searches see them now: the samples' old donors and the
            # upserts' new ones, each with its current samples.
            donors = set(self._donors_of(index, touched)) | {str(r["donor_id"]) for r in kept}
            samples = self._samples_of(index, sorted(donors))
            versioned = {"version": version, "version_type": "external"}
            payloads = BulkPayloads()
            written: list[Written] = []
            for row in kept:
                action = {
                    "index": {
                        "_index": index,
                        "_id": sample_doc_id(str(row["sample_id"])),
                        **versioned,
                    }
                }
                if (full := payloads.add(action, sample_document(row))) is not None:
                    written += self._bulk(full)
            for sid in removed:
                action = {"delete": {"_index": index, "_id": sample_doc_id(sid), **versioned}}
                if (full := payloads.add(action, None)) is not None:
                    written += self._bulk(full)
            if (last := payloads.take()) is not None:
                written += self._bulk(last)
            # Apply to the donors' samples what the engine accepted (not what lost to a
            # newer version), then rewrite those donors.
            for row, outcome in zip(kept, written, strict=False):
                if outcome.status < 300:
                    _move(samples, str(row["sample_id"]), sample_document(row))
            for sid, outcome in zip(removed, written[len(kept) :], strict=True):
                if outcome.status < 300 or outcome.status == 404:
                    _move(samples, sid, None)
            self._write_donors(biobank_id, index, samples)
            self.retrying("refresh", lambda: self.writer.refresh(index))
            documents = self.retrying(
                "count",
                lambda: self.writer.count(index, {"query": {"term": {"kind": SAMPLE_KIND}}}),
            )
            meta = self.writer.mappings(index)[index].get("_meta", {})
            self.retrying(
                "update metadata",
                lambda: self.writer.put_meta(index, {**meta, "documents": documents}),
            )
        deletions = written[len(kept) :]
        return ChangeOutcome(
            upserted=sum(1 for w in written[: len(kept)] if w.status < 300),
            deleted=sum(1 for w in deletions if w.status < 300),
            missing=sum(1 for w in deletions if w.status == 404),
            conflicts=sum(1 for w in written if w.status == 409),
            donors_rebuilt=len(samples),
        )

    def _bulk(self, payload: bytes) -> list[Written]:
        def attempt() -> list[Written]:
            written = self.writer.bulk(payload)
            _raise_for_bulk(written, conflicts_ok=True)
            return written

        return self.retrying("bulk", attempt)

    def _donors_of(self, index: str, sample_ids: Sequence[str]) -> list[str]:
        donors: list[str] = []
        for start in range(0, len(sample_ids), SCAN_PAGE):
            ids = [sample_doc_id(s) for s in sample_ids[start : start + SCAN_PAGE]]
            query = {
                "bool": {"filter": [{"term": {"kind": SAMPLE_KIND}}, {"ids": {"values": ids}}]}
            }
            donors += [
                str(h["_source"]["donor_id"]) for h in self._scan(index, query, ["donor_id"])
            ]
        return donors

    def _samples_of(self, index: str, donors: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Donor id -> {sample id: sample document} for the given donors, as searchable now."""
        samples: dict[str, dict[str, Any]] = {d: {} for d in donors}
        for start in range(0, len(donors), 1000):
            chunk = list(donors[start : start + 1000])
            query = {
                "bool": {
                    "filter": [{"term": {"kind": SAMPLE_KIND}}, {"terms": {"donor_id": chunk}}]
                }
            }
            for hit in self._scan(index, query, ["kind", *COLUMNS]):
                source = hit["_source"]
                samples[str(source["donor_id"])][str(source["sample_id"])] = source
        return samples

    def _write_donors(
        self, biobank_id: str, index: str, samples: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Rewrite each donor document with its samples (or delete it when none are left).

        Not versioned: a donor document is derived from its samples' documents as they now
        are (whatever versions won), and the biobank's lock keeps other writers out.
        """
        payloads = BulkPayloads()
        for donor, rows in samples.items():
            target = {"_index": index, "_id": donor_doc_id(donor)}
            if rows:
                ordered = [rows[sid] for sid in sorted(rows)]
                full = payloads.add({"index": target}, donor_document(biobank_id, donor, ordered))
            else:
                full = payloads.add({"delete": target}, None)
            if full is not None:
                self._bulk(full)
        if (last := payloads.take()) is not None:
            self._bulk(last)

    # --- locks and retries -----------------------------------------------------------------------

    def acquire_lock(self, biobank_id: str) -> Lease:
        """Take (or re-enter, in this process) the biobank's sync lock."""
        with self._held_lock:
            held = self._held.get(biobank_id)
            if held is not None:
                self._held[biobank_id] = (held[0], held[1] + 1)
                return held[0]
        lease = self.retrying("take the sync lock", lambda: self.locks.acquire(biobank_id))
        with self._held_lock:
            self._held[biobank_id] = (lease, 1)
        return lease

    def release_lock(self, biobank_id: str) -> None:
        """Leave the lock; the outermost holder releases it."""
        with self._held_lock:
            lease, depth = self._held[biobank_id]
            if depth > 1:
                self._held[biobank_id] = (lease, depth - 1)
                return
            del self._held[biobank_id]
        lease.release()

    def sync_lock(self, biobank_id: str) -> AbstractContextManager[object]:
        """The engine-held lock: one sync per biobank across every host sharing the engine."""
        return self.lock(biobank_id)

    @contextlib.contextmanager
    def lock(self, biobank_id: str) -> Iterator[Lease]:
        """Hold the biobank's sync lock for the block (across hosts; re-entrant here)."""
        lease = self.acquire_lock(biobank_id)
        try:
            yield lease
        finally:
            self.release_lock(biobank_id)

    def retrying(self, what: str, operation: Callable[[], T]) -> T:
        """Run an engine write, retrying outages with exponential backoff, then give up."""
        delay = BACKOFF_FIRST_S
        attempts = self.config.bulk_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return operation()
            except EngineUnavailable as err:
                if attempt == attempts:
                    raise EngineUnavailable(
                        f"{what}: gave up after {attempts} attempts: {err}"
                    ) from err
                log.warning(
                    "%s failed (%s); retry %d/%d in %.1fs", what, err, attempt, attempts - 1, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._held_lock:
            leases = [lease for lease, _ in self._held.values()]
            self._held.clear()
        for lease in leases:
            lease.release()
        self.reader.close()
        self.writer.close()


__all__ = [
    "BiobankLockHeld",
    "BiobankLockLost",
    "ChangeOutcome",
    "EngineBackend",
    "EngineConfig",
    "EngineError",
    "EngineUnavailable",
    "IndexNames",
]
