"""Releasing one count under a rule, and summing released counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.disclosure.count import Count, Precision
from federation.disclosure.policy import DisclosurePolicy, Granularity, PolicyError, RoleRule
from federation.disclosure.release import (
    CountedSet,
    laplace,
    noise_key,
    release,
    release_pair,
    total,
)
from federation.disclosure.roles import Identity, Role

NOISED = RoleRule(Granularity.COUNT, min_count=5, noise=1.0)
ROWS = CountedSet("bb1", "donors", 40, 123456789, "g1")
KEY = noise_key("secret", ROWS, NOISED)


def test_exact_rule_releases_the_number() -> None:
    assert release(7, RoleRule(Granularity.COUNT, min_count=1), KEY) == Count(7)


def test_small_counts_are_withheld_but_zero_is_told() -> None:
    rule = RoleRule(Granularity.COUNT, min_count=5)
    assert release(0, rule, KEY) == Count(0)
    withheld = release(3, rule, KEY)
    assert (withheld.value, withheld.precision) == (None, Precision.BELOW_THRESHOLD)
    assert "minimum count of 5" in (withheld.reason or "")
    assert release(5, rule, KEY) == Count(5)


def test_rounding_and_noise_say_so() -> None:
    rounded = release(23, RoleRule(Granularity.COUNT, min_count=10, rounding=10), KEY)
    assert (rounded.value, rounded.precision) == (20, Precision.ROUNDED)
    assert rounded.reason == "rounded to the nearest 10"
    noised = release(500, RoleRule(Granularity.COUNT, min_count=5, noise=3), KEY)
    assert noised.precision is Precision.NOISED and noised.value is not None
    assert abs(noised.value - 500) < 60


def test_boolean_and_none_granularity() -> None:
    yes = release(2, RoleRule(Granularity.BOOLEAN), KEY)
    assert (yes.value, yes.precision, yes.exists) == (None, Precision.BOOLEAN, True)
    assert release(0, RoleRule(Granularity.BOOLEAN), KEY).exists is False
    assert release(9, RoleRule(Granularity.NONE), KEY).precision is Precision.HIDDEN


def test_samples_are_withheld_with_their_donors() -> None:
    donors, samples = release_pair(1, 40, RoleRule(Granularity.COUNT, min_count=5), (KEY, KEY))
    assert donors.value is None and samples.value is None
    assert samples.precision is Precision.BELOW_THRESHOLD


def test_noise_is_fixed_per_row_set_but_differs_between_them() -> None:
    other = noise_key("secret", CountedSet("bb1", "donors", 40, 987654321, "g1"), NOISED)
    draws = {
        laplace(noise_key("secret", CountedSet("bb", "donors", 40, n, "g"), NOISED), 5.0)
        for n in range(200)
    }
    assert laplace(KEY, 5.0) == laplace(KEY, 5.0)
    assert len(draws) > 10, "noise must vary between row sets"
    assert noise_key("secret", CountedSet("bb1", "donors", 40, 123456789, "g1"), NOISED) == KEY
    assert other != KEY
    assert noise_key("another secret", ROWS, NOISED) != KEY


def test_noise_key_changes_with_every_part_of_the_row_set_and_the_rule() -> None:
    changed = [
        CountedSet("bb2", "donors", 40, 123456789, "g1"),
        CountedSet("bb1", "samples", 40, 123456789, "g1"),
        CountedSet("bb1", "donors", 41, 123456789, "g1"),
        CountedSet("bb1", "donors", 40, 123456789, "g2"),
    ]
    keys = {noise_key("secret", rows, NOISED) for rows in changed}
    keys.add(noise_key("secret", ROWS, RoleRule(Granularity.COUNT, min_count=5, noise=2.0)))
    assert len(keys) == 5 and KEY not in keys


def test_totals_sum_released_figures_and_say_what_they_leave_out() -> None:
    cells = [
        Count(20, Precision.ROUNDED, "r"),
        Count(None, Precision.BELOW_THRESHOLD, "k"),
        Count(7),
    ]
    summed = total(cells)
    assert summed.value == 27
    assert summed.precision is Precision.LOWER_BOUND  # what is left out matters most
    assert "leaves out 1 withheld" in (summed.reason or "")
    assert total([Count(3), Count(4)]) == Count(7)
    only_withheld = total([Count(None, Precision.BELOW_THRESHOLD)])
    assert (only_withheld.value, only_withheld.exists) == (None, True)
    assert total([]) == Count(0)


@given(
    true=st.integers(0, 10_000),
    k=st.integers(1, 20),
    step=st.integers(1, 50),
    noise=st.sampled_from([0.0, 0.5, 2.0, 10.0]),
    seed=st.binary(min_size=32, max_size=32),
)
def test_no_released_count_lies_between_one_and_k(
    true: int, k: int, step: int, noise: float, seed: bytes
) -> None:
    count = release(
        true, RoleRule(Granularity.COUNT, min_count=k, rounding=step, noise=noise), seed
    )
    assert count.value is None or count.value == 0 or count.value >= k
    if true == 0:
        assert count.value == 0
    if 0 < true < k:
        assert count.value is None


def test_policies_parse_and_reject_bad_entries() -> None:
    policy = DisclosurePolicy.parse(
        {"anonymous": {"granularity": "boolean"}, "registered": {"min_count": 3, "rounding": 5}}
    )
    assert policy.rule(Role.ANONYMOUS).granularity is Granularity.BOOLEAN
    assert policy.rule(Role.REGISTERED) == RoleRule(Granularity.COUNT, 3, 5, 1.0)
    assert policy.rule(Role.BIOBANK_ADMIN).exact
    for raw, message in [
        ({"visitor": {}}, "'visitor' is not a role"),
        ({"anonymous": {"granularity": "all"}}, "granularity: 'all' is not one of"),
        ({"anonymous": {"min_count": 0}}, "min_count: 0 must be an integer >= 1"),
        ({"anonymous": {"noise": -1}}, "noise: -1 must be a number"),
        ({"anonymous": {"colour": 1}}, "unknown setting 'colour'"),
    ]:
        with pytest.raises(PolicyError, match=message):
            DisclosurePolicy.parse(raw)
    # An admin's full view of their own biobank cannot be configured away.
    hidden = DisclosurePolicy.parse({"biobank_admin": {"granularity": "none"}})
    assert hidden.rule(Role.BIOBANK_ADMIN).granularity is Granularity.RECORD


def test_role_toward_a_biobank_is_the_most_trusted_that_applies() -> None:
    who = Identity(
        "r", True, operator=True, admin_of=frozenset({"a"}), approved_for=frozenset({"b"})
    )
    assert [who.role_for(b) for b in ("a", "b", "c")] == [
        Role.BIOBANK_ADMIN,
        Role.APPROVED,
        Role.NETWORK_OPERATOR,
    ]
    assert Identity().role_for("a") is Role.ANONYMOUS
    assert Identity("x", True).role_for("a") is Role.REGISTERED
