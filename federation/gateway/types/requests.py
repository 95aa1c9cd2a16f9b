"""Access requests: from a search to samples (docs/requests.md).

Who may see or do what is decided by the access request service
(federation/requests/service.py); these resolvers read their arguments, call it and
convert what it returns.
"""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import graphene
from graphql import GraphQLResolveInfo

from federation.consent import ResearchPurpose as ResearchPurposeData
from federation.gateway.errors import bad_input, camel
from federation.gateway.types.access_request import (
    AccessRequest,
    AccessRequestPreview,
    AccessRequestState,
    NegotiatorPayload,
)
from federation.gateway.types.common import context
from federation.gateway.types.purpose import ResearchPurposeInput
from federation.gateway.types.search import SampleQueryInput
from federation.i18n import language_of
from federation.requests.lifecycle import PartState
from federation.requests.service import Handoff, Preview, RequestView, Submission
from federation.search.query import BadQuery, SampleQuery

# --- arguments ---------------------------------------------------------------------------


class BiobankCollectionsInput(graphene.InputObjectType):
    class Meta:
        name = "BiobankCollections"
        description = "Collections of one selected biobank the request is about."

    biobank = graphene.ID(required=True, description="The biobank.")
    collections = graphene.List(graphene.NonNull(graphene.ID), required=True)


class AccessRequestInput(graphene.InputObjectType):
    class Meta:
        name = "AccessRequestInput"
        description = (
            "A request for samples. Counts are not part of it: the server computes each "
            "biobank's consent check itself."
        )

    query = graphene.Field(SampleQueryInput, required=True, description="The exact question.")
    purpose = graphene.Field(ResearchPurposeInput, required=True, description="The purpose.")
    biobanks = graphene.List(
        graphene.NonNull(graphene.ID), required=True, description="The biobanks asked."
    )
    collections = graphene.List(
        graphene.NonNull(BiobankCollectionsInput), description="Collections per biobank."
    )
    title = graphene.String(required=True, description="The project title.")
    description = graphene.String(required=True, description="The project description.")
    language = graphene.String(description="en or ja: the language of the question sentence.")
    contact_email = graphene.String(description="Where to write (default: your sign-in).")
    acknowledge_no_permission = graphene.Boolean(
        default_value=False,
        description="Send it even though no selected biobank's consent permits the purpose.",
    )


def _query(raw: Mapping[str, Any], argument: str) -> SampleQuery:
    try:
        return SampleQuery.parse({k: v for k, v in dict(raw).items() if v is not None})
    except BadQuery as err:
        raise bad_input(err, f"{argument}.{camel(err.argument)}") from None


def _purpose(raw: Mapping[str, Any]) -> ResearchPurposeData:
    fields = {k: getattr(v, "value", v) for k, v in dict(raw).items() if v is not None}
    try:
        return ResearchPurposeData.parse(fields)
    except BadQuery as err:
        raise bad_input(err, camel(err.argument)) from None


def _language(info: GraphQLResolveInfo, language: str | None) -> str:
    request = context(info)
    if language is not None:
        request.language = language_of(language, ())
    return request.language


class RequestsQuery(graphene.ObjectType):
    class Meta:
        abstract = True

    preview_access_request = graphene.Field(
        AccessRequestPreview,
        required=True,
        query=graphene.Argument(SampleQueryInput, required=True),
        purpose=graphene.Argument(ResearchPurposeInput, required=True),
        biobanks=graphene.List(graphene.NonNull(graphene.ID), required=True),
        language=graphene.String(description="en or ja."),
        description="Check a request before sending it: the consent check per biobank as "
        "your role may see it, and a warning when no consent permits the purpose. It is a "
        "search (audited, charged to your privacy budget).",
    )
    my_access_requests = graphene.List(
        graphene.NonNull(AccessRequest),
        required=True,
        description="Your access requests, newest first.",
    )
    access_request = graphene.Field(
        AccessRequest,
        required=True,
        id=graphene.ID(required=True),
        description="One access request you may see (NOT_FOUND otherwise).",
    )
    biobank_access_requests = graphene.List(
        graphene.NonNull(AccessRequest),
        required=True,
        biobank=graphene.ID(description="Only this biobank (one you administer)."),
        state=graphene.Argument(AccessRequestState, description="Only parts in this state."),
        description="The queue of requests for the biobanks you administer, with only their parts.",
    )
    negotiator_payload = graphene.Field(
        NegotiatorPayload,
        required=True,
        id=graphene.ID(required=True),
        description="A request as the BBMRI-ERIC Negotiator's discovery payload, and the "
        "biobanks' application links that carry the question.",
    )

    @staticmethod
    def resolve_preview_access_request(
        root: None,
        info: GraphQLResolveInfo,
        query: Mapping[str, Any],
        purpose: Mapping[str, Any],
        biobanks: Sequence[str],
        language: str | None = None,
    ) -> Preview:
        request = context(info)
        chosen = _language(info, language)
        return request.access_requests.preview(
            request.identity, _query(query, "query"), _purpose(purpose), list(biobanks), chosen
        )

    @staticmethod
    def resolve_my_access_requests(root: None, info: GraphQLResolveInfo) -> list[RequestView]:
        request = context(info)
        return request.access_requests.mine(request.identity)

    @staticmethod
    def resolve_access_request(root: None, info: GraphQLResolveInfo, id: str) -> RequestView:
        request = context(info)
        return request.access_requests.get(request.identity, id)

    @staticmethod
    def resolve_biobank_access_requests(
        root: None,
        info: GraphQLResolveInfo,
        biobank: str | None = None,
        state: Any = None,
    ) -> list[RequestView]:
        request = context(info)
        wanted = None if state is None else PartState(getattr(state, "value", state))
        return request.access_requests.queue(request.identity, biobank, wanted)

    @staticmethod
    def resolve_negotiator_payload(root: None, info: GraphQLResolveInfo, id: str) -> Handoff:
        request = context(info)
        return request.access_requests.handoff(request.identity, id)


