import pytest

from federation.model import icd10


@pytest.mark.parametrize(
    ("spelling", "code"),
    [
        ("C50.9", "C50.9"),
        ("C509", "C50.9"),
        ("c50.9", "C50.9"),
        (" C50.9 ", "C50.9"),
        ("ICD10:C50.9", "C50.9"),
        ("ICD-10:C50.9", "C50.9"),
        ("icd10cm:C50.9", "C50.9"),
        ("urn:miriam:icd:C50.9", "C50.9"),
        ("http://hl7.org/fhir/sid/icd-10|C50.9", "C50.9"),
        ("http://hl7.org/fhir/sid/icd-10-gm|C50.9", "C50.9"),
        ("A17.0\u2020", "A17.0"),  # dagger of an etiology/manifestation pair
        ("G01*", "G01"),
        ("C50.-", "C50"),
        ("Ｃ５０．９", "C50.9"),  # full-width, as typed on Japanese keyboards
        ("C50", "C50"),
        ("C50-C50", "C50-C50"),
        ("II", "II"),
    ],
)
def test_spellings_in_the_wild_normalise_to_the_who_code(spelling: str, code: str) -> None:
    assert icd10.normalise(spelling) == code


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("C50.99", "WHO ICD-10 has C50.9"),  # ICD-10-GM style extra digit
        ("F3181", "WHO ICD-10 has F31.8"),
        ("E11.90", "WHO ICD-10 has E11.9"),
        ("X99.99", "WHO ICD-10 has X99"),
        ("Z99.99", "WHO ICD-10 has Z99.9"),
        ("U99", "no such category"),
        ("breast", "not shaped like"),
        ("", "empty"),
        ("C00-C99", ""),
    ],
)
def test_codes_outside_who_icd10_are_rejected_naming_the_value(value: str, hint: str) -> None:
    with pytest.raises(icd10.UnknownCode) as err:
        icd10.normalise(value)
    assert repr(value) in str(err.value)
    assert hint in str(err.value)


def test_every_code_carries_chapter_block_and_category() -> None:
    assert icd10.with_ancestors("C50.9") == ("C50.9", "C50", "C50-C50", "C00-C75", "C00-C97", "II")
    assert icd10.chapter("C50.9") == "II"
    assert icd10.block("C50.9") == "C50-C50"
    assert icd10.block("K35.2") == "K35-K38"
    assert icd10.is_within("C50.9", "II")
    assert icd10.is_within("C50.9", "C50")
    assert not icd10.is_within("C50.9", "C51")
    assert icd10.kind("II") == "chapter"
    assert icd10.kind("C50-C50") == "block"
    assert icd10.kind("C50") == "category"
    assert icd10.kind("C50.9") == "subcategory"


def test_the_whole_who_2019_classification_is_there() -> None:
    assert len(icd10.all_codes()) == 12542
    assert len(icd10.chapters()) == 22
