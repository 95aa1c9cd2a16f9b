"""The privacy ledger: what each subject has spent of each budget, and which row sets it
was charged for.

Its interface and tables follow the state store's ledger (branch `state`,
`federation/state/ledger.py`: `BudgetKey`, `Charge`, `Outcome`, `Spending`, tables
`privacy_budgets` and `privacy_releases` with the same columns), so the state store can take
it over: until then it is a SQLite file in the data folder. Every spend is one
transaction under BEGIN IMMEDIATE, so gunicorn workers on one host agree on what is left
and can never together spend more than the limit; a restart refills nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.sqlite_wal import use_wal

LEDGER_FILE = "privacy.db"

_TABLES = """
CREATE TABLE IF NOT EXISTS privacy_budgets (
  subject TEXT NOT NULL,
  scope TEXT NOT NULL,
  period TEXT NOT NULL,
  spent REAL NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (subject, scope, period)
);
CREATE TABLE IF NOT EXISTS privacy_releases (
  subject TEXT NOT NULL,
  scope TEXT NOT NULL,
  period TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  epsilon REAL NOT NULL,
  released_at TEXT NOT NULL,
  PRIMARY KEY (subject, scope, period, fingerprint)
);
"""


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


class PrivacyLedger:
    """Privacy budgets and the releases charged to them, in a SQLite file (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()
        # One connection per thread, kept: opening one per search cost more than the
        # search's ledger work (1.6 ms each, measured under load).
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
        return db

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Created private: who searched for what is personal data of the researcher.
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")  # a spend acknowledged must survive a crash
        if not self._ready:
            use_wal(db)
            db.executescript(_TABLES)
            self._ready = True
        return db

    def spend(self, key: BudgetKey, charges: Sequence[Charge], limit: float) -> Spending:
        """Charge releases in order against a budget of `limit` epsilon."""
        stamp = dt.datetime.now(dt.UTC).isoformat()
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            where = (key.subject, key.scope, key.period)
            row = db.execute(
                "SELECT spent FROM privacy_budgets WHERE subject = ? AND scope = ? AND period = ?",
                where,
            ).fetchone()
            spent = 0.0 if row is None else float(row[0])
            released = {
                str(r[0])
                for r in db.execute(
                    "SELECT fingerprint FROM privacy_releases "
                    "WHERE subject = ? AND scope = ? AND period = ?",
                    where,
                )
            }
            outcomes, new_rows = [], []
            for charge in charges:
                if charge.fingerprint in released:
                    outcomes.append(Outcome.REPEAT)
                elif spent + charge.epsilon > limit + 1e-9:
                    outcomes.append(Outcome.REFUSED)
                else:
                    spent += charge.epsilon
                    released.add(charge.fingerprint)
                    outcomes.append(Outcome.SPENT)
                    new_rows.append((*where, charge.fingerprint, charge.epsilon, stamp))
            if new_rows:
                db.executemany("INSERT INTO privacy_releases VALUES (?, ?, ?, ?, ?, ?)", new_rows)
                db.execute(
                    "INSERT INTO privacy_budgets VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (subject, scope, period) DO UPDATE SET "
                    "spent = excluded.spent, updated_at = excluded.updated_at",
                    (*where, spent, stamp),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return Spending(tuple(outcomes), spent)

    def spent(self, key: BudgetKey) -> float:
        """Epsilon spent from a budget so far (0 for one never used)."""
        row = (
            self._connect()
            .execute(
                "SELECT spent FROM privacy_budgets WHERE subject = ? AND scope = ? AND period = ?",
                (key.subject, key.scope, key.period),
            )
            .fetchone()
        )
        return 0.0 if row is None else float(row[0])

    def budgets(self, subject: str, period: str) -> dict[str, float]:
        """Epsilon spent per scope by a subject in a period."""
        rows = (
            self._connect()
            .execute(
                "SELECT scope, spent FROM privacy_budgets WHERE subject = ? AND period = ?",
                (subject, period),
            )
            .fetchall()
        )
        return {str(scope): float(spent) for scope, spent in rows}
