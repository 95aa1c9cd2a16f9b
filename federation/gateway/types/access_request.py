"""The object types of access requests: a request, its parts per biobank, their consent
checks and history, the preview and the Negotiator payload (docs/requests.md)."""

# mypy: disallow-subclassing-any=False
# (graphene ships no type hints, so every graphene base class is `Any` to mypy.)

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import graphene
from graphql import GraphQLResolveInfo

from federation.disclosure.count import Count as CountData
from federation.disclosure.count import Precision
from federation.gateway.types.catalogue import Biobank, BiobankNode, biobank_node
from federation.gateway.types.common import Count, context
from federation.gateway.types.purpose import Obligation
from federation.i18n import Message
from federation.requests.lifecycle import PartState
from federation.requests.service import (
    Handoff,
    Preview,
    RequestView,
)
from federation.state.access_requests import RequestEvent, StoredPart

AccessRequestState = graphene.Enum.from_enum(
    PartState,
    name="AccessRequestState",
    description=lambda member: (
        "Where one biobank's part of an access request stands (after the BBMRI-ERIC "
        "Negotiator's lifecycle)."
        if member is None
        else member.value.replace("_", " ")
    ),
)


def _count(raw: Mapping[str, Any], language: str) -> CountData:
    reasons = raw.get("reasons") or {}
    return CountData(
        raw.get("value"),
        Precision(raw.get("precision", "hidden")),
        reasons.get(language) or reasons.get("en"),
        raw.get("exists"),
    )


class ConsentSplit(graphene.ObjectType):
    class Meta:
        description = "Donors and samples whose consent gives one outcome for the purpose."

    donors = graphene.Field(Count, required=True, description="Donors with this outcome.")
    samples = graphene.Field(Count, required=True, description="Samples with this outcome.")

    @staticmethod
    def resolve_donors(parent: tuple[Mapping[str, Any], str], info: GraphQLResolveInfo) -> Any:
        return _count(parent[0]["donors"], parent[1])

    @staticmethod
    def resolve_samples(parent: tuple[Mapping[str, Any], str], info: GraphQLResolveInfo) -> Any:
        return _count(parent[0]["samples"], parent[1])


@dataclass(frozen=True)
class _Check:
    biobank_id: str
    data: Mapping[str, Any]


