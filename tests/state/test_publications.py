"""The publication counters and warm answers of the state store, on SQLite and PostgreSQL."""

from __future__ import annotations

from federation.state import StateStore


def test_each_publish_counts_once_per_scope(store: StateStore) -> None:
    publications = store.publications
    assert publications.serial("engine:a") == 0
    assert [publications.bump("engine:a") for _ in range(3)] == [1, 2, 3]
    assert publications.serial("engine:a") == 3
    assert publications.serial("embedded:/data/index") == 0  # scopes count apart
    assert publications.bump("embedded:/data/index") == 1


def test_warm_answers_are_kept_for_the_current_publication_only(store: StateStore) -> None:
    publications = store.publications
    first = publications.bump("s")
    assert publications.keep_answers("s", first, {"landing": '{"n":1}'})
    assert publications.answers("s", first) == {"landing": '{"n":1}'}
    second = publications.bump("s")
    # Computed at the first publication but stored after the second: not kept.
    assert not publications.keep_answers("s", first, {"landing": '{"n":1}'})
    assert publications.answers("s", second) == {}
    assert publications.keep_answers("s", second, {"landing": '{"n":2}'})
    assert publications.keep_answers("s", second, {"landing": '{"n":3}'})  # computed again
    assert publications.answers("s", second) == {"landing": '{"n":3}'}
    assert publications.answers("s", first) == {}  # an earlier publication's are dropped
    assert publications.answers("other", second) == {}
