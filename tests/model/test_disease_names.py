"""Free-text disease search: the names index and its memory of recent texts."""

from __future__ import annotations

from federation.model import icd10
from federation.model.disease_names import TEXT_CACHE_SIZE, DiseaseNames


def test_free_text_finds_codes_by_every_word_and_remembers_the_answer() -> None:
    names = DiseaseNames()
    codes = names.codes_for_text("breast neoplasm")
    assert "C50" in codes and "C61" not in codes
    # C50.9 is searched through C50: every indexed code carries its ancestors.
    assert any(icd10.is_within("C50.9", code) for code in codes)
    assert names.codes_for_text("breast neoplasm") is codes  # the remembered answer


def test_new_names_clear_the_remembered_answers() -> None:
    names = DiseaseNames()
    assert names.codes_for_text("nyuugan") == ()
    names.register_names("ja", {"C50": ["nyuugan"]})
    assert names.codes_for_text("nyuugan") == ("C50",)


def test_the_memory_is_bounded() -> None:
    names = DiseaseNames()
    first = names.codes_for_text("breast")
    assert first
    for n in range(TEXT_CACHE_SIZE):
        names.codes_for_text(f"no such word {n}")
    # The oldest text was dropped: asking again scans afresh (a new tuple, equal value).
    again = names.codes_for_text("breast")
    assert again == first and again is not first
