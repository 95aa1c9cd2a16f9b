"""What a biobank holds, per collection, as the asker's role may see it.

A biobank page shows each collection's size, materials and diseases. Those are searches
like any other (`SampleQuery(biobanks=[b], collections=[c])`): they go through
`SearchService.search`, so the biobank's policy releases every figure (threshold,
rounding, noise, budget) and the audit log records each one. Nothing here counts rows
or releases a figure itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from federation.disclosure.budget import BudgetStatus
from federation.disclosure.roles import ANONYMOUS, Identity
from federation.search.query import SampleQuery
from federation.search.result import BiobankResult, FacetBucket, SearchResult
from federation.search.service import SearchService

# The facets a collection is described by: its materials and its diseases by ICD-10 block
# (a chapter is too coarse to tell a breast cancer cohort from a lung cancer one).
MATERIAL_FACET = "material_type"
DISEASE_FACET = "block"
# More collections than this are listed without their contents (one search each).
MAX_DESCRIBED_COLLECTIONS = 20


@dataclass(frozen=True)
class CollectionHoldings:
    """One collection's released size, materials and diseases (None: not described)."""

    collection_id: str
    # The collection's row of the search: None when it has no matches the role may see.
    row: BiobankResult | None
    materials: tuple[FacetBucket, ...]
    diseases: tuple[FacetBucket, ...]
    described: bool = True


@dataclass(frozen=True)
class Holdings:
    """A biobank's released totals and its collections' holdings."""

    biobank_id: str
    row: BiobankResult | None
    materials: tuple[FacetBucket, ...]
    diseases: tuple[FacetBucket, ...]
    collections: tuple[CollectionHoldings, ...]
    # What the searches spent from the asker's privacy budgets, latest state per budget.
    budget: tuple[BudgetStatus, ...] = ()


def _row(result: SearchResult, biobank_id: str) -> BiobankResult | None:
    return next((r for r in result.by_biobank if r.biobank_id == biobank_id), None)


def _buckets(result: SearchResult, facet: str) -> tuple[FacetBucket, ...]:
    return next((f.buckets for f in result.facets if f.name == facet), ())


def biobank_holdings(
    service: SearchService,
    biobank_id: str,
    collection_ids: Sequence[str],
    identity: Identity = ANONYMOUS,
) -> Holdings:
    """The biobank's totals and, per collection, what the identity's role may see of it."""
    facets = (MATERIAL_FACET, DISEASE_FACET)
    whole = service.search(SampleQuery(biobanks=(biobank_id,)), identity=identity, facets=facets)
    row = _row(whole, biobank_id)
    budget = list(whole.budget)
    collections = []
    for n, collection_id in enumerate(collection_ids):
        if row is None or n >= MAX_DESCRIBED_COLLECTIONS:
            # Nothing the role may see in the biobank (or too many to ask about): a search
            # per collection would tell nothing more.
            collections.append(CollectionHoldings(collection_id, None, (), (), described=False))
            continue
        query = SampleQuery(biobanks=(biobank_id,), collections=(collection_id,))
        result = service.search(query, identity=identity, facets=facets)
        budget += result.budget
        collections.append(
            CollectionHoldings(
                collection_id,
                _row(result, biobank_id),
                _buckets(result, MATERIAL_FACET),
                _buckets(result, DISEASE_FACET),
            )
        )
    return Holdings(
        biobank_id,
        row,
        _buckets(whole, MATERIAL_FACET),
        _buckets(whole, DISEASE_FACET),
        tuple(collections),
        tuple(budget),
    )
