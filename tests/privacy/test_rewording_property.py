"""Property: a random question and any random equivalent rewording of it (the same rows)
release identical answers: per biobank, every facet bucket, and the consent split."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.consent import ResearchPurpose
from federation.disclosure.roles import Identity
from federation.model import vocab
from federation.runtime import Runtime
from federation.search.query import SampleQuery
from federation.search.result import SearchResult
from federation.search.service import SearchService
from tests.conftest import make_settings
from tests.privacy.attack_network import build

RESEARCHER = Identity("someone@example.org", authenticated=True, via="api_key")
# Codes with a sub-code present in the data (E11 -> E11.9, C34 -> C34.9), and one absent.
DISEASES = {"E11": "E11.9", "C34": "C34.9", "C50": "C50.9"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchService]:
    root = tmp_path_factory.mktemp("property")
    runtime = Runtime(make_settings(root, build(root)), audited=False)
    service = runtime.search
    # The property is about the noise alone: no budget, so no figure falls back.
    service.ledger = None
    service.secret = "property-secret"
    yield service
    runtime.backend.close()


questions = st.fixed_dictionaries(
    {},
    optional={
        "diseases": st.lists(st.sampled_from(sorted(DISEASES)), min_size=1, unique=True),
        "sexes": st.lists(st.sampled_from(["FEMALE", "MALE"]), min_size=1, unique=True),
        "materials": st.lists(st.sampled_from(["PLASMA", "DNA"]), min_size=1, unique=True),
        "age_min": st.integers(20, 60),
        "age_max": st.integers(60, 90),
    },
)


@st.composite
def reworded(draw: st.DrawFn, question: dict[str, Any]) -> dict[str, Any]:
    """The question said differently, matching exactly the same rows."""
    out = dict(question)
    if "diseases" in out and draw(st.booleans()):  # a disease plus its own sub-code
        out["diseases"] = [*out["diseases"], *(DISEASES[c] for c in out["diseases"])]
    if "sexes" not in out and draw(st.booleans()):  # every sex the vocabulary knows
        out["sexes"] = list(vocab.sexes().codes)
    if "materials" not in out and draw(st.booleans()):  # every material
        out["materials"] = list(vocab.material_types().codes)
    if "age_min" not in out and draw(st.booleans()):
        out["age_min"] = 0
    if "age_max" not in out and draw(st.booleans()):
        out["age_max"] = draw(st.sampled_from([100, 150]))
    if draw(st.booleans()):  # the biobank, once or twice (an unknown one is refused)
        out["biobanks"] = ["alpha"] * draw(st.integers(1, 2))
    for name, value in list(out.items()):
        if isinstance(value, list):  # order and case of the codes
            value = draw(st.permutations(value))
            out[name] = [v.lower() if draw(st.booleans()) else v for v in value]
    return out


def released(result: SearchResult) -> Any:
    return (result.donors, result.samples, result.by_biobank, result.facets, result.consent)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), question=questions, general=st.booleans())
def test_equivalent_rewordings_release_identical_answers(
    service: SearchService, data: st.DataObject, question: dict[str, Any], general: bool
) -> None:
    other = data.draw(reworded(question))
    # Every donor is GRU: any purpose gives every donor the same outcome.
    purposes = [
        ResearchPurpose.parse({"kind": "general"}),
        ResearchPurpose.parse({"kind": "general", "diseases": ["J45"]}),
    ]
    purpose = purposes[0] if general else None
    first = service.search(SampleQuery.parse(question), identity=RESEARCHER, purpose=purpose)
    again_purpose = purposes[1] if general else None
    second = service.search(SampleQuery.parse(other), identity=RESEARCHER, purpose=again_purpose)
    assert released(first) == released(second), (question, other)
    assert any(row.donors.precision.value == "noised" for row in first.by_biobank) or (
        first.donors.value in (0, None)
    )


def test_the_property_is_not_vacuous(service: SearchService) -> None:
    # Two questions counting different rows do get different noise draws somewhere.
    a = service.search(SampleQuery.parse({"diseases": ["E11"]}), identity=RESEARCHER)
    b = service.search(SampleQuery.parse({"diseases": ["E11"], "age_max": 78}), identity=RESEARCHER)
    assert a.by_biobank[0].donors.value is not None and b.by_biobank[0].donors.value is not None
    assert released(a) != released(b)
