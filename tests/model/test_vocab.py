"""A value outside a vocabulary is refused with the codes it could have been."""

from __future__ import annotations

from federation.model import vocab
from federation.search.query import BadQuery, SampleQuery


def test_a_short_vocabulary_is_listed_in_full() -> None:
    sexes = vocab.sexes()
    assert len(sexes.codes) <= vocab.LISTED_IN_FULL
    assert sexes.rejection("F") == (
        "'F' is not in the sex vocabulary; allowed: " + ", ".join(sexes.codes)
    )


def test_a_long_vocabulary_shows_the_closest_codes_and_where_the_rest_are() -> None:
    materials = vocab.material_types()
    assert len(materials.codes) > vocab.LISTED_IN_FULL
    message = materials.rejection("Serum?")
    assert message.startswith("'Serum?' is not in the material_types vocabulary; closest: SERUM")
    assert f"({len(materials.codes)} codes, all in schema/vocab/material_types.csv)" in message
    assert "URINE" not in message
    closest = materials.rejection("BLOOD").split("closest: ")[1].split(" (")[0].split(", ")
    assert 1 <= len(closest) <= vocab.CLOSEST_SHOWN and "WHOLE_BLOOD" in closest


def test_a_value_like_no_code_still_gets_examples() -> None:
    message = vocab.material_types().rejection("zzzz")
    assert "; for example: BUFFY_COAT, CDNA, CELL_LINES, DNA, FECES (21 codes" in message


def test_a_search_filter_outside_the_vocabulary_lists_what_is_allowed() -> None:
    try:
        SampleQuery.parse({"sexes": ["FEMALE", "woman"]})
    except BadQuery as err:
        assert err.argument == "sexes" and err.value == "woman"
        assert "allowed: FEMALE, MALE, NASK, NAV, UNDIFFERENTIAL, UNKNOWN" in str(err)
    else:
        raise AssertionError("an unknown sex was accepted")
