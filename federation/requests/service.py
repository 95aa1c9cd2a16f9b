"""The access request service: preview, submit, read, move and discuss requests, with every
permission check here (the GraphQL resolvers only parse and call).

A request carries the exact question (a `SampleQuery`, stored machine-readable, and its
sentence in the researcher's language), the declared purpose, a title and description,
and one part per biobank. Each part's consent check is computed here, at submission,
through the normal search (the caller's role, release rules and privacy budget); nothing
a client sends about counts is read. Every state change and message is a row of the
request's append-only log, written with the notifications it causes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.consent import OUTCOMES, ResearchPurpose, compile_purpose
from federation.disclosure.count import Count
from federation.disclosure.permissions import require_signed_in
from federation.disclosure.roles import Identity
from federation.errors import BadInput, Forbidden, NotFound, RequestError, check_text
from federation.i18n import LANGUAGES
from federation.requests.config import RequestPolicy, RequestsSettings
from federation.requests.lifecycle import (
    NEEDS_MESSAGE,
    Actor,
    PartState,
    check_move,
    moves_for,
)
from federation.requests.negotiator import (
    application_links,
    negotiator_payload,
    post_to_negotiator,
)
from federation.requests.notices import Notices
from federation.requests.question import question_sentence
from federation.search.query import SampleQuery
from federation.search.service import SearchService
from federation.settings import Network
from federation.state.access_requests import (
    AccessRequestRecords,
    RequestEvent,
    StoredPart,
    StoredRequest,
)

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
MAX_MESSAGE = 10_000
MAX_BIOBANKS = 50
REQUEST_ID_BYTES = 8


class PurposeNotPermitted(RequestError):
    """No selected biobank's donors' consent permits the purpose; submit with
    `acknowledgeNoPermission` to send it anyway."""

    code = "PURPOSE_NOT_PERMITTED"


class StateConflict(RequestError):
    """The part changed state while the move was being made; read it again."""

    code = "STATE_CONFLICT"


def _count_json(count: Count) -> dict[str, Any]:
    return {
        "value": count.value,
        "precision": count.precision.value,
        "exists": count.exists,
        # The reason in every language, so the part reads right whoever opens it later.
        "reasons": {lang: count.reason_in(lang) for lang in LANGUAGES},
    }


def _hidden() -> dict[str, Any]:
    return {"value": None, "precision": "hidden", "exists": None, "reasons": {}}


def _nothing(count: Mapping[str, Any]) -> bool:
    """Whether a released count says there are none (a withheld count is 1 or more)."""
    return count.get("value") == 0 or count.get("exists") is False


@dataclass(frozen=True)
class ConsentCheck:
    """One biobank's consent check as released to the researcher's role."""

    biobank_id: str
    data: dict[str, Any]

    @property
    def nothing_permits(self) -> bool:
        """True when the released counts say no donor's consent permits the purpose."""
        return all(_nothing(self.data[o]["donors"]) for o in ("permitted", "conditional"))


@dataclass(frozen=True)
class Preview:
    """What a submission would carry: the sentence and each biobank's consent check."""

    question: str
    checks: tuple[ConsentCheck, ...]

    @property
    def nothing_permits(self) -> bool:
        """True when no selected biobank has donors whose consent permits the purpose."""
        return all(check.nothing_permits for check in self.checks)


@dataclass(frozen=True)
class Submission:
    """What a researcher submits (counts are never part of it: they are recomputed)."""

    query: SampleQuery
    purpose: ResearchPurpose
    biobanks: tuple[str, ...]
    title: str
    description: str
    language: str = "en"
    contact_email: str | None = None
    acknowledge_no_permission: bool = False
    collections: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RequestView:
    """A request as one caller may see it: only the parts they may see, with the moves
    they may make on each."""

    request: StoredRequest
    parts: tuple[StoredPart, ...]
    moves: Mapping[str, tuple[PartState, ...]]
    events: tuple[RequestEvent, ...]


@dataclass(frozen=True)
class Handoff:
    """A request as others take it over: the Negotiator payload, application links per
    biobank, and the Negotiator's link once it was sent there."""

    payload: dict[str, Any]
    application_links: Mapping[str, str]
    negotiator_link: str | None


