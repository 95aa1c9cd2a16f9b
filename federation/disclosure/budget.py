"""Privacy budgets per role: epsilon per period, per biobank or network-wide, and the
coarser release a figure falls back to once the budget is spent.

Each fresh noised figure (a row set not released to the subject in the period) costs
epsilon = 1 / noise scale (the Laplace mechanism with sensitivity 1); docs/privacy.md has
the arithmetic behind the recommended numbers.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from federation.disclosure.policy import PolicyError
from federation.disclosure.roles import Role

NETWORK_SCOPE = "network"
_E = TypeVar("_E", bound=enum.Enum)


class Period(enum.Enum):
    """How long a budget lasts before it refills (periods start at 00:00 UTC)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"

    def window(self, at: dt.datetime) -> tuple[str, dt.datetime]:
        """The period `at` falls in, as a sortable label, and when the next one starts."""
        at = at.astimezone(dt.UTC)
        if self is Period.HOUR:
            start = at.replace(minute=0, second=0, microsecond=0)
            return start.strftime("%Y-%m-%dT%H"), start + dt.timedelta(hours=1)
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        if self is Period.DAY:
            return day.strftime("%Y-%m-%d"), day + dt.timedelta(days=1)
        monday = day - dt.timedelta(days=day.weekday())
        return monday.strftime("%G-W%V"), monday + dt.timedelta(days=7)


class Fallback(enum.Enum):
    """What a figure the budget cannot pay for is released as."""

    THRESHOLD_ONLY = "threshold_only"  # "at least k" (or below k, or zero)
    BOOLEAN = "boolean"  # only whether there are matches


class Scope(enum.Enum):
    """Whether one budget covers each biobank apart or the whole network."""

    BIOBANK = "biobank"
    NETWORK = "network"


@dataclass(frozen=True)
class BudgetRule:
    """One role's budget: `epsilon` per `period`, per `scope`, then `fallback`."""

    epsilon: float
    period: Period = Period.DAY
    scope: Scope = Scope.BIOBANK
    fallback: Fallback = Fallback.THRESHOLD_ONLY

    def scope_of(self, biobank_id: str) -> str:
        """The ledger scope a figure of this biobank is charged to."""
        return biobank_id if self.scope is Scope.BIOBANK else NETWORK_SCOPE


# The budget of every role the network file does not name: epsilon 16 per biobank per day.
# Only figures released with noise spend from it, so it bounds exactly the noised roles
# (registered, by default). docs/privacy.md has the arithmetic: with noise scale 1 an
# attacker who spends a whole day's budget on one withheld cell estimates it to +-1 donor.
DEFAULT_EPSILON = 16.0
DEFAULT_BUDGET = BudgetRule(DEFAULT_EPSILON)
# The network file's word for a role the network deliberately leaves unbounded.
UNBOUNDED = "unbounded"


@dataclass(frozen=True)
class PrivacyBudgets:
    """Budgets per role. A role the network file does not name gets `default` (on unless
    the file says otherwise); a role it names `unbounded` spends nothing. Only noised
    figures cost anything, so a role without noise is never bounded in effect."""

    rules: Mapping[Role, BudgetRule | None]
    default: BudgetRule | None = DEFAULT_BUDGET

    def rule(self, role: Role) -> BudgetRule | None:
        """The role's budget; None when it is unbounded."""
        return self.rules.get(role, self.default)

    @classmethod
    def parse(cls, raw: Any, where: str = "privacy_budget") -> PrivacyBudgets:
        """Read `{role: {epsilon, period, scope, fallback} | unbounded}` from the network
        file; no entry (or no `privacy_budget` at all) means the default budget."""
        if raw is None:
            return cls({})
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{where} must be a mapping of role to budget")
        rules: dict[Role, BudgetRule | None] = {}
        for name, entry in raw.items():
            try:
                role = Role(name)
            except ValueError:
                known = ", ".join(r.value for r in Role)
                raise PolicyError(f"{where}: {name!r} is not a role ({known})") from None
            rules[role] = None if entry == UNBOUNDED else _rule(entry, f"{where}.{name}")
        return cls(rules)


def _rule(entry: Any, where: str) -> BudgetRule:
    if not isinstance(entry, Mapping):
        raise PolicyError(
            f"{where}: {entry!r} must be a mapping (epsilon, period, scope, fallback) "
            f"or {UNBOUNDED!r}"
        )
    unknown = sorted(set(entry) - {"epsilon", "period", "scope", "fallback"})
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown setting")
    epsilon = entry.get("epsilon")
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or epsilon <= 0:
        raise PolicyError(f"{where}.epsilon: {epsilon!r} must be a number above 0")
    return BudgetRule(
        float(epsilon),
        _choice(Period, entry.get("period", "day"), f"{where}.period"),
        _choice(Scope, entry.get("scope", "biobank"), f"{where}.scope"),
        _choice(Fallback, entry.get("fallback", "threshold_only"), f"{where}.fallback"),
    )


def _choice(kind: type[_E], value: Any, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(str(m.value) for m in kind)
        raise PolicyError(f"{where}: {value!r} is not one of {known}") from None


@dataclass(frozen=True)
class BudgetStatus:
    """What is left of one budget: shown in `me` and in a response's `extensions`."""

    role: str
    scope: str
    period: str
    spent: float
    limit: float
    refills_at: str

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.spent)

    def as_extension(self) -> dict[str, Any]:
        """The entry of `extensions.privacyBudget` for this budget."""
        return {
            "role": self.role,
            "scope": self.scope,
            "period": self.period,
            "spent": round(self.spent, 6),
            "limit": self.limit,
            "remaining": round(self.remaining, 6),
            "refillsAt": self.refills_at,
        }