class SubmitAccessRequest(graphene.Mutation):
    class Meta:
        description = (
            "Send an access request to the selected biobanks. The consent check is computed "
            "again here; a purpose no consent permits is refused (PURPOSE_NOT_PERMITTED) "
            "unless acknowledged. Only roles the network lets request may (FORBIDDEN)."
        )

    class Arguments:
        input = AccessRequestInput(required=True)

    Output = AccessRequest

    @staticmethod
    def mutate(root: None, info: GraphQLResolveInfo, input: Mapping[str, Any]) -> RequestView:
        request = context(info)
        language = _language(info, input.get("language"))
        collections = {
            str(item["biobank"]): tuple(item["collections"])
            for item in input.get("collections") or ()
        }
        submission = Submission(
            query=_query(input["query"], "input.query"),
            purpose=_purpose(input["purpose"]),
            biobanks=tuple(input["biobanks"]),
            title=str(input["title"]),
            description=str(input["description"]),
            language=language,
            contact_email=input.get("contact_email"),
            acknowledge_no_permission=bool(input.get("acknowledge_no_permission")),
            collections=collections,
        )
        return request.access_requests.submit(request.identity, submission)


class MoveAccessRequest(graphene.Mutation):
    class Meta:
        description = (
            "Move one biobank's part of a request to another state, with a message. Each move "
            "belongs to the researcher, that biobank's admins or the network operator "
            "(TRANSITION_NOT_ALLOWED otherwise)."
        )

    class Arguments:
        id = graphene.ID(required=True, description="The request.")
        biobank = graphene.ID(required=True, description="The biobank's part.")
        to = graphene.Argument(AccessRequestState, required=True, description="The new state.")
        message = graphene.String(description="Required for more information and declines.")

    Output = AccessRequest

    @staticmethod
    def mutate(
        root: None,
        info: GraphQLResolveInfo,
        id: str,
        biobank: str,
        to: Any,
        message: str | None = None,
    ) -> RequestView:
        request = context(info)
        state = PartState(getattr(to, "value", to))
        return request.access_requests.move(request.identity, id, biobank, state, message)


class PostAccessRequestMessage(graphene.Mutation):
    class Meta:
        description = "Write in one biobank's thread of a request."

    class Arguments:
        id = graphene.ID(required=True, description="The request.")
        biobank = graphene.ID(required=True, description="The biobank's part.")
        message = graphene.String(required=True, description="The message.")

    Output = AccessRequest

    @staticmethod
    def mutate(
        root: None, info: GraphQLResolveInfo, id: str, biobank: str, message: str
    ) -> RequestView:
        request = context(info)
        return request.access_requests.post_message(request.identity, id, biobank, message)


class SendAccessRequestToNegotiator(graphene.Mutation):
    class Meta:
        description = (
            "Post the request to the network's Negotiator (setting `requests.negotiator_url`) "
            "and record the link it returns."
        )

    class Arguments:
        id = graphene.ID(required=True, description="The request.")

    Output = NegotiatorPayload

    @staticmethod
    def mutate(root: None, info: GraphQLResolveInfo, id: str) -> Handoff:
        request = context(info)
        return request.access_requests.send_to_negotiator(request.identity, id)


class RequestsMutation(graphene.ObjectType):
    class Meta:
        abstract = True

    submit_access_request = SubmitAccessRequest.Field()
    move_access_request = MoveAccessRequest.Field()
    post_access_request_message = PostAccessRequestMessage.Field()
    send_access_request_to_negotiator = SendAccessRequestToNegotiator.Field()
