"""The lifecycle table: every state reachable from submitted, closed final, the moves of
each actor, and the error codes clients branch on."""

from __future__ import annotations

import pytest

from federation.errors import RequestError
from federation.requests.lifecycle import (
    TRANSITIONS,
    Actor,
    PartState,
    TransitionNotAllowed,
    check_move,
    moves_for,
)
from federation.requests.negotiator import NegotiatorUnavailable
from federation.requests.service import PurposeNotPermitted, StateConflict

ADMIN = frozenset({Actor.BIOBANK_ADMIN})
RESEARCHER = frozenset({Actor.RESEARCHER})
OPERATOR = frozenset({Actor.NETWORK_OPERATOR})


def test_every_state_is_reachable_and_closed_is_final() -> None:
    reached = {PartState.SUBMITTED}
    frontier = [PartState.SUBMITTED]
    while frontier:
        state = frontier.pop()
        for source, target in TRANSITIONS:
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(PartState)
    assert not [t for t in TRANSITIONS if t[0] is PartState.CLOSED]


def test_decisions_are_the_admins_and_closing_is_everyones() -> None:
    assert moves_for(PartState.UNDER_REVIEW, ADMIN) == (
        PartState.MORE_INFO_NEEDED,
        PartState.APPROVED,
        PartState.DECLINED,
    )
    assert moves_for(PartState.UNDER_REVIEW, RESEARCHER) == (PartState.CLOSED,)
    assert moves_for(PartState.MORE_INFO_NEEDED, RESEARCHER) == (
        PartState.UNDER_REVIEW,
        PartState.CLOSED,
    )
    assert moves_for(PartState.SUBMITTED, OPERATOR) == (PartState.CLOSED,)
    for state in PartState:
        for target in (PartState.APPROVED, PartState.DECLINED, PartState.SAMPLES_AVAILABLE):
            assert target not in moves_for(state, RESEARCHER | OPERATOR)


def test_a_move_is_made_as_the_actor_it_belongs_to() -> None:
    both = ADMIN | RESEARCHER  # an admin who asked their own biobank
    assert check_move(PartState.UNDER_REVIEW, PartState.APPROVED, both) is Actor.BIOBANK_ADMIN
    assert check_move(PartState.SUBMITTED, PartState.CLOSED, both) is Actor.RESEARCHER
    with pytest.raises(TransitionNotAllowed, match="only biobank_admin may move"):
        check_move(PartState.UNDER_REVIEW, PartState.APPROVED, RESEARCHER)
    with pytest.raises(TransitionNotAllowed, match="cannot become approved"):
        check_move(PartState.CLOSED, PartState.APPROVED, ADMIN)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TransitionNotAllowed, "TRANSITION_NOT_ALLOWED"),
        (PurposeNotPermitted, "PURPOSE_NOT_PERMITTED"),
        (StateConflict, "STATE_CONFLICT"),
        (NegotiatorUnavailable, "NEGOTIATOR_UNAVAILABLE"),
    ],
)
def test_errors_carry_a_stable_code(error: type[RequestError], code: str) -> None:
    assert issubclass(error, RequestError) and error.code == code