def now_text() -> str:
    """The current UTC time as ISO 8601 text (what the store keeps)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def researcher_key(identity: Identity) -> str:
    """How a caller is named in requests: how they signed in and who they are."""
    return f"{identity.via}:{identity.subject}"


class AccessRequestService:
    """Access requests with their permission checks, consent checks and notifications."""

    def __init__(
        self,
        records: Callable[[], AccessRequestRecords],
        search: SearchService,
        network: Callable[[], Network],
        settings: RequestsSettings,
    ) -> None:
        self._records = records
        self.search = search
        self.network = network
        self.settings = settings
        self.clock: Callable[[], str] = now_text

    @property
    def records(self) -> AccessRequestRecords:
        """The store's requests (opened on first use)."""
        return self._records()

    # --- who may do what -----------------------------------------------------------------

    def policy(self) -> RequestPolicy:
        """The network file's `access_requests` section."""
        return RequestPolicy.parse(self.network().access_requests)

    def require_requester(self, identity: Identity) -> None:
        """Signed in, with a role the network lets request samples."""
        require_signed_in(identity, "access requests")
        allowed = self.policy().roles
        if not allowed.intersection(identity.roles):
            names = ", ".join(sorted(r.value for r in allowed)) or "no role"
            raise Forbidden(f"access requests: in this network only {names} may request samples")

    def _actors(
        self, identity: Identity, request: StoredRequest, biobank_id: str
    ) -> frozenset[Actor]:
        actors = set()
        if request.researcher == researcher_key(identity):
            actors.add(Actor.RESEARCHER)
        if biobank_id in identity.admin_of:
            actors.add(Actor.BIOBANK_ADMIN)
        if identity.operator:
            actors.add(Actor.NETWORK_OPERATOR)
        return frozenset(actors)

    def _visible(self, identity: Identity, request: StoredRequest) -> tuple[StoredPart, ...]:
        """The parts a caller may see: all for the researcher and operators, else only
        the parts of biobanks they administer."""
        if identity.operator or request.researcher == researcher_key(identity):
            return request.parts
        return tuple(p for p in request.parts if p.biobank_id in identity.admin_of)

    def _load(self, identity: Identity, request_id: str) -> StoredRequest:
        """A request the caller may see; NOT_FOUND otherwise (whether it exists or not, so
        ids cannot be probed)."""
        require_signed_in(identity, "access requests")
        request = self.records.get(request_id)
        if request is None or not self._visible(identity, request):
            raise NotFound("id", request_id, "access request you may see with id")
        return request

    def _view(self, identity: Identity, request: StoredRequest) -> RequestView:
        parts = self._visible(identity, request)
        shown = {p.biobank_id for p in parts}
        moves = {
            p.biobank_id: moves_for(
                PartState(p.state), self._actors(identity, request, p.biobank_id)
            )
            for p in parts
        }
        events = tuple(e for e in self.records.events(request.id) if e.biobank_id in shown)
        return RequestView(request, parts, moves, events)

    # --- the consent check ---------------------------------------------------------------

    def _check_biobanks(self, biobanks: Sequence[str], query: SampleQuery) -> tuple[str, ...]:
        if not biobanks:
            raise BadInput("biobanks", [], "select at least one biobank")
        if len(biobanks) > MAX_BIOBANKS:
            raise BadInput("biobanks", len(biobanks), f"at most {MAX_BIOBANKS} biobanks")
        known = {s.biobank.id for s in self.network().biobanks}
        for biobank_id in biobanks:
            if biobank_id not in known:
                raise BadInput("biobanks", biobank_id, "no biobank in this network has this id")
            if query.biobanks and biobank_id not in query.biobanks:
                raise BadInput(
                    "biobanks", biobank_id, "the question itself leaves this biobank out"
                )
        return tuple(dict.fromkeys(biobanks))

    def preview(
        self,
        identity: Identity,
        query: SampleQuery,
        purpose: ResearchPurpose,
        biobanks: Sequence[str],
        language: str = "en",
    ) -> Preview:
        """The sentence and each biobank's consent check, as a submission would carry them.

        It is a search (audited, and charged to the privacy budget like any other)."""
        self.require_requester(identity)
        selected = self._check_biobanks(biobanks, query)
        result = self.search.search(
            dataclasses.replace(query, biobanks=selected),
            identity=identity,
            purpose=purpose,
            facets=(),
            page=None,
        )
        rows = {row.biobank_id: row for row in result.by_biobank}
        conditions = [
            {"code": rule.code, "description": rule.description}
            for rule in compile_purpose(purpose).conditions
        ]
        checks = []
        for biobank_id in selected:
            row = rows.get(biobank_id)
            data: dict[str, Any] = {
                "role": identity.role_for(biobank_id).value,
                "donors": _hidden() if row is None else _count_json(row.donors),
                "samples": _hidden() if row is None else _count_json(row.samples),
            }
            split = {c.outcome: c for c in row.consent or ()} if row is not None else {}
            for outcome in OUTCOMES:
                item = split.get(outcome)
                data[outcome] = {
                    "donors": _hidden() if item is None else _count_json(item.donors),
                    "samples": _hidden() if item is None else _count_json(item.samples),
                }
            data["granularity"] = row.access.granularity if row and row.access else "none"
            data["conditions"] = [] if _nothing(data["conditional"]["donors"]) else conditions
            checks.append(ConsentCheck(biobank_id, data))
        names = self.search.names
        sentence = question_sentence(query, purpose, names.name, language)
        return Preview(sentence, tuple(checks))

    # --- submitting and reading ----------------------------------------------------------

    def submit(self, identity: Identity, submission: Submission) -> RequestView:
        """Recompute the consent check, store the request and queue its notifications."""
        self.require_requester(identity)
        title = submission.title.strip()
        for argument, text, limit in (
            ("title", title, MAX_TITLE),
            ("description", submission.description, MAX_DESCRIPTION),
        ):
            check_text(argument, text)
            if not text.strip():
                raise BadInput(argument, text, "must not be empty")
            if len(text) > limit:
                raise BadInput(argument, text[:40] + "...", f"longer than {limit} characters")
        if submission.language not in LANGUAGES:
            raise BadInput("language", submission.language, f"not one of {', '.join(LANGUAGES)}")
        self._check_collections(submission)
        preview = self.preview(
            identity,
            submission.query,
            submission.purpose,
            submission.biobanks,
            submission.language,
        )
        if preview.nothing_permits and not submission.acknowledge_no_permission:
            raise PurposeNotPermitted(
                "purpose: no selected biobank has donors whose consent permits this purpose; "
                "check the preview, or submit with acknowledgeNoPermission to send it anyway",
                argument="purpose",
            )
        at = self.clock()
        request_id = f"ar-{secrets.token_hex(REQUEST_ID_BYTES)}"
        email = submission.contact_email or (identity.subject if "@" in identity.subject else None)
        parts = tuple(
            StoredPart(
                request_id,
                check.biobank_id,
                PartState.SUBMITTED.value,
                {
                    **check.data,
                    "collections": list(submission.collections.get(check.biobank_id, ())),
                },
                at,
            )
            for check in preview.checks
        )
        request = StoredRequest(
            id=request_id,
            researcher=researcher_key(identity),
            researcher_email=email,
            language=submission.language,
            title=title,
            description=submission.description.strip(),
            query=submission.query.normalised(),
            question=preview.question,
            purpose=submission.purpose.normalised(),
            created_at=at,
            parts=parts,
        )
        events = [
            RequestEvent(
                request_id,
                p.biobank_id,
                at,
                request.researcher,
                Actor.RESEARCHER.value,
                None,
                PartState.SUBMITTED.value,
                None,
            )
            for p in parts
        ]
        notices = self._notices()
        notes = [n for e in events for n in notices.for_event(request, e)]
        self.records.create(request, events, notes)
        return self._view(identity, request)

    def _check_collections(self, submission: Submission) -> None:
        """Each named collection belongs to a selected biobank's published data."""
        published = self.search.backend.published()
        for biobank_id, collection_ids in submission.collections.items():
            if biobank_id not in submission.biobanks:
                raise BadInput("collections", biobank_id, "names a biobank not selected")
            info = published.get(biobank_id)
            known = {str(c["id"]) for c in info.metadata.get("collections", ())} if info else set()
            for collection_id in collection_ids:
                if collection_id not in known:
                    raise BadInput(
                        "collections",
                        collection_id,
                        f"no collection of {biobank_id} has this id "
                        f"(known: {', '.join(sorted(known)) or 'none'})",
                    )

    def _notices(self) -> Notices:
        return Notices(self.settings, self.network())

    def mine(self, identity: Identity) -> list[RequestView]:
        """The caller's own requests, newest first."""
        require_signed_in(identity, "access requests")
        return [
            self._view(identity, r) for r in self.records.by_researcher(researcher_key(identity))
        ]

    def get(self, identity: Identity, request_id: str) -> RequestView:
        """One request as the caller may see it."""
        return self._view(identity, self._load(identity, request_id))

    def queue(
        self, identity: Identity, biobank_id: str | None = None, state: PartState | None = None
    ) -> list[RequestView]:
        """Requests with parts at the biobanks the caller administers (one, if named);
        network operators see every biobank's."""
        require_signed_in(identity, "access request queue")
        if biobank_id is not None:
            if biobank_id not in identity.admin_of and not identity.operator:
                raise Forbidden(
                    "biobankAccessRequests: only admins of that biobank may see its queue",
                    biobank=biobank_id,
                )
            biobanks: set[str] = {biobank_id}
        elif identity.operator:
            biobanks = {s.biobank.id for s in self.network().biobanks}
        else:
            biobanks = set(identity.admin_of)
        if not biobanks:
            raise Forbidden("biobankAccessRequests: only biobank admins have a request queue")
        out = []
        for request in self.records.for_biobanks(biobanks):
            view = self._view(identity, request)
            parts = tuple(
                p
                for p in view.parts
                if p.biobank_id in biobanks and (state is None or p.state == state.value)
            )
            if parts:
                out.append(dataclasses.replace(view, parts=parts))
        return out

    # --- moving and discussing -----------------------------------------------------------

    def move(
        self,
        identity: Identity,
        request_id: str,
        biobank_id: str,
        to: PartState,
        message: str | None = None,
    ) -> RequestView:
        """Move one biobank's part to `to`, as the researcher, that biobank's admin or the
        operator, each only where the lifecycle lets them."""
        request = self._load(identity, request_id)
        part = self._part(identity, request, biobank_id)
        text = self._message(message, required=to in NEEDS_MESSAGE)
        actor = check_move(PartState(part.state), to, self._actors(identity, request, biobank_id))
        event = RequestEvent(
            request_id,
            biobank_id,
            self.clock(),
            researcher_key(identity),
            actor.value,
            part.state,
            to.value,
            text,
        )
        notes = self._notices().for_event(request, event)
        if not self.records.move(event, notes):
            raise StateConflict(
                f"state: the part at {biobank_id} changed meanwhile; read the request again",
                biobank=biobank_id,
            )
        return self.get(identity, request_id)

    def post_message(
        self, identity: Identity, request_id: str, biobank_id: str, message: str
    ) -> RequestView:
        """Add a message to one biobank's thread, as the researcher, that biobank's admin
        or the operator."""
        request = self._load(identity, request_id)
        part = self._part(identity, request, biobank_id)
        actors = self._actors(identity, request, biobank_id)
        if not actors:
            raise Forbidden("message: only the researcher and that biobank's admins may write")
        actor = next(
            a
            for a in (Actor.BIOBANK_ADMIN, Actor.RESEARCHER, Actor.NETWORK_OPERATOR)
            if a in actors
        )
        text = self._message(message, required=True)
        event = RequestEvent(
            request_id,
            biobank_id,
            self.clock(),
            researcher_key(identity),
            actor.value,
            None,
            None,
            text,
        )
        self.records.post(event, self._notices().for_event(request, event))
        del part
        return self.get(identity, request_id)

    # --- handing over ----------------------------------------------------------------------

    def handoff(self, identity: Identity, request_id: str) -> Handoff:
        """The Negotiator payload and the biobanks' application links, for whoever may see
        the request (an admin: only their biobanks' resources and links)."""
        request = self._load(identity, request_id)
        shown = dataclasses.replace(request, parts=self._visible(identity, request))
        return Handoff(
            negotiator_payload(shown, self.network(), self.settings),
            application_links(shown, self.policy()),
            request.negotiator_link,
        )

    def send_to_negotiator(self, identity: Identity, request_id: str) -> Handoff:
        """POST the payload to the configured Negotiator and record the link it returns;
        only the researcher who made the request may."""
        request = self._load(identity, request_id)
        if request.researcher != researcher_key(identity):
            raise Forbidden("sendToNegotiator: only the researcher who made the request may")
        url = self.settings.negotiator_url
        if url is None:
            raise Forbidden("sendToNegotiator: this network has no Negotiator configured")
        payload = negotiator_payload(request, self.network(), self.settings)
        link = post_to_negotiator(url, payload, self.settings.http_timeout)
        self.records.set_negotiator_link(request.id, link)
        at = self.clock()
        for part in request.parts:
            self.records.post(
                RequestEvent(
                    request.id,
                    part.biobank_id,
                    at,
                    researcher_key(identity),
                    Actor.RESEARCHER.value,
                    None,
                    None,
                    f"handed over to the Negotiator: {link}",
                ),
                (),
            )
        return Handoff(payload, application_links(request, self.policy()), link)

    def _part(self, identity: Identity, request: StoredRequest, biobank_id: str) -> StoredPart:
        for part in self._visible(identity, request):
            if part.biobank_id == biobank_id:
                return part
        raise NotFound("biobank", biobank_id, f"part of request {request.id} you may see at")

    @staticmethod
    def _message(message: str | None, *, required: bool) -> str | None:
        text = (message or "").strip()
        check_text("message", text)
        if required and not text:
            raise BadInput("message", message, "say what is needed or why (a message is required)")
        if len(text) > MAX_MESSAGE:
            raise BadInput("message", text[:40] + "...", f"longer than {MAX_MESSAGE} characters")
        return text or None
