"""Charging an answer's fresh noised figures to the asker's privacy budgets.

Every budget a search charges (one per scope: a biobank, or the network) is charged in one
ledger transaction, and a search whose figures were all released to the asker before in
the period writes nothing: each process remembers the charges the ledger accepted (a
release is never undone within its period) and then only reads what is spent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import defaultdict

from federation.disclosure.budget import BudgetStatus, PrivacyBudgets
from federation.disclosure.ledger import BudgetKey, BudgetLedger, BudgetRequest, Charge, Outcome
from federation.search.asker import Asker
from federation.search.query import BackendAnswer


class ReleaseMemory:
    """The charges this process has seen the ledger accept, per budget (thread-safe)."""

    def __init__(self) -> None:
        self._released: dict[BudgetKey, set[str]] = {}
        self._lock = threading.Lock()

    def knows(self, key: BudgetKey, charges: list[Charge]) -> bool:
        """Whether every charge was accepted for this budget before (a repeat)."""
        with self._lock:
            known = self._released.get(key)
            return known is not None and all(c.fingerprint in known for c in charges)

    def accepted(self, key: BudgetKey, fingerprints: set[str]) -> None:
        """Remember charges the ledger accepted (spent or repeated)."""
        with self._lock:
            if key not in self._released:
                # Periods only move forward: forget the budgets of earlier ones.
                for old in [k for k in self._released if k.period < key.period]:
                    del self._released[old]
            self._released.setdefault(key, set()).update(fingerprints)


def spend(
    answer: BackendAnswer,
    asker: Asker,
    ledger: BudgetLedger,
    budgets: PrivacyBudgets,
    memory: ReleaseMemory,
) -> tuple[Asker, tuple[BudgetStatus, ...]]:
    """Charge the fresh noised figures of an answer to the asker's budgets, all scopes in
    one ledger transaction; the asker then knows which figures fall back."""
    identity = asker.identity
    cells = [(bb, cell) for bb, cell in answer.by_biobank.items()]
    cells += [(bb, cell) for bb, split in answer.segments.items() for cell in split.values()]
    cells += [(cell.biobank_id, cell.cell) for cell in answer.facets]
    wanted: dict[tuple[str, str, str], list[Charge]] = defaultdict(list)
    limits: dict[tuple[str, str, str], tuple[float, str, str]] = {}
    fallbacks: dict[str, tuple[str, str]] = {}
    now = dt.datetime.now(dt.UTC)
    # Per biobank, once: the budget its figures are charged to (None: not charged), and
    # each figure's epsilon. An answer has hundreds of cells and a handful of biobanks.
    charged: dict[str, tuple[tuple[str, str, str], float, int] | None] = {}
    for biobank_id, cell in cells:
        if biobank_id not in charged:
            charged[biobank_id] = _budget_of(asker, biobank_id, budgets, now, limits, fallbacks)
        target = charged[biobank_id]
        if target is None:
            continue
        key, epsilon, min_count = target
        if cell.donors >= min_count:  # below k (or zero): withheld, no noise to pay for
            donors, samples = asker.keys(biobank_id, cell, asker.rule(biobank_id))
            wanted[key] += [Charge(donors.charge, epsilon), Charge(samples.charge, epsilon)]
    subject = f"{identity.via}:{identity.subject}"
    requests: list[BudgetRequest] = []
    wanted = {key: charges for key, charges in wanted.items() if charges}
    for key, charges in wanted.items():
        requests.append((BudgetKey(subject, key[1], key[2]), charges, limits[key][0]))
    spent, refused = _charge(ledger, requests, memory)
    statuses = [
        BudgetStatus(
            limits[key][2], key[1], key[2], spent[request[0]], limits[key][0], limits[key][1]
        )
        for key, request in zip(wanted, requests, strict=True)
    ]
    asker = dataclasses.replace(asker, refused=frozenset(refused), fallbacks=fallbacks)
    return asker, tuple(sorted(statuses, key=lambda s: s.scope))


def _budget_of(
    asker: Asker,
    biobank_id: str,
    budgets: PrivacyBudgets,
    now: dt.datetime,
    limits: dict[tuple[str, str, str], tuple[float, str, str]],
    fallbacks: dict[str, tuple[str, str]],
) -> tuple[tuple[str, str, str], float, int] | None:
    """The budget (role, scope, period) a biobank's fresh figures are charged to, their
    epsilon and the least count that is released with noise (`Asker.charges`, once per
    biobank); None when they cost nothing (no noise, or an unbounded role). Notes the
    budget's limit and the biobank's fallback."""
    rule = asker.rule(biobank_id)
    role = asker.identity.role_for(biobank_id)
    budget = budgets.rule(role)
    if budget is None or not asker.noised(biobank_id):
        return None
    period, refill_at = budget.period.window(now)
    key = (role.value, budget.scope_of(biobank_id), period)
    refills = refill_at.isoformat(timespec="seconds")
    limits[key] = (budget.epsilon, refills, role.value)
    fallbacks[biobank_id] = (budget.fallback.value, refills)
    return key, 1.0 / rule.noise, rule.min_count


def _charge(
    ledger: BudgetLedger, requests: list[BudgetRequest], memory: ReleaseMemory
) -> tuple[dict[BudgetKey, float], set[str]]:
    """Epsilon spent per budget after charging, and the charge ids the budgets refused."""
    fresh = [r for r in requests if not memory.knows(r[0], list(r[1]))]
    spent: dict[BudgetKey, float] = {}
    refused: set[str] = set()
    for (key, charges, _), spending in zip(fresh, ledger.spend_all(fresh), strict=True):
        accepted = set()
        for charge, outcome in zip(charges, spending.outcomes, strict=True):
            if outcome is Outcome.REFUSED:
                refused.add(charge.fingerprint)
            else:
                accepted.add(charge.fingerprint)
        memory.accepted(key, accepted)
        spent[key] = spending.spent
    # Repeats: nothing new to write, only what is spent to read (one read per period).
    repeats = [key for key, _, _ in requests if key not in spent]
    for period in sorted({key.period for key in repeats}):
        by_scope = ledger.budgets(repeats[0].subject, period)
        for key in repeats:
            if key.period == period:
                spent[key] = by_scope.get(key.scope, 0.0)
    return spent, refused
