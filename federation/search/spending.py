"""Charging an answer's fresh noised figures to the asker's privacy budgets.

Every budget a search charges (one per scope: a biobank, or the network) is charged in one
ledger transaction, and a search whose figures were all released to the asker before in
the period writes nothing: each process remembers the charges the ledger accepted (a
release is never undone within its period, so "released before" can only become true,
never false again) and then only reads what is spent, for the display.

Only the ledger's transaction decides what is spent or refused: the memory only lets a
search skip the transaction when every charge is one the ledger already accepted for that
budget and period, which no other process can take back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import threading
from collections.abc import Iterator

from federation.disclosure.budget import BudgetStatus, PrivacyBudgets
from federation.disclosure.ledger import BudgetKey, BudgetLedger, BudgetRequest, Charge, Outcome
from federation.search.asker import Asker
from federation.search.query import BackendAnswer, Cell

# The ledger's (role, scope, period) of a budget, before the subject is added.
BudgetSlot = tuple[str, str, str]


class ReleaseMemory:
    """The charges this process has seen the ledger accept, per budget (thread-safe)."""

    def __init__(self) -> None:
        self._released: dict[BudgetKey, set[str]] = {}
        self._lock = threading.Lock()

    def knows(self, key: BudgetKey, fingerprints: dict[str, float]) -> bool:
        """Whether every charge id was accepted for this budget before (a repeat)."""
        with self._lock:
            known = self._released.get(key)
            return known is not None and known.issuperset(fingerprints)

    def accepted(self, key: BudgetKey, fingerprints: set[str]) -> None:
        """Remember charges the ledger accepted (spent or repeated)."""
        with self._lock:
            if key not in self._released:
                # Periods only move forward: forget the budgets of earlier ones.
                for old in [k for k in self._released if k.period < key.period]:
                    del self._released[old]
            self._released.setdefault(key, set()).update(fingerprints)


def _cells(answer: BackendAnswer) -> Iterator[tuple[str, Cell]]:
    """Every cell of an answer with its biobank: rows, consent splits, facet buckets."""
    yield from answer.by_biobank.items()
    for biobank_id, split in answer.segments.items():
        for cell in split.values():
            yield biobank_id, cell
    for facet in answer.facets:
        yield facet.biobank_id, facet.cell


@dataclasses.dataclass
class _Budget:
    """One budget a search charges: its limit, when it refills, for which role, and its
    charge ids in the order first met with their epsilon (a cell that comes back as a row,
    a facet bucket and a consent split is one release)."""

    limit: float
    refills: str
    role: str
    charges: dict[str, float] = dataclasses.field(default_factory=dict)


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
    slots: dict[BudgetSlot, _Budget] = {}
    fallbacks: dict[str, tuple[str, str]] = {}
    now = dt.datetime.now(dt.UTC)
    # Per biobank, once: the charges of the budget its figures go to (None: not charged),
    # and each figure's epsilon. An answer has hundreds of cells and a handful of biobanks.
    charged: dict[str, tuple[dict[str, float], float, int] | None] = {}
    for biobank_id, cell in _cells(answer):
        if biobank_id not in charged:
            charged[biobank_id] = _budget_of(asker, biobank_id, budgets, now, slots, fallbacks)
        target = charged[biobank_id]
        if target is None:
            continue
        charges, epsilon, min_count = target
        if cell.donors >= min_count:  # below k (or zero): withheld, no noise to pay for
            donors, samples = asker.keys(biobank_id, cell, asker.rule(biobank_id))
            charges.setdefault(donors.charge, epsilon)
            charges.setdefault(samples.charge, epsilon)
    subject = f"{identity.via}:{identity.subject}"
    used = [(slot, budget) for slot, budget in slots.items() if budget.charges]
    asked = [
        (BudgetKey(subject, slot[1], slot[2]), budget.charges, budget.limit)
        for slot, budget in used
    ]
    spent, refused = charge(ledger, asked, memory)
    statuses = [
        BudgetStatus(budget.role, slot[1], slot[2], spent[key], budget.limit, budget.refills)
        for (slot, budget), (key, _, _) in zip(used, asked, strict=True)
    ]
    asker = dataclasses.replace(asker, refused=frozenset(refused), fallbacks=fallbacks)
    return asker, tuple(sorted(statuses, key=lambda s: s.scope))


def _budget_of(
    asker: Asker,
    biobank_id: str,
    budgets: PrivacyBudgets,
    now: dt.datetime,
    slots: dict[BudgetSlot, _Budget],
    fallbacks: dict[str, tuple[str, str]],
) -> tuple[dict[str, float], float, int] | None:
    """The charges of the budget (role, scope, period) a biobank's fresh figures go to,
    their epsilon and the least count that is released with noise (`Asker.charges`, once
    per biobank); None when they cost nothing (no noise, or an unbounded role). Notes the
    budget and the biobank's fallback."""
    rule = asker.rule(biobank_id)
    role = asker.identity.role_for(biobank_id)
    budget = budgets.rule(role)
    if budget is None or not asker.noised(biobank_id):
        return None
    period, refill_at = budget.period.window(now)
    slot = (role.value, budget.scope_of(biobank_id), period)
    refills = refill_at.isoformat(timespec="seconds")
    if slot not in slots:
        slots[slot] = _Budget(budget.epsilon, refills, role.value)
    fallbacks[biobank_id] = (budget.fallback.value, refills)
    return slots[slot].charges, 1.0 / rule.noise, rule.min_count


def charge(
    ledger: BudgetLedger,
    wanted: list[tuple[BudgetKey, dict[str, float], float]],
    memory: ReleaseMemory,
) -> tuple[dict[BudgetKey, float], set[str]]:
    """Charge each budget's charge ids (id: epsilon, in order) up to its limit: epsilon
    spent per budget afterwards, and the charge ids the budgets refused."""
    # Charges are built only for budgets with something new: a repeat needs none.
    fresh: list[BudgetRequest] = [
        (key, [Charge(f, epsilon) for f, epsilon in charges.items()], limit)
        for key, charges, limit in wanted
        if not memory.knows(key, charges)
    ]
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
    # Repeats: nothing new to write; what is spent is read for the display only (one read
    # per period), never to decide: a repeat is free whatever the budget holds.
    repeats = [key for key, _, _ in wanted if key not in spent]
    for period, keys in itertools.groupby(sorted(repeats, key=lambda k: k.period), _period):
        scopes = list(keys)
        by_scope = ledger.budgets(scopes[0].subject, period)
        for key in scopes:
            spent[key] = by_scope.get(key.scope, 0.0)
    return spent, refused


def _period(key: BudgetKey) -> str:
    return key.period
