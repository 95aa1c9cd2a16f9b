"""Saved searches and their alerts (docs/requests.md): the resolvers read arguments and call
the saved search service, which checks who is asking and runs every search."""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import graphene
from graphql import GraphQLResolveInfo

from federation.consent import ResearchPurpose as ResearchPurposeData
from federation.disclosure.count import Count as CountData
from federation.disclosure.count import Precision
from federation.gateway.errors import bad_input, camel
from federation.gateway.types.catalogue import Biobank, BiobankNode, biobank_node
from federation.gateway.types.common import Count, context
from federation.gateway.types.purpose import ResearchPurposeInput
from federation.gateway.types.search import SampleQueryInput
from federation.i18n import language_of
from federation.requests.alerts import DEFAULT_ALERTS
from federation.search.query import BadQuery, SampleQuery
from federation.state.saved_searches import Alert, SavedSearch


class SavedSearchType(graphene.ObjectType):
    class Meta:
        name = "SavedSearch"
        description = (
            "A question you saved. After each publish it is asked again as you (your role, "
            "the release rules, your privacy budget): new matching samples become alerts."
        )

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    query = graphene.JSONString(required=True, description="The question (a SampleQuery).")
    purpose = graphene.JSONString(description="The declared purpose, if any.")
    language = graphene.String(required=True)
    created_at = graphene.String(required=True)


def _count(raw: Mapping[str, Any]) -> CountData:
    return CountData(raw.get("value"), Precision(raw["precision"]), None, raw.get("exists"))


class SavedSearchAlert(graphene.ObjectType):
    class Meta:
        description = (
            "New matching samples at a biobank after a publish, with the figures a fresh "
            "search released to you then (never more)."
        )

    id = graphene.ID(required=True)
    saved_search_id = graphene.ID(required=True)
    at = graphene.String(required=True, description="When it was found (ISO 8601).")
    biobank = graphene.Field(Biobank, required=True)
    generation = graphene.String(required=True, description="The published generation.")
    donors = graphene.Field(Count, required=True, description="Matching donors now.")
    samples = graphene.Field(Count, required=True, description="Matching samples now.")

    @staticmethod
    def resolve_saved_search_id(parent: Alert, info: GraphQLResolveInfo) -> str:
        return parent.search_id

    @staticmethod
    def resolve_biobank(parent: Alert, info: GraphQLResolveInfo) -> BiobankNode:
        return biobank_node(context(info), parent.biobank_id)

    @staticmethod
    def resolve_donors(parent: Alert, info: GraphQLResolveInfo) -> CountData:
        return _count(parent.released["donors"])

    @staticmethod
    def resolve_samples(parent: Alert, info: GraphQLResolveInfo) -> CountData:
        return _count(parent.released["samples"])


class SavedSearchQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    saved_searches = graphene.List(
        graphene.NonNull(SavedSearchType), required=True, description="Your saved searches."
    )
    saved_search_alerts = graphene.List(
        graphene.NonNull(SavedSearchAlert),
        required=True,
        first=graphene.Int(default_value=DEFAULT_ALERTS, description="How many, newest first."),
        description="New samples your saved searches found after publishes.",
    )

    @staticmethod
    def resolve_saved_searches(root: None, info: GraphQLResolveInfo) -> list[SavedSearch]:
        request = context(info)
        return request.saved_searches.mine(request.identity)

    @staticmethod
    def resolve_saved_search_alerts(
        root: None, info: GraphQLResolveInfo, first: int = DEFAULT_ALERTS
    ) -> list[Alert]:
        request = context(info)
        return request.saved_searches.alerts(request.identity, first)


class SaveSearch(graphene.Mutation):
    class Meta:
        description = "Save a question to be told when new matching samples are published."

    class Arguments:
        name = graphene.String(required=True)
        query = graphene.Argument(SampleQueryInput, required=True)
        purpose = graphene.Argument(ResearchPurposeInput)
        language = graphene.String(description="en or ja: the language of its e-mails.")

    Output = SavedSearchType

    @staticmethod
    def mutate(
        root: None,
        info: GraphQLResolveInfo,
        name: str,
        query: Mapping[str, Any],
        purpose: Mapping[str, Any] | None = None,
        language: str | None = None,
    ) -> SavedSearch:
        request = context(info)
        try:
            question = SampleQuery.parse({k: v for k, v in dict(query).items() if v is not None})
        except BadQuery as err:
            raise bad_input(err, f"query.{camel(err.argument)}") from None
        declared = None
        if purpose is not None:
            fields = {k: getattr(v, "value", v) for k, v in dict(purpose).items() if v is not None}
            try:
                declared = ResearchPurposeData.parse(fields)
            except BadQuery as err:
                raise bad_input(err, camel(err.argument)) from None
        chosen = language_of(language, ()) if language is not None else request.language
        return request.saved_searches.save(request.identity, name, question, declared, chosen)


class DeleteSavedSearch(graphene.Mutation):
    class Meta:
        description = "Delete one of your saved searches and its alerts."

    class Arguments:
        id = graphene.ID(required=True)

    Output = graphene.Boolean

    @staticmethod
    def mutate(root: None, info: GraphQLResolveInfo, id: str) -> bool:
        request = context(info)
        request.saved_searches.delete(request.identity, id)
        return True


class SavedSearchMutation(graphene.ObjectType):
    class Meta:
        abstract = True

    save_search = SaveSearch.Field()
    delete_saved_search = DeleteSavedSearch.Field()
