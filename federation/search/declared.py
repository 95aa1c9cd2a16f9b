"""Collection-level biobanks in a search: collections that declare what they hold.

Many biobanks publish only collections (the BBMRI-ERIC Directory's way: per collection the
diagnoses, materials, sexes, age range, number of samples and donors), not sample rows.
Their declared facts are published with the biobank's generation (`collection_json` in
documents.py, under `declared`) by either backend, and this module matches a search's
criteria against them.

A collection cannot answer most filters exactly: it says "C50 and E11; plasma and serum;
ages 18-90; 1,200 samples", not how many of its samples are C50 plasma from donors aged
40-70. So the semantics are **overlap**: a collection matches when every filter overlaps
what it declares (a disease in or under one it declares, or one it declares in or under
the asked one; a material, sex, collection type or data category it lists; an age range
that intersects its declared range). A filter on something the collection does not
declare at all (no sexes listed, no age range) does not match: nothing says it holds any.
Its count is then the collection's whole declared size, an upper bound for the matching
part, marked `DECLARED` with that reason and never added to sample-level counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.disclosure.release import declared_total
from federation.model import icd10
from federation.search.backend import GenerationInfo
from federation.search.facets import AGE_BUCKET_YEARS, FACET, age_bucket_label
from federation.search.query import Criteria
from federation.search.result import Declared, FacetBucket

# An age range open at the top is read up to this age (the canonical model's limit).
OLDEST = 125
# Which declared fact each facet column is taken from.
FACET_FACTS = {
    "material_type": "materials",
    "sex": "sexes",
    "chapters": "chapters",
    "blocks": "blocks",
    "collection_types": "types",
}


@dataclass(frozen=True)
class DeclaredCollection:
    """One collection-level collection of a biobank, with the facts it declares."""

    biobank_id: str
    id: str
    types: tuple[str, ...]
    facts: Mapping[str, Any]

    def values(self, name: str) -> tuple[str, ...]:
        """A declared list (materials, sexes, disease_terms, ...), empty when undeclared."""
        if name == "types":
            return self.types
        return tuple(self.facts.get(name) or ())

    def number(self, name: str) -> int | None:
        value = self.facts.get(name)
        return value if isinstance(value, int) else None


@dataclass(frozen=True)
class DeclaredCell:
    """What the matching collections of one biobank declare, summed."""

    donors: int
    samples: int
    collections: tuple[str, ...]
    # Matching collections that declare no number of donors / of samples.
    donors_unknown: int = 0
    samples_unknown: int = 0

    @property
    def fingerprint(self) -> int:
        """The matched collections as one number, so noise is fixed by what was counted."""
        digest = hashlib.sha256("\n".join(sorted(self.collections)).encode()).digest()
        return int.from_bytes(digest[:8], "big")


def declared_collections(published: Mapping[str, GenerationInfo]) -> list[DeclaredCollection]:
    """Every collection-level collection the published generations carry."""
    out = []
    for biobank_id, info in sorted(published.items()):
        for item in info.metadata.get("collections", ()):
            facts = item.get("declared") if isinstance(item, Mapping) else None
            if isinstance(facts, Mapping):
                types = tuple(item.get("types") or ())
                out.append(DeclaredCollection(biobank_id, str(item["id"]), types, facts))
    return out


def matches(collection: DeclaredCollection, criteria: Criteria) -> bool:
    """Whether every filter overlaps what the collection declares (see the module doc)."""
    if criteria.biobank_id and collection.biobank_id not in criteria.biobank_id:
        return False
    declared = collection.values("diagnoses")
    terms = set(collection.values("disease_terms"))
    for group in criteria.disease_terms:
        wider = any(d in icd10.with_ancestors(code) for code in group for d in declared)
        if not (terms.intersection(group) or wider):
            return False
    for wanted, fact in (
        (criteria.diagnoses, "diagnoses"),
        (criteria.material_type, "materials"),
        (criteria.sex, "sexes"),
        (criteria.collection_types, "types"),
        (criteria.data_categories, "data_categories"),
    ):
        if wanted and not set(wanted).intersection(collection.values(fact)):
            return False
    if criteria.age_min is not None or criteria.age_max is not None:
        low, high = collection.number("age_low"), collection.number("age_high")
        if low is None and high is None:
            return False
        if criteria.age_max is not None and (low or 0) > criteria.age_max:
            return False
        if criteria.age_min is not None and (OLDEST if high is None else high) < criteria.age_min:
            return False
    return True


def cell(collections: Iterable[DeclaredCollection]) -> DeclaredCell:
    """The declared sizes of collections, summed; the ones that declare none are counted."""
    donors = samples = donors_unknown = samples_unknown = 0
    ids = []
    for collection in collections:
        ids.append(collection.id)
        n_donors, n_samples = collection.number("donors"), collection.number("size")
        donors += n_donors or 0
        samples += n_samples or 0
        donors_unknown += n_donors is None
        samples_unknown += n_samples is None
    return DeclaredCell(donors, samples, tuple(ids), donors_unknown, samples_unknown)


def declared_cells(
    collections: Sequence[DeclaredCollection], criteria: Criteria
) -> dict[str, DeclaredCell]:
    """Per biobank, what its matching collections declare."""
    by_biobank: dict[str, list[DeclaredCollection]] = {}
    for collection in collections:
        if matches(collection, criteria):
            by_biobank.setdefault(collection.biobank_id, []).append(collection)
    return {biobank_id: cell(found) for biobank_id, found in by_biobank.items()}


def declared_facet_cells(
    collections: Sequence[DeclaredCollection], criteria: Criteria, facets: Sequence[str]
) -> list[tuple[str, str, str, DeclaredCell]]:
    """(facet, bucket key, biobank, cell): each matching collection counted, whole, in
    every bucket it declares a value for (as a sample-level row is in each of its values)."""
    out = []
    for facet in facets:
        refined = criteria.without(facet)
        column = FACET[facet].column
        groups: dict[tuple[str, str], list[DeclaredCollection]] = {}
        for collection in collections:
            if not matches(collection, refined):
                continue
            for key in bucket_keys(collection, column):
                groups.setdefault((key, collection.biobank_id), []).append(collection)
        out += [(facet, key, bb, cell(found)) for (key, bb), found in sorted(groups.items())]
    return out


def bucket_keys(collection: DeclaredCollection, column: str) -> tuple[str, ...]:
    """The facet buckets a collection declares values for."""
    if column == "biobank_id":
        return (collection.biobank_id,)
    if column == "age":
        low, high = collection.number("age_low"), collection.number("age_high")
        if low is None and high is None:
            return ()
        first = (low or 0) // AGE_BUCKET_YEARS * AGE_BUCKET_YEARS
        last = OLDEST if high is None else high
        return tuple(age_bucket_label(b) for b in range(first, last + 1, AGE_BUCKET_YEARS))
    fact = FACET_FACTS.get(column)
    return collection.values(fact) if fact else ()


def summed_declared(parts: Sequence[Declared]) -> Declared | None:
    """Declared parts summed (each count kept DECLARED), or None when there are none."""
    donors = declared_total(p.donors for p in parts)
    samples = declared_total(p.samples for p in parts)
    if donors is None or samples is None:
        return None
    ids = tuple(dict.fromkeys(c for p in parts for c in p.collections))
    return Declared(donors, samples, ids)


def bucket_order_samples(bucket: FacetBucket) -> int:
    """Samples of a bucket for ordering: counted and declared alike (only the order)."""
    declared_samples = bucket.declared.samples.value if bucket.declared else None
    return (bucket.samples.value or 0) + (declared_samples or 0)
