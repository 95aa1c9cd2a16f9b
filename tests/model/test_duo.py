import datetime as dt

import pytest

from federation.model import duo


def test_shorthand_and_duo_ids_read_the_same() -> None:
    by_shorthand = duo.parse("DS(C50);NCU;GS(JP,KR);TS(2030-12-31)")
    by_id = duo.parse("DUO:0000007(C50);DUO:0000046;DUO:0000022(jp,kr);DUO_0000025(2030-12-31)")
    assert by_shorthand == by_id
    assert by_shorthand.permission == duo.DuoTerm("DS", diseases=("C50",))
    assert by_shorthand.modifier("GS") == duo.DuoTerm("GS", countries=("JP", "KR"))
    assert by_shorthand.modifier("TS") == duo.DuoTerm("TS", date=dt.date(2030, 12, 31))
    assert duo.parse(by_shorthand.to_text()) == by_shorthand


def test_disease_parameters_are_normalised_icd10() -> None:
    assert duo.parse("DS(C509,ICD10:E11)").permission.diseases == ("C50.9", "E11")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NCU", "exactly one DUO permission, found none"),
        ("GRU;HMB", "found GRU, HMB"),
        ("DS", "DS needs at least one ICD-10 disease"),
        ("DS(C50.99)", "'C50.99' is not a WHO ICD-10 code"),
        ("GS(Japan)", "GS needs ISO 3166 country codes"),
        ("TS(next year)", "'next year' is not a date"),
        ("GRU(C50)", "GRU takes no parameters"),
        ("FOO", "'FOO' is not a DUO permission or modifier"),
        ("GRU;NCU;NCU", "modifier repeated: NCU"),
        ("", "empty consent"),
    ],
)
def test_unreadable_consent_names_the_term(text: str, message: str) -> None:
    with pytest.raises(duo.InvalidConsent, match=message.replace("(", r"\(").replace(")", r"\)")):
        duo.parse(text)


def test_every_duo_term_of_the_reference_table_is_known() -> None:
    shorthands = set(duo.definitions())
    assert {"NRES", "GRU", "HMB", "DS", "POA"} <= shorthands
    assert {
        "NPU",
        "NCU",
        "NPUNCU",
        "IRB",
        "GS",
        "PUB",
        "COL",
        "RTN",
        "TS",
        "MOR",
        "US",
        "PS",
        "IS",
        "NMDS",
        "GSO",
        "NPOA",
        "RS",
        "CC",
    } <= shorthands
