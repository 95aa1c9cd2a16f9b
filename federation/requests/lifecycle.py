"""The lifecycle of one biobank's part of an access request, after the BBMRI-ERIC
Negotiator's: who may move a part from which state to which.

The researcher, that biobank's admins and the network operator each have their own moves;
a move not listed here is refused with TRANSITION_NOT_ALLOWED, whoever asks.
"""

from __future__ import annotations

import enum

from federation.errors import RequestError


class PartState(enum.StrEnum):
    """Where one biobank's part of a request stands."""

    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    MORE_INFO_NEEDED = "more_info_needed"
    APPROVED = "approved"
    DECLINED = "declined"
    SAMPLES_AVAILABLE = "samples_available"
    CLOSED = "closed"


class Actor(enum.StrEnum):
    """Who moves a part: the researcher who asked, that biobank's admin, the operator."""

    RESEARCHER = "researcher"
    BIOBANK_ADMIN = "biobank_admin"
    NETWORK_OPERATOR = "network_operator"


S, A = PartState, Actor
# (from, to) -> the actors who may make that move.
TRANSITIONS: dict[tuple[PartState, PartState], frozenset[Actor]] = {
    (S.SUBMITTED, S.UNDER_REVIEW): frozenset({A.BIOBANK_ADMIN}),
    (S.SUBMITTED, S.DECLINED): frozenset({A.BIOBANK_ADMIN}),
    (S.SUBMITTED, S.CLOSED): frozenset({A.RESEARCHER, A.NETWORK_OPERATOR}),
    (S.UNDER_REVIEW, S.MORE_INFO_NEEDED): frozenset({A.BIOBANK_ADMIN}),
    (S.UNDER_REVIEW, S.APPROVED): frozenset({A.BIOBANK_ADMIN}),
    (S.UNDER_REVIEW, S.DECLINED): frozenset({A.BIOBANK_ADMIN}),
    (S.UNDER_REVIEW, S.CLOSED): frozenset({A.RESEARCHER, A.NETWORK_OPERATOR}),
    # The researcher answers (with a message); the admin may also take it back up.
    (S.MORE_INFO_NEEDED, S.UNDER_REVIEW): frozenset({A.RESEARCHER, A.BIOBANK_ADMIN}),
    (S.MORE_INFO_NEEDED, S.DECLINED): frozenset({A.BIOBANK_ADMIN}),
    (S.MORE_INFO_NEEDED, S.CLOSED): frozenset({A.RESEARCHER, A.NETWORK_OPERATOR}),
    (S.APPROVED, S.SAMPLES_AVAILABLE): frozenset({A.BIOBANK_ADMIN}),
    (S.APPROVED, S.CLOSED): frozenset({A.RESEARCHER, A.BIOBANK_ADMIN, A.NETWORK_OPERATOR}),
    (S.DECLINED, S.CLOSED): frozenset({A.RESEARCHER, A.BIOBANK_ADMIN, A.NETWORK_OPERATOR}),
    (S.SAMPLES_AVAILABLE, S.CLOSED): frozenset({A.RESEARCHER, A.BIOBANK_ADMIN, A.NETWORK_OPERATOR}),
}
# Moves that make no sense without words: the admin must say what is missing or why not.
NEEDS_MESSAGE = frozenset({S.MORE_INFO_NEEDED, S.DECLINED})


class TransitionNotAllowed(RequestError):
    """The part cannot go from its state to the one asked for, or not by this actor."""

    code = "TRANSITION_NOT_ALLOWED"


def moves_for(state: PartState, actors: frozenset[Actor]) -> tuple[PartState, ...]:
    """The states these actors may move a part in `state` to, in lifecycle order."""
    return tuple(to for to in PartState if actors & TRANSITIONS.get((state, to), frozenset()))


def check_move(state: PartState, to: PartState, actors: frozenset[Actor]) -> Actor:
    """The actor the move is made as; TransitionNotAllowed naming who may make it."""
    allowed = TRANSITIONS.get((state, to))
    if allowed is None:
        possible = ", ".join(t.value for t in PartState if (state, t) in TRANSITIONS) or "none"
        raise TransitionNotAllowed(
            f"state: a part that is {state.value} cannot become {to.value} (possible: {possible})",
            state=state.value,
            to=to.value,
        )
    for actor in (A.BIOBANK_ADMIN, A.RESEARCHER, A.NETWORK_OPERATOR):
        if actor in actors and actor in allowed:
            return actor
    who = ", ".join(sorted(a.value for a in allowed))
    raise TransitionNotAllowed(
        f"state: only {who} may move a part from {state.value} to {to.value}",
        state=state.value,
        to=to.value,
    )
