"""The privacy ledger: what each subject has spent of each privacy budget.

A budget is keyed by subject, scope (a biobank id, or the network) and period (a day, say
"2026-12-07"); the release policy (docs/privacy.md) decides the keys, the epsilon of each
release and the limit. Each release is charged by the fingerprint of the row set it
counts, so releasing the same set again in the period is free. Charges are made in one
transaction with the budget row locked (SELECT ... FOR UPDATE on PostgreSQL, BEGIN
IMMEDIATE on SQLite), so two gateways on one database can never together spend more than
the limit, and a restart refills nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, delete, func, insert, select, update

from federation.disclosure.ledger import BudgetKey, Charge, Outcome, Spending
from federation.state.database import reading, upsert, writing
from federation.state.schema import privacy_budgets, privacy_releases
from federation.state.sync_records import now

__all__ = ["BudgetKey", "Charge", "Outcome", "PrivacyLedger", "Spending"]

# Epsilons are sums of fractions (1/noise): a budget spent to its limit exactly must not be
# refused for a rounding error in the last bit.
LIMIT_TOLERANCE = 1e-9


class PrivacyLedger:
    """Privacy budgets and the releases charged to them (a `BudgetLedger`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def spend(self, key: BudgetKey, charges: Sequence[Charge], limit: float) -> Spending:
        """Charge releases in order against a budget of `limit` epsilon."""
        stamp = now()
        where = (
            privacy_budgets.c.subject == key.subject,
            privacy_budgets.c.scope == key.scope,
            privacy_budgets.c.period == key.period,
        )
        with writing(self.engine) as db:
            db.execute(
                upsert(db, privacy_budgets)
                .values(
                    subject=key.subject,
                    scope=key.scope,
                    period=key.period,
                    spent=0.0,
                    updated_at=stamp,
                )
                .on_conflict_do_nothing(index_elements=["subject", "scope", "period"])
            )
            spent = float(
                db.execute(
                    select(privacy_budgets.c.spent).where(*where).with_for_update()
                ).scalar_one()
            )
            wanted = {c.fingerprint for c in charges}
            released = set(
                db.execute(
                    select(privacy_releases.c.fingerprint).where(
                        privacy_releases.c.subject == key.subject,
                        privacy_releases.c.scope == key.scope,
                        privacy_releases.c.period == key.period,
                        privacy_releases.c.fingerprint.in_(wanted),
                    )
                ).scalars()
            )
            outcomes = []
            new_rows = []
            for charge in charges:
                if charge.fingerprint in released:
                    outcomes.append(Outcome.REPEAT)
                elif spent + charge.epsilon > limit + LIMIT_TOLERANCE:
                    outcomes.append(Outcome.REFUSED)
                else:
                    spent += charge.epsilon
                    released.add(charge.fingerprint)
                    outcomes.append(Outcome.SPENT)
                    new_rows.append(
                        {
                            "subject": key.subject,
                            "scope": key.scope,
                            "period": key.period,
                            "fingerprint": charge.fingerprint,
                            "epsilon": charge.epsilon,
                            "released_at": stamp,
                        }
                    )
            if new_rows:
                db.execute(insert(privacy_releases), new_rows)
                db.execute(
                    update(privacy_budgets).where(*where).values(spent=spent, updated_at=stamp)
                )
        return Spending(tuple(outcomes), spent)

    def spent(self, key: BudgetKey) -> float:
        """Epsilon spent from a budget so far (0 for one never used)."""
        query = select(privacy_budgets.c.spent).where(
            privacy_budgets.c.subject == key.subject,
            privacy_budgets.c.scope == key.scope,
            privacy_budgets.c.period == key.period,
        )
        with reading(self.engine) as db:
            value = db.execute(query).scalar_one_or_none()
        return 0.0 if value is None else float(value)

    def budgets(self, subject: str, period: str) -> dict[str, float]:
        """Epsilon spent per scope by a subject in a period."""
        query = select(privacy_budgets.c.scope, privacy_budgets.c.spent).where(
            privacy_budgets.c.subject == subject, privacy_budgets.c.period == period
        )
        with reading(self.engine) as db:
            return {str(scope): float(spent) for scope, spent in db.execute(query)}

    def releases(self, key: BudgetKey) -> int:
        """How many distinct row sets were charged to a budget."""
        query = select(func.count()).where(
            privacy_releases.c.subject == key.subject,
            privacy_releases.c.scope == key.scope,
            privacy_releases.c.period == key.period,
        )
        with reading(self.engine) as db:
            return int(db.execute(query).scalar_one())

    def forget_before(self, period: str) -> int:
        """Drop budgets and releases of periods sorting before `period`; how many budgets."""
        with writing(self.engine) as db:
            db.execute(delete(privacy_releases).where(privacy_releases.c.period < period))
            result = db.execute(delete(privacy_budgets).where(privacy_budgets.c.period < period))
        return int(result.rowcount)
