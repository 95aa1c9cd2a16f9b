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


@dataclass(frozen=True)
class PrivacyBudgets:
    """Budgets per role; a role without one spends nothing (it gets no noise, or the
    network has chosen not to bound it)."""

    rules: Mapping[Role, BudgetRule]

    def rule(self, role: Role) -> BudgetRule | None:
        return self.rules.get(role)

    @classmethod
    def parse(cls, raw: Any, where: str = "privacy_budget") -> PrivacyBudgets:
        """Read `{role: {epsilon, period, scope, fallback}}` from the network file."""
        if raw is None:
            return cls({})
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{where} must be a mapping of role to budget")
        rules = {}
        for name, entry in raw.items():
            try:
                role = Role(name)
            except ValueError:
                known = ", ".join(r.value for r in Role)
                raise PolicyError(f"{where}: {name!r} is not a role ({known})") from None
            rules[role] = _rule(entry, f"{where}.{name}")
        return cls(rules)


def _rule(entry: Any, where: str) -> BudgetRule:
    if not isinstance(entry, Mapping):
        raise PolicyError(f"{where} must be a mapping")
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