class AccessConsentCheck(graphene.ObjectType):
    class Meta:
        description = (
            "A biobank's consent check for the request's question and purpose, computed by "
            "the server at submission and released as the researcher's role may see it "
            "(thresholds, rounding, noise and privacy budget apply)."
        )

    biobank = graphene.Field(Biobank, required=True, description="The biobank.")
    role = graphene.String(required=True, description="The researcher's role toward it.")
    granularity = graphene.String(required=True, description="The most that role may see.")
    donors = graphene.Field(Count, required=True, description="Matching donors.")
    samples = graphene.Field(Count, required=True, description="Matching samples.")
    permitted = graphene.Field(
        ConsentSplit, required=True, description="Whose consent permits the purpose."
    )
    conditional = graphene.Field(
        ConsentSplit, required=True, description="Whose consent permits it with conditions."
    )
    not_permitted = graphene.Field(
        ConsentSplit, required=True, description="Whose consent does not permit it."
    )
    conditions = graphene.List(
        graphene.NonNull(Obligation),
        required=True,
        description="The conditions consent may set on this purpose (empty when no donor "
        "is conditional).",
    )
    collections = graphene.List(
        graphene.NonNull(graphene.ID), required=True, description="Collections asked for."
    )

    @staticmethod
    def resolve_biobank(parent: _Check, info: GraphQLResolveInfo) -> BiobankNode:
        return biobank_node(context(info), parent.biobank_id)

    @staticmethod
    def resolve_role(parent: _Check, info: GraphQLResolveInfo) -> str:
        return str(parent.data["role"])

    @staticmethod
    def resolve_granularity(parent: _Check, info: GraphQLResolveInfo) -> str:
        return str(parent.data.get("granularity", "none"))

    @staticmethod
    def resolve_donors(parent: _Check, info: GraphQLResolveInfo) -> CountData:
        return _count(parent.data["donors"], context(info).language)

    @staticmethod
    def resolve_samples(parent: _Check, info: GraphQLResolveInfo) -> CountData:
        return _count(parent.data["samples"], context(info).language)

    @staticmethod
    def resolve_permitted(parent: _Check, info: GraphQLResolveInfo) -> Any:
        return (parent.data["permitted"], context(info).language)

    @staticmethod
    def resolve_conditional(parent: _Check, info: GraphQLResolveInfo) -> Any:
        return (parent.data["conditional"], context(info).language)

    @staticmethod
    def resolve_not_permitted(parent: _Check, info: GraphQLResolveInfo) -> Any:
        return (parent.data["not_permitted"], context(info).language)

    @staticmethod
    def resolve_conditions(parent: _Check, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
        return [dict(c, until=None) for c in parent.data.get("conditions", ())]

    @staticmethod
    def resolve_collections(parent: _Check, info: GraphQLResolveInfo) -> list[str]:
        return list(parent.data.get("collections", ()))


class AccessRequestEvent(graphene.ObjectType):
    class Meta:
        description = (
            "One line of a part's history: a state change, a message, or both (the request's "
            "audit log and message thread; never changed once written)."
        )

    id = graphene.ID(required=True, description="Its position in the log.")
    biobank_id = graphene.ID(required=True, description="The biobank's part it belongs to.")
    at = graphene.String(required=True, description="When (ISO 8601, UTC).")
    actor = graphene.String(required=True, description="Who (how they signed in and who).")
    actor_role = graphene.String(
        required=True, description="researcher, biobank_admin or network_operator."
    )
    from_state = graphene.Field(AccessRequestState, description="The state before a change.")
    to_state = graphene.Field(AccessRequestState, description="The state after a change.")
    message = graphene.String(description="What was said.")

    @staticmethod
    def resolve_from_state(parent: RequestEvent, info: GraphQLResolveInfo) -> Any:
        return None if parent.from_state is None else PartState(parent.from_state)

    @staticmethod
    def resolve_to_state(parent: RequestEvent, info: GraphQLResolveInfo) -> Any:
        return None if parent.to_state is None else PartState(parent.to_state)


@dataclass(frozen=True)
class _Part:
    part: StoredPart
    moves: tuple[PartState, ...]
    events: tuple[RequestEvent, ...]


class AccessRequestPart(graphene.ObjectType):
    class Meta:
        description = "One biobank's part of an access request: its state and its thread."

    biobank = graphene.Field(Biobank, required=True, description="The biobank.")
    state = graphene.Field(AccessRequestState, required=True, description="Where it stands.")
    updated_at = graphene.String(required=True, description="When it last changed state.")
    consent_check = graphene.Field(
        AccessConsentCheck, required=True, description="The consent check at submission."
    )
    allowed_moves = graphene.List(
        graphene.NonNull(AccessRequestState),
        required=True,
        description="The states you may move this part to.",
    )
    events = graphene.List(
        graphene.NonNull(AccessRequestEvent),
        required=True,
        description="Its state changes and messages, oldest first.",
    )

    @staticmethod
    def resolve_biobank(parent: _Part, info: GraphQLResolveInfo) -> BiobankNode:
        return biobank_node(context(info), parent.part.biobank_id)

    @staticmethod
    def resolve_state(parent: _Part, info: GraphQLResolveInfo) -> PartState:
        return PartState(parent.part.state)

    @staticmethod
    def resolve_updated_at(parent: _Part, info: GraphQLResolveInfo) -> str:
        return parent.part.updated_at

    @staticmethod
    def resolve_consent_check(parent: _Part, info: GraphQLResolveInfo) -> _Check:
        return _Check(parent.part.biobank_id, parent.part.consent)

    @staticmethod
    def resolve_allowed_moves(parent: _Part, info: GraphQLResolveInfo) -> list[PartState]:
        return list(parent.moves)

    @staticmethod
    def resolve_events(parent: _Part, info: GraphQLResolveInfo) -> list[RequestEvent]:
        return list(parent.events)


class AccessRequest(graphene.ObjectType):
    class Meta:
        description = (
            "A researcher's request for samples at one or more biobanks, with the exact "
            "question, the declared purpose and one part per biobank. Researchers see their "
            "own requests; a biobank admin sees only the parts of their biobanks."
        )

    id = graphene.ID(required=True, description="The request's id.")
    title = graphene.String(required=True, description="The project title.")
    description = graphene.String(required=True, description="The project description.")
    researcher = graphene.String(required=True, description="Who asked.")
    language = graphene.String(required=True, description="The researcher's language.")
    question = graphene.String(
        required=True, description="The question and purpose in the researcher's language."
    )
    query = graphene.JSONString(
        required=True, description="The question as the `SampleQuery` it was (normalised)."
    )
    purpose = graphene.JSONString(required=True, description="The declared purpose (DUO terms).")
    created_at = graphene.String(required=True, description="When it was submitted.")
    negotiator_link = graphene.String(description="Where the Negotiator took it over, if sent.")
    parts = graphene.List(
        graphene.NonNull(AccessRequestPart),
        required=True,
        description="One per biobank you may see, each with its own state.",
    )

    @staticmethod
    def resolve_id(parent: RequestView, info: GraphQLResolveInfo) -> str:
        return parent.request.id

    @staticmethod
    def resolve_title(parent: RequestView, info: GraphQLResolveInfo) -> str:
        return parent.request.title

    @staticmethod
    def resolve_description(parent: RequestView, info: GraphQLResolveInfo) -> str:
        return parent.request.description

    @staticmethod
    def resolve_researcher(parent: RequestView, info: GraphQLResolveInfo) -> str:
        return parent.request.researcher

    @staticmethod
    def resolve_language(parent: RequestView, info: GraphQLResolveInfo) -> str:
        return parent.request.language

    @staticmethod
    def resolve_question(parent: RequestView, info: GraphQLResolveInfo) -> str:
        return parent.request.question

    @staticmethod
    def resolve_query(parent: RequestView, info: GraphQLResolveInfo) -> Any:
        return parent.request.query

    @staticmethod
    def resolve_purpose(parent: RequestView, info: GraphQLResolveInfo) -> Any:
        return parent.request.purpose

    @staticmethod
    def resolve_created_at(parent: RequestView, info: GraphQLResolveInfo) -> str:
        return parent.request.created_at

    @staticmethod
    def resolve_negotiator_link(parent: RequestView, info: GraphQLResolveInfo) -> str | None:
        return parent.request.negotiator_link

    @staticmethod
    def resolve_parts(parent: RequestView, info: GraphQLResolveInfo) -> list[_Part]:
        return [
            _Part(
                p,
                tuple(parent.moves.get(p.biobank_id, ())),
                tuple(e for e in parent.events if e.biobank_id == p.biobank_id),
            )
            for p in parent.parts
        ]


class AccessRequestPreview(graphene.ObjectType):
    class Meta:
        description = (
            "What a submission would carry: the question in words and each biobank's consent "
            "check. `nothingPermits` warns that no selected biobank has donors whose consent "
            "permits the purpose; such a request needs `acknowledgeNoPermission`."
        )

    question = graphene.String(required=True, description="The question and purpose in words.")
    nothing_permits = graphene.Boolean(required=True, description="No consent permits it.")
    warning = graphene.String(description="The warning in words, when `nothingPermits`.")
    checks = graphene.List(
        graphene.NonNull(AccessConsentCheck), required=True, description="Per biobank."
    )

    @staticmethod
    def resolve_nothing_permits(parent: Preview, info: GraphQLResolveInfo) -> bool:
        return parent.nothing_permits

    @staticmethod
    def resolve_warning(parent: Preview, info: GraphQLResolveInfo) -> str | None:
        if not parent.nothing_permits:
            return None
        return Message.of("requests.nothing_permits").render(context(info).language)

    @staticmethod
    def resolve_checks(parent: Preview, info: GraphQLResolveInfo) -> list[_Check]:
        return [_Check(c.biobank_id, {**c.data, "collections": []}) for c in parent.checks]


class NegotiatorResource(graphene.ObjectType):
    class Meta:
        description = "A resource of the Negotiator's request: here, a biobank."

    id = graphene.ID(required=True, description="The resource's id (the biobank id).")
    name = graphene.String(required=True, description="Its name.")
    type = graphene.String(required=True, description="`biobank`.")


class ApplicationLink(graphene.ObjectType):
    class Meta:
        description = "A biobank's own application page, with the question in its address."

    biobank_id = graphene.ID(required=True, description="The biobank.")
    url = graphene.String(required=True, description="The link.")


class NegotiatorPayload(graphene.ObjectType):
    class Meta:
        description = (
            "The request as the BBMRI-ERIC Negotiator takes it from a discovery service "
            "(`url`, `humanReadable`, `resources`), and the biobanks' application links."
        )

    url = graphene.String(required=True, description="The question on the search page.")
    human_readable = graphene.String(required=True, description="The question in words.")
    resources = graphene.List(graphene.NonNull(NegotiatorResource), required=True)
    payload = graphene.JSONString(required=True, description="The payload as JSON, to POST.")
    application_links = graphene.List(graphene.NonNull(ApplicationLink), required=True)
    negotiator_link = graphene.String(description="The Negotiator's link, once sent there.")

    @staticmethod
    def resolve_url(parent: Handoff, info: GraphQLResolveInfo) -> str:
        return str(parent.payload["url"])

    @staticmethod
    def resolve_human_readable(parent: Handoff, info: GraphQLResolveInfo) -> str:
        return str(parent.payload["humanReadable"])

    @staticmethod
    def resolve_resources(parent: Handoff, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
        return list(parent.payload["resources"])

    @staticmethod
    def resolve_payload(parent: Handoff, info: GraphQLResolveInfo) -> dict[str, Any]:
        return parent.payload

    @staticmethod
    def resolve_application_links(parent: Handoff, info: GraphQLResolveInfo) -> list[Any]:
        return [{"biobank_id": b, "url": u} for b, u in sorted(parent.application_links.items())]
