"""The catalogue: the network's biobanks and their collections."""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import graphene
from graphql import GraphQLResolveInfo

from federation.gateway.context import GatewayContext
from federation.gateway.types.common import context, strings
from federation.model import duo
from federation.model.records import ConsentField
from federation.settings import BiobankSource
from federation.sync.admin import Freshness


@dataclass(frozen=True)
class BiobankNode:
    """A biobank by id, with its entry in the network file when the file lists it."""

    # `source` is None while the index still serves a biobank that has left the network
    # file: its counts stay visible, named by id, until it is removed from the index.

    id: str
    source: BiobankSource | None


@dataclass(frozen=True)
class CollectionNode:
    """A collection as its biobank's last published data describes it."""

    biobank_id: str
    data: Mapping[str, Any]


def biobank_node(request: GatewayContext, biobank_id: str) -> BiobankNode:
    """The biobank of an id, with its network entry when it has one."""
    return BiobankNode(biobank_id, request.biobank(biobank_id))


def collections_of(request: GatewayContext, biobank_id: str) -> list[CollectionNode]:
    """A biobank's collections as of its published generation."""
    info = request.generations().get(biobank_id)
    if info is None:
        return []
    return [CollectionNode(biobank_id, c) for c in info.metadata.get("collections", ())]


class Collection(graphene.ObjectType):
    class Meta:
        description = "A collection of samples held by a biobank, such as a disease cohort."

    id = graphene.ID(required=True, description="The collection's id, unique within its biobank.")
    biobank = graphene.Field(
        lambda: Biobank, required=True, description="The biobank that holds the collection."
    )
    name = graphene.String(required=True, description="The collection's name.")
    types = strings("MIABIS collection types, such as DISEASE_SPECIFIC or POPULATION_BASED.")
    description = graphene.String(description="What the collection is, in the biobank's words.")
    default_consent = graphene.String(
        description="The GA4GH DUO consent that applies to donors without their own consent "
        "record, written as DUO shorthand (for example `DS(C50);NCU`)."
    )

    @staticmethod
    def resolve_id(parent: CollectionNode, info: GraphQLResolveInfo) -> str:
        return str(parent.data["id"])

    @staticmethod
    def resolve_biobank(parent: CollectionNode, info: GraphQLResolveInfo) -> BiobankNode:
        return biobank_node(context(info), parent.biobank_id)

    @staticmethod
    def resolve_name(parent: CollectionNode, info: GraphQLResolveInfo) -> str:
        return str(parent.data["name"])

    @staticmethod
    def resolve_types(parent: CollectionNode, info: GraphQLResolveInfo) -> list[str]:
        return list(parent.data.get("types") or ())

    @staticmethod
    def resolve_description(parent: CollectionNode, info: GraphQLResolveInfo) -> str | None:
        return parent.data.get("description")

    @staticmethod
    def resolve_default_consent(parent: CollectionNode, info: GraphQLResolveInfo) -> str | None:
        terms = parent.data.get("default_consent")
        if not terms:
            return None
        consent = ConsentField().deserialize(terms)
        return consent.to_text() if isinstance(consent, duo.Consent) else None


class FreshnessStatus(graphene.Enum):
    class Meta:
        description = "How current a biobank's searchable data is."

    FRESH = "FRESH"
    STALE = "STALE"
    FAILING = "FAILING"
    NEVER = "NEVER"


class DataFreshness(graphene.ObjectType):
    class Meta:
        description = (
            "When the biobank's data was last read from its source, and whether it is current."
        )

    status = graphene.Field(
        FreshnessStatus,
        required=True,
        description="FRESH; STALE when the last successful sync is over 7 days old; FAILING "
        "when the latest sync failed (the data of the last successful one still serves); "
        "NEVER when no sync has succeeded.",
    )
    last_successful_sync = graphene.String(
        description="When the last successful sync finished (ISO 8601)."
    )
    last_attempt = graphene.String(
        description="When the latest finished sync finished, whatever its outcome (ISO 8601)."
    )
    last_attempt_failed = graphene.Boolean(
        required=True, description="Whether the latest finished sync failed."
    )

    @staticmethod
    def resolve_status(parent: Freshness, info: GraphQLResolveInfo) -> str:
        return parent.status

    @staticmethod
    def resolve_last_successful_sync(parent: Freshness, info: GraphQLResolveInfo) -> str | None:
        return parent.last_success


