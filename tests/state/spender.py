"""A process that spends from one rate-limit bucket or privacy budget, for the concurrency
tests: `python -m tests.state.spender URL bucket|ledger COUNT TAG`. Prints what it got."""

from __future__ import annotations

import sys
from pathlib import Path

from federation.state import open_state_store
from federation.state.ledger import BudgetKey, Charge, Outcome
from federation.state.rate_buckets import Refill

BUCKET = Refill(burst=150, per_second=1e-9)  # no refill while the test runs
BUCKET_AT = 1_000_000.0
BUDGET = BudgetKey("researcher@example.org", "network", "2026-12-07")
BUDGET_LIMIT = 10.0
EPSILON = 0.125  # exact in binary: 80 releases make exactly 10.0
SHARED_FINGERPRINTS = 20  # released by both processes: paid once


def main(url: str, kind: str, count: int, tag: str) -> None:
    store = open_state_store(url, Path("."), migrate=False)
    got = 0
    for n in range(count):
        if kind == "bucket":
            got += store.rate_buckets.take("ip:192.0.2.7", BUCKET, BUCKET_AT) is None
        else:
            # Odd charges are shared by the two processes, even ones are this process's.
            fingerprint = f"shared-{n % SHARED_FINGERPRINTS}" if n % 2 else f"{tag}-{n}"
            spending = store.ledger.spend(BUDGET, [Charge(fingerprint, EPSILON)], BUDGET_LIMIT)
            got += spending.outcomes[0] is Outcome.SPENT
    store.close()
    print(got)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
