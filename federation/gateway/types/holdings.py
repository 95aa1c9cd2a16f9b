"""A biobank's holdings: its totals and each collection's size, materials and diseases.

Every figure is a search through the search service (audited, released under the
biobank's policy for the caller's role); the resolver only names the biobank and its
collections.
"""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import graphene
from graphql import GraphQLResolveInfo

from federation.gateway.types.catalogue import (
    Biobank,
    BiobankNode,
    Collection,
    CollectionNode,
    collections_of,
)
from federation.gateway.types.common import Count, context
from federation.gateway.types.search import Access, FacetBucket
from federation.search.holdings import CollectionHoldings as CollectionHoldingsData
from federation.search.holdings import Holdings, biobank_holdings
from federation.search.result import Access as AccessData
from federation.search.result import Count as CountData


class _Released:
    """Resolvers shared by the biobank's and the collections' holdings (their `row`)."""

    @staticmethod
    def resolve_donors(
        parent: Holdings | CollectionHoldingsData, info: GraphQLResolveInfo
    ) -> CountData | None:
        return parent.row.donors if parent.row else None

    @staticmethod
    def resolve_samples(
        parent: Holdings | CollectionHoldingsData, info: GraphQLResolveInfo
    ) -> CountData | None:
        return parent.row.samples if parent.row else None

    @staticmethod
    def resolve_access(
        parent: Holdings | CollectionHoldingsData, info: GraphQLResolveInfo
    ) -> AccessData | None:
        return parent.row.access if parent.row else None


_DONORS = "Donors, as your role may see them; null when there is nothing you may see."
_SAMPLES = "Samples, as your role may see them; null when there is nothing you may see."
_ACCESS = "What your role may see of this biobank's figures, and why; null with no figures."


class CollectionHoldings(_Released, graphene.ObjectType):
    class Meta:
        description = "One collection's size, materials and diseases, released for your role."

    collection = graphene.Field(Collection, required=True, description="The collection.")
    donors = graphene.Field(Count, description=_DONORS)
    samples = graphene.Field(Count, description=_SAMPLES)
    access = graphene.Field(Access, description=_ACCESS)
    materials = graphene.List(
        graphene.NonNull(FacetBucket),
        required=True,
        description="Its samples per MIABIS material type, most first.",
    )
    diseases = graphene.List(
        graphene.NonNull(FacetBucket),
        required=True,
        description="Its samples per ICD-10 block of their diagnoses, most first.",
    )
    described = graphene.Boolean(
        required=True,
        description="False when the collection was not searched (nothing you may see in the "
        "biobank, or more than 20 collections): its figures are then empty, not zero.",
    )


class BiobankHoldings(_Released, graphene.ObjectType):
    class Meta:
        description = (
            "What a biobank holds, as your role may see it: each figure is a search of that "
            "biobank (or collection), released under its disclosure policy and audited."
        )

    biobank = graphene.Field(Biobank, required=True, description="The biobank.")
    donors = graphene.Field(Count, description=_DONORS)
    samples = graphene.Field(Count, description=_SAMPLES)
    access = graphene.Field(Access, description=_ACCESS)
    materials = graphene.List(
        graphene.NonNull(FacetBucket), required=True, description="Samples per material type."
    )
    diseases = graphene.List(
        graphene.NonNull(FacetBucket),
        required=True,
        description="Samples per ICD-10 block of their diagnoses.",
    )
    collections = graphene.List(
        graphene.NonNull(CollectionHoldings),
        required=True,
        description="The biobank's collections as of its last published data.",
    )

    @staticmethod
    def resolve_biobank(parent: Holdings, info: GraphQLResolveInfo) -> BiobankNode:
        return BiobankNode(parent.biobank_id, context(info).biobank(parent.biobank_id))

    @staticmethod
    def resolve_collections(parent: Holdings, info: GraphQLResolveInfo) -> list[_CollectionView]:
        nodes = {
            str(node.data["id"]): node for node in collections_of(context(info), parent.biobank_id)
        }
        return [_CollectionView(item, nodes[item.collection_id]) for item in parent.collections]


class _CollectionView:
    """A collection's holdings with its catalogue node, for `CollectionHoldings`."""

    def __init__(self, holdings: CollectionHoldingsData, node: CollectionNode) -> None:
        self.row = holdings.row
        self.materials = holdings.materials
        self.diseases = holdings.diseases
        self.described = holdings.described
        self.collection = node


class HoldingsQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    holdings = graphene.Field(
        BiobankHoldings,
        required=True,
        biobank=graphene.ID(required=True, description="The biobank's id."),
        description="A biobank's totals and its collections' sizes, materials and diseases, "
        "released for your role like any search (one search for the biobank and one per "
        "collection, each audited; it counts as one search against the request limits).",
    )

    @staticmethod
    def resolve_holdings(root: None, info: GraphQLResolveInfo, biobank: str) -> Holdings:
        request = context(info)
        source = request.require_biobank(biobank, "biobank")
        collections = [str(node.data["id"]) for node in collections_of(request, source.biobank.id)]
        result = biobank_holdings(request.search, source.biobank.id, collections, request.identity)
        request.note_budget(result.budget)
        return result
