"""The consent table, evaluated inside the backend query on a real synced index.

Every consent of the table is one donor with one sample; for each purpose of the table the
search's outcome split (computed by the backend) and each record's outcome must equal the
table's expectations.
"""

from __future__ import annotations

from collections import Counter

import pytest

from federation.consent import ResearchPurpose
from federation.disclosure.roles import Identity
from federation.search.query import PageRequest, SampleQuery
from tests.conftest import Federation
from tests.consent.test_matching import CASES

ADMIN = Identity("admin", True, admin_of=frozenset({"bb"}))


@pytest.fixture(scope="module")
def consent_index(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    fed = Federation(tmp_path_factory.mktemp("consent"))
    bb = fed.biobank("bb")
    bb.collections["C1"]["default_consent"] = ""  # no default: an empty consent is unknown
    for n, (_, consent, *_) in enumerate(CASES):
        bb.donor(f"D{n}", consent=consent or "")
        bb.sample(f"S{n:03d}", f"D{n}")
    fed.sync("bb")
    return fed


def purposes() -> list[ResearchPurpose]:
    return list(dict.fromkeys(case[2] for case in CASES))


@pytest.mark.parametrize("purpose", purposes(), ids=lambda p: str(p.normalised()))
def test_backend_outcomes_match_the_table(
    consent_index: Federation, purpose: ResearchPurpose
) -> None:
    expected_by_donor = {}
    for n, (_, _consent, declared, outcome, codes) in enumerate(CASES):
        if declared == purpose:
            expected_by_donor[f"D{n}"] = (outcome, codes)
    # Every donor of the index is matched against this purpose, not only the table's rows
    # for it; compute those outcomes with the rule evaluator to compare the split.
    from federation.consent import compile_purpose
    from federation.model import duo
    from federation.search.documents import consent_columns

    rules = compile_purpose(purpose)
    all_outcomes = Counter(
        rules.explain(consent_columns(duo.parse(consent) if consent else None))[0]
        for _, consent, *_ in CASES
    )
    result = consent_index.runtime.search.search(
        SampleQuery(), identity=ADMIN, purpose=purpose, facets=(), page=PageRequest(100)
    )
    (row,) = result.by_biobank
    assert row.consent is not None
    assert {c.outcome: c.donors.value for c in row.consent} == {
        o: all_outcomes.get(o, 0) for o in ("permitted", "conditional", "not_permitted")
    }
    assert result.records is not None
    records = {r["donor_id"]: r for r in result.records.records}
    for donor, (outcome, codes) in expected_by_donor.items():
        if outcome == "not_permitted":
            assert donor not in records, "records only for permitted and conditional donors"
        else:
            assert records[donor]["consent_outcome"] == outcome
            assert {o["code"] for o in records[donor]["obligations"]} == codes
    assert all(r["consent_outcome"] != "not_permitted" for r in records.values())
