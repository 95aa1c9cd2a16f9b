"""The privacy budget's defaults: on for every role the network file does not name (only
noised figures spend from it), off only where the file says `unbounded`."""

from __future__ import annotations

import pytest

from federation.disclosure.budget import (
    DEFAULT_BUDGET,
    DEFAULT_EPSILON,
    Fallback,
    Period,
    PrivacyBudgets,
    Scope,
)
from federation.disclosure.policy import PolicyError
from federation.disclosure.roles import Role


def test_without_a_privacy_budget_section_every_role_has_the_default() -> None:
    budgets = PrivacyBudgets.parse(None)
    assert budgets.rule(Role.REGISTERED) == DEFAULT_BUDGET
    assert DEFAULT_BUDGET.epsilon == DEFAULT_EPSILON == 16.0
    assert (DEFAULT_BUDGET.period, DEFAULT_BUDGET.scope, DEFAULT_BUDGET.fallback) == (
        Period.DAY,
        Scope.BIOBANK,
        Fallback.THRESHOLD_ONLY,
    )


def test_a_named_role_gets_its_own_budget_and_the_others_keep_the_default() -> None:
    budgets = PrivacyBudgets.parse({"registered": {"epsilon": 4, "period": "week"}})
    registered = budgets.rule(Role.REGISTERED)
    assert registered is not None and (registered.epsilon, registered.period) == (4.0, Period.WEEK)
    assert budgets.rule(Role.APPROVED) == DEFAULT_BUDGET


def test_unbounded_is_a_deliberate_choice_per_role() -> None:
    budgets = PrivacyBudgets.parse({"registered": "unbounded"})
    assert budgets.rule(Role.REGISTERED) is None
    assert budgets.rule(Role.APPROVED) == DEFAULT_BUDGET


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"registered": "none"}, "privacy_budget.registered: 'none' must be a mapping"),
        ({"registered": {"epsilon": 0}}, "privacy_budget.registered.epsilon: 0 must be"),
        ({"nobody": {"epsilon": 1}}, "privacy_budget: 'nobody' is not a role"),
    ],
)
def test_bad_entries_are_named(raw: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(")):
        PrivacyBudgets.parse(raw)
