"""Reading engine responses back into cells, facet cells and record pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from federation.search.backend import encode_cursor
from federation.search.documents import RECORD_COLUMNS
from federation.search.engine.client import EngineError
from federation.search.engine.compiler import BIOBANK, BIOBANK_FACETS, BIOBANK_KEYED
from federation.search.engine.layout import DATE_COLUMNS, MAX_TERMS, TIMESTAMP_COLUMNS, IndexNames
from federation.search.facets import FACET
from federation.search.fingerprint import fingerprint
from federation.search.query import (
    Cell,
    FacetCell,
    PageRequest,
    RecordPage,
    sort_position,
)


def _all_biobank_buckets(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    aggs = response.get("aggregations")
    if not aggs:  # no index behind the alias yet: nothing is published
        return []
    matching = aggs["samples"]["matching"]
    buckets: list[dict[str, Any]] = []
    # Asked with a set of biobanks to key, those biobanks' buckets are a sibling `terms`.
    for name in (BIOBANK, BIOBANK_KEYED):
        if name in matching:
            _complete(matching[name])
            buckets += matching[name]["buckets"]
    return buckets


def _biobank_buckets(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    # The counts search lists biobanks without matches too (min_doc_count 0): not counted.
    return [b for b in _all_biobank_buckets(response) if b["doc_count"] > 0]


def covered_biobanks(response: Mapping[str, Any]) -> frozenset[str]:
    """The biobanks whose data the counts search ran over, matches or not."""
    return frozenset(str(b["key"]) for b in _all_biobank_buckets(response))


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
        by_biobank[biobank] = counted(bucket)
        segments[biobank] = {
            name: counted(bucket[f"segment{n}"]) for n, name in enumerate(segment_names)
        }
        indices = bucket["donors"]["index"]["buckets"]
        if indices:
            generation[biobank] = IndexNames.generation_of(str(indices[0]["key"]))
    return by_biobank, segments, generation


def counted(bucket: Mapping[str, Any]) -> Cell:
    """Donors and samples of a bucket with their donors' fingerprint (compiler's `_counted`;
    asked without fingerprints there is no key sum, and the fingerprint is 0)."""
    donors = bucket["donors"]
    key_sum = donors["fp"]["value"] if "fp" in donors else None
    return Cell(int(donors["doc_count"]), int(bucket["doc_count"]), fingerprint(key_sum))


def read_facet(facet: str, response: Mapping[str, Any]) -> list[FacetCell]:
    """A facet's cells (key, biobank, donors, samples) from its search."""
    cells = []
    for bucket in _biobank_buckets(response):
        biobank = str(bucket["key"])
        if facet in BIOBANK_FACETS:  # one bucket per biobank: the biobank's own
            cells.append(FacetCell(facet, biobank, biobank, *counted(bucket).figures))
            continue
        agg = bucket[f"facet_{facet}"]
        if FACET[facet].bucket_width is None:  # histograms have no "other" buckets
            _complete(agg)
        for inner in agg["buckets"]:
            key = FACET[facet].bucket_key(inner["key"])
            cells.append(FacetCell(facet, key, biobank, *counted(inner).figures))
    return cells


def _from_source(source: Mapping[str, Any]) -> dict[str, Any]:
    # Dates come back as the embedded store returns them: date and aware datetime objects.
    row: dict[str, Any] = {}
    for name in RECORD_COLUMNS:
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
    end = encode_cursor(sort_position(rows[-1], page.sort_keys())) if rows else None
    return RecordPage(tuple(rows), end, len(hits) > page.first, response["hits"]["total"]["value"])
