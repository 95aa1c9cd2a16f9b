"""The process memory of accepted charges (`search.spending`) over the shared ledger, on
each engine: a second process (its own store connection and memory) sees what the first
released, a new period charges again, and no fallback is decided from the memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from federation.disclosure.ledger import BudgetKey
from federation.search.spending import ReleaseMemory, charge
from federation.state import StateStore, open_state_store

SUBJECT = "api_key:researcher"
LIMIT = 4.0
EPSILON = 1.0


@pytest.fixture
def second(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateStore]:
    """The same store opened again, as another gateway process opens it."""
    opened = open_state_store(store_url, tmp_path_factory.mktemp("b"), migrate=False)
    yield opened
    opened.close()


def _ask(
    store: StateStore, memory: ReleaseMemory, key: BudgetKey, *ids: str
) -> tuple[float, set[str]]:
    spent, refused = charge(store.ledger, [(key, dict.fromkeys(ids, EPSILON), LIMIT)], memory)
    return spent[key], refused


def test_a_set_released_by_one_process_is_free_and_consistent_in_another(
    store: StateStore, second: StateStore
) -> None:
    key = BudgetKey(SUBJECT, "bb-1", "2026-12-07")
    a, b = ReleaseMemory(), ReleaseMemory()
    assert _ask(store, a, key, "f1", "f2") == (2.0, set())
    # Process B never saw f1 and f2: the ledger tells it they are repeats (free).
    assert _ask(second, b, key, "f1", "f2") == (2.0, set())
    # A spends more; B's repeat (from its memory, no write) shows what is spent now.
    assert _ask(store, a, key, "f3") == (3.0, set())
    assert b.knows(key, dict.fromkeys(["f1", "f2"], EPSILON))
    assert _ask(second, b, key, "f1", "f2") == (3.0, set())
    assert store.ledger.releases(key) == 3


def test_a_new_period_charges_again(store: StateStore) -> None:
    memory = ReleaseMemory()
    today = BudgetKey(SUBJECT, "bb-1", "2026-12-07")
    tomorrow = BudgetKey(SUBJECT, "bb-1", "2026-12-08")
    assert _ask(store, memory, today, "f1") == (1.0, set())
    assert _ask(store, memory, tomorrow, "f1") == (1.0, set())
    assert store.ledger.releases(tomorrow) == 1
    # The memory of the earlier period is dropped: periods only move forward.
    assert not memory.knows(today, {"f1": EPSILON})
    assert memory.knows(tomorrow, {"f1": EPSILON})


def test_a_fallback_is_decided_by_the_ledger_never_by_the_memory(
    store: StateStore, second: StateStore
) -> None:
    key = BudgetKey(SUBJECT, "bb-1", "2026-12-07")
    a, b = ReleaseMemory(), ReleaseMemory()
    assert _ask(store, a, key, "f1") == (1.0, set())
    # B spends the rest of the budget: A's memory does not know.
    assert _ask(second, b, key, "g1", "g2", "g3") == (4.0, set())
    # A's next search has a new figure: the ledger refuses it and only it (f1 is a repeat).
    assert _ask(store, a, key, "f1", "f9") == (4.0, {"f9"})
    # A set B released is free for A too, budget spent or not: the ledger says so.
    assert _ask(store, a, key, "g2") == (4.0, set())
    # Refused charges are not remembered as released: asked again, refused again.
    assert not a.knows(key, {"f9": EPSILON})
    assert _ask(store, a, key, "f9") == (4.0, {"f9"})
