"""The public GraphQL schema: the root query and mutation, joined from the areas' roots.

Each area (federation/gateway/types/) declares its types and an abstract root with its
fields and thin resolvers: they parse arguments, call one service and convert its
dataclasses. The services own the logic, the permission checks and the audit.
"""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

import graphene

from federation.gateway.types.audit import AuditQuery
from federation.gateway.types.catalogue import CatalogueQuery
from federation.gateway.types.diseases import DiseaseNamesQuery, DiseaseQuery
from federation.gateway.types.holdings import HoldingsQuery
from federation.gateway.types.identity import IdentityQuery
from federation.gateway.types.requests import RequestsMutation, RequestsQuery
from federation.gateway.types.saved_searches import SavedSearchMutation, SavedSearchQuery
from federation.gateway.types.search import SearchQuery
from federation.gateway.types.sync import SyncMutation, SyncQuery


# graphene gathers an ObjectType's fields from its bases last to first (reversed MRO), so
# the areas are listed in the reverse of the order the schema shows their fields in.
class Query(
    SavedSearchQuery,
    RequestsQuery,
    DiseaseNamesQuery,
    AuditQuery,
    IdentityQuery,
    SyncQuery,
    DiseaseQuery,
    HoldingsQuery,
    CatalogueQuery,
    SearchQuery,
):
    class Meta:
        description = "Find samples and donors across the biobanks of the network."


class Mutation(SavedSearchMutation, RequestsMutation, SyncMutation):
    class Meta:
        description = (
            "Operations on the network: syncs (biobank admins), access requests, saved searches."
        )


schema = graphene.Schema(query=Query, mutation=Mutation)