class Biobank(graphene.ObjectType):
    class Meta:
        description = "A biobank of the network: who holds the samples and how to reach them."

    id = graphene.ID(required=True, description="The biobank's id in this network.")
    name = graphene.String(required=True, description="The biobank's name in English.")
    name_ja = graphene.String(description="The biobank's name in Japanese, when it has one.")
    country = graphene.String(
        description="ISO 3166 country code; null only for a biobank that has left the network "
        "while its samples are still being served."
    )
    url = graphene.String(description="The biobank's web site.")
    contact_email = graphene.String(description="Where to ask about access to samples.")
    description = graphene.String(description="What the biobank holds, in its own words.")
    kind = graphene.String(
        description="The kind of biobank (for example population or disease-oriented), as "
        "the network operator records it."
    )
    collections = graphene.List(
        graphene.NonNull(Collection),
        required=True,
        description="The biobank's collections as of its last published data.",
    )
    last_published = graphene.String(
        description="When the biobank's searchable data was last published (ISO 8601); null "
        "when it has never been published."
    )
    access_url = graphene.String(
        description="The biobank's own page for applying for samples, when it names one."
    )
    access_conditions = graphene.String(
        description="Who may apply for samples and on what terms, in the request's language "
        "when the network file gives it (else English)."
    )
    freshness = graphene.Field(
        DataFreshness,
        description="When the data was last read from the source; null for a biobank that "
        "has left the network.",
    )

    @staticmethod
    def resolve_name(parent: BiobankNode, info: GraphQLResolveInfo) -> str:
        return parent.source.biobank.name if parent.source else parent.id

    @staticmethod
    def resolve_name_ja(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.name_ja if parent.source else None

    @staticmethod
    def resolve_country(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.country if parent.source else None

    @staticmethod
    def resolve_url(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.url if parent.source else None

    @staticmethod
    def resolve_contact_email(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.contact_email if parent.source else None

    @staticmethod
    def resolve_description(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.biobank.description if parent.source else None

    @staticmethod
    def resolve_kind(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return (parent.source.kind or None) if parent.source else None

    @staticmethod
    def resolve_collections(parent: BiobankNode, info: GraphQLResolveInfo) -> list[CollectionNode]:
        return collections_of(context(info), parent.id)

    @staticmethod
    def resolve_last_published(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        published = context(info).generations().get(parent.id)
        return published.published_at if published else None

    @staticmethod
    def resolve_access_url(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        return parent.source.access.url if parent.source else None

    @staticmethod
    def resolve_access_conditions(parent: BiobankNode, info: GraphQLResolveInfo) -> str | None:
        if parent.source is None:
            return None
        terms = parent.source.access
        if context(info).language == "ja" and terms.conditions_ja:
            return terms.conditions_ja
        return terms.conditions

    @staticmethod
    def resolve_freshness(parent: BiobankNode, info: GraphQLResolveInfo) -> Freshness | None:
        if parent.source is None:
            return None
        return context(info).sync_admin.freshness(parent.id)


class CatalogueQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    biobanks = graphene.List(
        graphene.NonNull(Biobank), required=True, description="Every biobank of the network."
    )
    biobank = graphene.Field(
        Biobank,
        id=graphene.ID(required=True, description="The biobank's id."),
        description="One biobank by id; null when the network has no such biobank.",
    )
    collections = graphene.List(
        graphene.NonNull(Collection),
        required=True,
        biobank=graphene.ID(description="Only this biobank's collections."),
        description="The collections of the network's biobanks.",
    )

    @staticmethod
    def resolve_biobanks(root: None, info: GraphQLResolveInfo) -> list[BiobankNode]:
        return [BiobankNode(s.biobank.id, s) for s in context(info).network().biobanks]

    @staticmethod
    def resolve_biobank(root: None, info: GraphQLResolveInfo, id: str) -> BiobankNode | None:
        source = context(info).biobank(id)
        return BiobankNode(id, source) if source else None

    @staticmethod
    def resolve_collections(
        root: None, info: GraphQLResolveInfo, biobank: str | None = None
    ) -> list[CollectionNode]:
        request = context(info)
        if biobank is not None:
            return collections_of(request, request.require_biobank(biobank, "biobank").biobank.id)
        return [
            collection
            for source in request.network().biobanks
            for collection in collections_of(request, source.biobank.id)
        ]
