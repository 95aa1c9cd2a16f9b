"""The privacy ledger's vocabulary: whose budget, what a release costs, what was decided.

The release policy (docs/privacy.md) decides the keys, the epsilon of each release and the
limit; the ledger that keeps the spending lives in the state store
(`federation/state/ledger.py`), shared by every gateway process and host, and the service
layer wires it in (this room sits below the store and cannot import it).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BudgetKey:
    """Whose budget, for what scope (a biobank id or the network), in which period."""

    subject: str
    scope: str
    period: str


@dataclass(frozen=True)
class Charge:
    """One release to pay for: the fingerprint of the rows it counts, and its epsilon."""

    fingerprint: str
    epsilon: float


class Outcome(enum.Enum):
    """What the ledger decided for one charge."""

    SPENT = "spent"  # a new release, paid from the budget
    REPEAT = "repeat"  # released to this subject before in this period: free
    REFUSED = "refused"  # the budget cannot pay for it


@dataclass(frozen=True)
class Spending:
    """The outcome of each charge, in order, and the budget spent afterwards."""

    outcomes: tuple[Outcome, ...]
    spent: float


# One budget to charge: the budget, its charges in order, its limit in epsilon.
BudgetRequest = tuple[BudgetKey, Sequence[Charge], float]


class BudgetLedger(Protocol):
    """Where privacy budgets are spent: one transaction per spend, shared by every process."""

    def spend(self, key: BudgetKey, charges: Sequence[Charge], limit: float) -> Spending:
        """Charge releases in order against a budget of `limit` epsilon."""

    def spend_all(self, requests: Sequence[BudgetRequest]) -> list[Spending]:
        """Charge several budgets in one transaction; one Spending per request, in order."""

    def spent(self, key: BudgetKey) -> float:
        """Epsilon spent from a budget so far (0 for one never used)."""

    def budgets(self, subject: str, period: str) -> dict[str, float]:
        """Epsilon spent per scope by a subject in a period."""
