"""A determined registered researcher against a running gateway (gunicorn, two workers):
rewording, averaging, differencing, and running the budget dry. See docs/privacy.md."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from federation.gateway.auth import IssuedKey
from tests.privacy.attack_network import (
    BUDGET_EPSILON,
    COUNTS,
    FIGURES_FRAGMENT,
    NOISE,
    TARGET,
    Served,
    attacker_keys,
    build,
    serve,
)

pytestmark = pytest.mark.slow

ATTACKERS = 40


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("attack")
    return root, build(root)


@pytest.fixture(scope="module")
def served(network: tuple[Path, Path]) -> Iterator[Served]:
    root, path = network
    keys: dict[str, IssuedKey] = {
        **attacker_keys("r", range(ATTACKERS)),
        **attacker_keys("x", range(40, 62)),
    }
    with serve(root, path, keys) as url:
        yield Served(url, root, path, keys)


def figures(response: dict[str, Any]) -> Any:
    """Every released figure of a search, without what names the question."""
    assert "errors" not in response, response
    return response["data"]["search"]


# --- (a) rewordings ---------------------------------------------------------------------------

BASE: dict[str, Any] = {"diseases": ["E11"]}
# Each tweak keeps the matched rows: every donor is 20-79, FEMALE or MALE, has PLASMA or
# DNA samples, is in alpha; E11.9 is under E11; free text "diabetes" finds E10-E14.
TWEAKS: list[dict[str, Any]] = [
    {"diseases": ["E11", "E11.9"]},
    {"ageMax": 150},
    {"ageMax": 100},
    {"ageMin": 0},
    # The biobank named twice (a biobank that does not exist is refused: BAD_USER_INPUT).
    {"biobanks": ["alpha", "alpha"]},
    {"materials": ["PLASMA", "SERUM", "DNA", "TISSUE_FROZEN", "URINE", "WHOLE_BLOOD"]},
    {"sexes": ["FEMALE", "MALE"]},
]
TEXTS = ["diabetes", "Diabetes", "DIABETES"]


def rewordings() -> list[dict[str, Any]]:
    """30 distinct questions matching exactly the rows of BASE."""
    out: list[dict[str, Any]] = [dict(BASE)]
    for size in (1, 2, 3):
        for combo in itertools.combinations(TWEAKS, size):
            question = dict(BASE)
            for tweak in combo:
                question.update(tweak)
            out.append(question)
    for text in TEXTS:  # by name instead of by code
        out.append({"text": text})
        out.append({"text": text, "ageMin": 0})
    unique = {repr(sorted(q.items())): q for q in out}
    return list(unique.values())[:30]


PURPOSES: list[dict[str, Any] | None] = [
    {"kind": "GENERAL"},
    {"kind": "GENERAL", "diseases": ["J45"]},
    {"kind": "HEALTH"},
]


def test_thirty_rewordings_release_identical_figures(served: Served) -> None:
    questions = rewordings()
    assert len(questions) == 30
    reference = figures(served.ask("x60", BASE, PURPOSES[0]))
    donors = reference["byBiobank"][0]["donors"]
    assert donors["precision"] == "NOISED", "the figures must carry noise to be a test at all"
    # As separate requests, each with a purpose that gives every donor the same outcome.
    for n, question in enumerate(questions):
        purpose = PURPOSES[n % len(PURPOSES)]
        assert figures(served.ask("x60", question, purpose)) == reference, question
    # As aliases, five (the per-request cap) to a request.
    for start in range(0, len(questions), 5):
        chunk = questions[start : start + 5]
        fields = " ".join(
            f"q{n}: search(query: $q{n}, purpose: $p) {{ ...Figures }}" for n in range(len(chunk))
        )
        params = ", ".join(f"$q{n}: SampleQuery!" for n in range(len(chunk)))
        query = f"query({params}, $p: ResearchPurpose) {{ {fields} }} {FIGURES_FRAGMENT}"
        variables = {f"q{n}": q for n, q in enumerate(chunk)} | {"p": PURPOSES[0]}
        response = served.post("x60", query, variables)
        assert "errors" not in response, response
        for n in range(len(chunk)):
            assert response["data"][f"q{n}"] == reference, chunk[n]
    # The same rows shown as a facet bucket release the same figure as the row above.
    biobank_bucket = next(f for f in reference["facets"] if f["name"] == "biobank")["buckets"][0]
    assert biobank_bucket["donors"]["value"] == donors["value"]


def test_more_searches_than_the_cap_are_refused(served: Served) -> None:
    fields = " ".join(f"q{n}: search(query: {{}}) {{ donors {{ value }} }}" for n in range(6))
    response = served.post("x61", "{ " + fields + " }")
    assert response["errors"][0]["extensions"] == {
        "code": "TOO_MANY_SEARCHES",
        "searches": {"limit": 5, "sent": 6},
    }


# --- (b) averaging, (c) differencing ---------------------------------------------------------


def _donors(served: Served, who: str, question: dict[str, Any]) -> tuple[int | None, str]:
    row = served.counts(who, question)
    return row["value"], row["precision"]


def averaging_attack(served: Served, who: str, windows: list[tuple[int, int]]) -> list[int]:
    """Differences (target + background) - background over row sets that differ only outside
    the target cell; stops when the figures stop being numbers (the budget is spent)."""
    differences = []
    for low, high in windows:
        window = {"ageMin": low, "ageMax": high}
        with_target, p1 = _donors(served, who, {"diseases": ["C34", "E11"], **window})
        background, p2 = _donors(served, who, {"diseases": ["E11"], **window})
        if with_target is None or background is None:
            assert "BUDGET_SPENT" in (p1, p2)
            break
        differences.append(with_target - background)
    return differences


def test_averaging_is_bounded_by_the_budget(served: Served) -> None:
    """Each question costs 2 epsilon (donors and samples, scale 1), so a budget of 16 buys
    4 pairs: the mean of 4 differences of Laplace(1) figures has a standard deviation of
    sqrt(4 * 2 / 4) = 1. Over 40 attackers (each its own budget and its own row sets) the
    root mean square error must stay near that, and a fifth pair must not be answered."""
    pairs_per_budget = int(BUDGET_EPSILON * NOISE / 2 / 2)
    errors, exact = [], 0
    for n in range(ATTACKERS):
        # Distinct background row sets per attacker: age windows no other attacker uses.
        windows = [(20 + n % 20, 79 - (n // 20) * 10 - k) for k in range(pairs_per_budget + 2)]
        differences = averaging_attack(served, f"r{n}", windows)
        assert len(differences) == pairs_per_budget, "the budget must end the attack"
        estimate = statistics.fmean(differences)
        errors.append(estimate - TARGET)
        exact += round(estimate) == TARGET
    rmse = statistics.fmean(e * e for e in errors) ** 0.5
    assert rmse >= 0.6, f"averaging pinned the cell: rmse {rmse:.2f}"
    assert exact < 0.6 * ATTACKERS, f"{exact} of {ATTACKERS} attackers found the cell exactly"


def test_a_differencing_pair_does_not_reveal_the_withheld_cell(served: Served) -> None:
    alone, precision = _donors(served, "x40", {"diseases": ["C34"]})
    assert (alone, precision) == (None, "BELOW_THRESHOLD")
    differences = []
    for n in range(20):  # 20 distinct pairs, each its own noise
        window = {"ageMin": 20 + n, "ageMax": 79}
        with_target, _ = _donors(served, f"x{41 + n // 4}", {"diseases": ["C34", "E11"], **window})
        background, _ = _donors(served, f"x{41 + n // 4}", {"diseases": ["E11"], **window})
        assert with_target is not None and background is not None
        differences.append(with_target - background)
    # A pair tells T + noise: the true 3 is not what it shows most of the time, and which
    # pair happens to show it cannot be told apart from the others.
    assert sum(d == TARGET for d in differences) < len(differences) / 2
    assert len(set(differences)) >= 3


# --- (d) the budget: fallback, restart, two workers ------------------------------------------

ME = "{ me { privacyBudget { scope spent limit remaining refillsAt } } }"


def test_the_budget_falls_back_survives_a_restart_and_is_shared(
    network: tuple[Path, Path], served: Served
) -> None:
    root, path = network
    who = "x49"
    # 4 fresh questions: 8 epsilon of 16.
    for high in range(79, 75, -1):
        response = served.post(who, COUNTS, {"q": {"diseases": ["E11"], "ageMax": high}})
        assert response["data"]["search"]["byBiobank"][0]["donors"]["precision"] == "NOISED"
    (budget,) = served.post(who, ME)["data"]["me"]["privacyBudget"]
    assert (budget["scope"], budget["spent"], budget["limit"]) == ("alpha", 8.0, BUDGET_EPSILON)
    assert response["extensions"]["privacyBudget"][0]["remaining"] == 8.0
    # A repeat of a released row set is free, however it is worded.
    served.counts(who, {"diseases": ["E11", "E11.9"], "ageMax": 79, "ageMin": 0})
    assert served.post(who, ME)["data"]["me"]["privacyBudget"][0]["spent"] == 8.0

    # A restart refills nothing; then two workers answer 12 concurrent fresh questions,
    # of which exactly 4 can be paid for.
    with serve(root, path, served.keys) as url:
        again = Served(url, root, path, served.keys)
        assert again.post(who, ME)["data"]["me"]["privacyBudget"][0]["spent"] == 8.0
        questions = [{"diseases": ["E11"], "ageMin": 21 + n, "ageMax": 70} for n in range(12)]
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda q: again.counts(who, q), questions))
        precisions = [a["precision"] for a in answers]
        assert precisions.count("NOISED") == 4 and precisions.count("BUDGET_SPENT") == 8
        fallback = next(a for a in answers if a["precision"] != "NOISED")
        assert fallback["value"] is None and fallback["exists"] is True
        assert "at least 5" in fallback["reason"] and "budget" in fallback["reason"]
        assert "spent until 20" in fallback["reason"]  # when it refills (ISO date, UTC)
        (budget,) = again.post(who, ME)["data"]["me"]["privacyBudget"]
        assert budget["spent"] == BUDGET_EPSILON and budget["remaining"] == 0.0
        # Counts below k and zero are still told as the threshold-only release says.
        rare, precision = _donors(again, who, {"diseases": ["C34"]})
        assert (rare, precision) == (None, "BELOW_THRESHOLD")
