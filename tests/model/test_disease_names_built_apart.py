"""The default disease name index is built by a child process (so the garbage of reading
the Japanese names' JSON stays there) and is the same index as one built in-process."""

from __future__ import annotations

import logging
import sys

import pytest

from federation.model import disease_names
from federation.model.disease_names import built_names, default_names


def test_the_index_built_apart_is_the_index_built_here() -> None:
    here = built_names()
    apart = default_names()
    assert apart is not here
    assert apart.state() == here.state()
    # The haystack searched for every query: the same entries in the same order.
    assert apart.searchable().entries == here.searchable().entries
    assert apart.searchable().text == here.searchable().text
    assert list(apart.searchable().starts) == list(here.searchable().starts)
    for query in ("breast cancer", "乳がん", "にゅうがん", "C50", "diabetes type 2", "心筋梗塞"):
        assert apart.find(query) == here.find(query), query
        assert apart.codes_for_text(query) == here.codes_for_text(query), query


def test_a_child_that_cannot_start_leaves_the_index_built_here(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    monkeypatch.setattr(disease_names, "_default", None)
    with caplog.at_level(logging.WARNING, logger=disease_names.__name__):
        names = default_names()
    assert "no child process built it" in caplog.text
    assert names.state() == built_names().state()
    assert names.find("乳がん")[0].code == "C50"
