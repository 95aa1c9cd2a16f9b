"""Consent x purpose, table-driven: every DUO permission and modifier, with the DUOS cases.

Each case is evaluated twice: by the rule evaluator in Python, and by the embedded
backend's compiled SQL over a real synced index (test_consent_in_the_backend below), so
the table pins both.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from federation.consent import (
    CONDITIONAL,
    NOT_PERMITTED,
    PERMITTED,
    PurposeKind,
    ResearchPurpose,
    compile_purpose,
)
from federation.model import duo
from federation.model.query_errors import BadQuery
from federation.search.documents import consent_columns

TODAY = dt.date(2026, 11, 26)
P, C, N = PERMITTED, CONDITIONAL, NOT_PERMITTED


def purpose(kind: str, *diseases: str, **facts: Any) -> ResearchPurpose:
    return ResearchPurpose.parse({"kind": kind, "diseases": list(diseases), **facts}, today=TODAY)


# (id, consent, purpose, outcome, denial or obligation codes)
CASES: list[tuple[str, str | None, ResearchPurpose, str, set[str]]] = [
    # --- permissions -------------------------------------------------------------------
    ("NRES-any", "NRES", purpose("general"), P, set()),
    ("NRES-ancestry", "NRES", purpose("ancestry"), P, set()),
    ("NRES-clinical-care", "NRES", purpose("clinical_care"), P, set()),
    ("DUOS-GRU-disease", "GRU", purpose("disease", "C50.9"), P, set()),
    ("DUOS-GRU-ancestry", "GRU", purpose("ancestry"), P, set()),
    ("GRU-methods", "GRU", purpose("methods"), P, set()),
    ("GRU-general", "GRU", purpose("general"), P, set()),
    ("GRU-clinical-care", "GRU", purpose("clinical_care"), N, {"PERMISSION"}),
    ("GRU-CC-clinical-care", "GRU;CC", purpose("clinical_care"), P, set()),
    ("HMB-CC-clinical-care", "HMB;CC", purpose("clinical_care"), P, set()),
    ("DS-CC-clinical-care", "DS(C50);CC", purpose("clinical_care"), P, set()),
    # CC extends only GRU, HMB and DS (docs/consent.md): ancestry-only consent stays so.
    ("POA-CC-clinical-care", "POA;CC", purpose("clinical_care"), N, {"PERMISSION"}),
    ("DUOS-HMB-health", "HMB", purpose("health"), P, set()),
    ("HMB-disease", "HMB", purpose("disease", "E11"), P, set()),
    ("DUOS-HMB-ancestry", "HMB", purpose("ancestry"), N, {"PERMISSION"}),
    ("HMB-general", "HMB", purpose("general"), N, {"PERMISSION"}),
    ("HMB-methods", "HMB", purpose("methods"), P, set()),
    ("DUOS-DS-same-disease", "DS(C50)", purpose("disease", "C50"), P, set()),
    ("DUOS-DS-descendant", "DS(C50)", purpose("disease", "C50.9"), P, set()),
    ("DS-block-covers-category", "DS(C00-C97)", purpose("disease", "C34.1"), P, set()),
    ("DS-chapter-covers", "DS(II)", purpose("disease", "C50.9", "C61"), P, set()),
    ("DUOS-DS-ancestor-purpose", "DS(C50.9)", purpose("disease", "C50"), N, {"PERMISSION"}),
    ("DUOS-DS-other-disease", "DS(C50)", purpose("disease", "E11"), N, {"PERMISSION"}),
    ("DS-partly-covered", "DS(C50)", purpose("disease", "C50.9", "C61"), N, {"PERMISSION"}),
    ("DS-two-consented", "DS(C50,C61)", purpose("disease", "C50.9", "C61"), P, set()),
    ("DS-health", "DS(C50)", purpose("health"), N, {"PERMISSION"}),
    ("DS-methods-in-scope", "DS(C50)", purpose("methods", "C50.1"), P, set()),
    ("DS-methods-no-scope", "DS(C50)", purpose("methods"), N, {"PERMISSION"}),
    ("POA-ancestry", "POA", purpose("ancestry"), P, set()),
    ("POA-disease", "POA", purpose("disease", "C50"), N, {"PERMISSION"}),
    ("unknown-consent", None, purpose("general"), N, {"UNKNOWN"}),
    # --- modifiers that deny -------------------------------------------------------------
    ("DUOS-NCU-commercial", "GRU;NCU", purpose("health", commercial=True), N, {"NCU"}),
    ("NCU-non-commercial", "GRU;NCU", purpose("health"), P, set()),
    ("DUOS-NPU-for-profit", "HMB;NPU", purpose("health", for_profit=True), N, {"NPU"}),
    ("NPU-commercial-but-not-for-profit", "HMB;NPU", purpose("health", commercial=True), P, set()),
    ("NPUNCU-commercial", "GRU;NPUNCU", purpose("general", commercial=True), N, {"NCU"}),
    ("NPUNCU-for-profit", "GRU;NPUNCU", purpose("general", for_profit=True), N, {"NPU"}),
    (
        "NPUNCU-both",
        "GRU;NPUNCU",
        purpose("general", commercial=True, for_profit=True),
        N,
        {"NCU", "NPU"},
    ),
    ("DUOS-NPOA-ancestry", "GRU;NPOA", purpose("ancestry"), N, {"NPOA"}),
    ("NPOA-disease", "GRU;NPOA", purpose("disease", "C50"), P, set()),
    ("DUOS-NMDS-methods", "GRU;NMDS", purpose("methods"), N, {"NMDS"}),
    ("NMDS-methods-on-disease-under-GRU", "GRU;NMDS", purpose("methods", "C50"), N, {"NMDS"}),
    ("NMDS-methods-within-DS", "DS(C50);NMDS", purpose("methods", "C50.9"), P, set()),
    ("NMDS-disease-research", "GRU;NMDS", purpose("disease", "C50"), P, set()),
    ("DUOS-GSO-not-genetic", "GRU;GSO", purpose("health"), N, {"GSO"}),
    ("GSO-genetic", "GRU;GSO", purpose("health", genetic=True), P, set()),
    ("GS-inside", "GRU;GS(JP,KR)", purpose("health", country="jp"), P, set()),
    ("GS-outside", "GRU;GS(JP,KR)", purpose("health", country="DE"), N, {"GS"}),
    ("GS-no-country", "GRU;GS(JP)", purpose("health"), N, {"GS"}),
    ("TS-still-valid", "GRU;TS(2027-01-01)", purpose("health"), P, set()),
    ("TS-last-day", "GRU;TS(2026-11-26)", purpose("health"), P, set()),
    ("TS-expired", "GRU;TS(2026-11-25)", purpose("health"), N, {"TS"}),
    # --- modifiers that add obligations -------------------------------------------------
    ("IRB-without-approval", "HMB;IRB", purpose("health"), C, {"IRB"}),
    ("IRB-with-approval", "HMB;IRB", purpose("health", ethics_approval=True), P, set()),
    ("COL", "GRU;COL", purpose("health"), C, {"COL"}),
    ("PUB", "GRU;PUB", purpose("health"), C, {"PUB"}),
    ("RTN", "GRU;RTN", purpose("health"), C, {"RTN"}),
    ("MOR-in-force", "GRU;MOR(2027-06-30)", purpose("health"), C, {"MOR"}),
    ("MOR-over", "GRU;MOR(2025-01-01)", purpose("health"), P, set()),
    ("US", "GRU;US", purpose("health"), C, {"US"}),
    ("PS", "GRU;PS", purpose("health"), C, {"PS"}),
    ("IS", "GRU;IS", purpose("health"), C, {"IS"}),
    ("RS", "GRU;RS", purpose("health"), C, {"RS"}),
    (
        "many-obligations",
        "DS(C50);COL;PUB;IRB",
        purpose("disease", "C50.9"),
        C,
        {"COL", "PUB", "IRB"},
    ),
    (
        "denial-beats-obligations",
        "DS(C50);NCU;COL;PUB",
        purpose("disease", "C50", commercial=True),
        N,
        {"NCU"},
    ),
    (
        "hospital-mix",
        "DS(C34);NPUNCU;GS(JP);RTN",
        purpose("disease", "C34.1", country="JP"),
        C,
        {"RTN"},
    ),
]


def row_for(consent: str | None) -> dict[str, Any]:
    return consent_columns(duo.parse(consent) if consent else None)


@pytest.mark.parametrize(
    ("case", "consent", "declared", "outcome", "codes"), CASES, ids=[c[0] for c in CASES]
)
def test_consent_against_purpose(
    case: str, consent: str | None, declared: ResearchPurpose, outcome: str, codes: set[str]
) -> None:
    rules = compile_purpose(declared)
    got, denials, conditions = rules.explain(row_for(consent))
    assert got == outcome
    applied = (
        {r.code for r in denials} if outcome == NOT_PERMITTED else {r.code for r in conditions}
    )
    assert applied == codes


def test_the_table_covers_every_permission_and_modifier() -> None:
    used = {t.code for _, consent, *_ in CASES if consent for t in duo.parse(consent).terms}
    assert used >= set(duo.definitions()), set(duo.definitions()) - used
    assert len(CASES) >= 40
    assert sum(case.startswith("DUOS-") for case, *_ in CASES) >= 10


def test_every_row_gets_exactly_one_outcome() -> None:
    for _, consent, declared, outcome, _ in CASES:
        filters = compile_purpose(declared).outcome_filters()
        from federation.model.expr import evaluate

        matched = [name for name, f in filters.items() if evaluate(f, row_for(consent))]
        assert matched == [outcome]


@pytest.mark.parametrize(
    ("raw", "argument"),
    [
        ({"kind": "astrology"}, "purpose.kind"),
        ({"kind": "disease"}, "purpose.diseases"),
        ({"kind": "disease", "diseases": ["C50.99"]}, "purpose.diseases"),
        ({"kind": "health", "country": "Japan"}, "purpose.country"),
    ],
)
def test_bad_purposes_name_the_argument(raw: dict[str, Any], argument: str) -> None:
    with pytest.raises(BadQuery) as err:
        ResearchPurpose.parse(raw)
    assert err.value.argument == argument


def test_kinds_are_all_tested() -> None:
    assert {c[2].kind for c in CASES} == set(PurposeKind)
