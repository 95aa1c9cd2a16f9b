"""Warm answers (search/warm.py) on the embedded backend and on real engine nodes: the
stored form keeps every figure, the landing answer is computed once per publish and used
instead of asking the backend, the next publish invalidates it at once, every role's
release of it is its own and the same as without warming, and a search while it is being
computed is answered from the backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.disclosure.count import Precision
from federation.disclosure.roles import ANONYMOUS, Identity
from federation.runtime import Runtime
from federation.search.embedded import EmbeddedBackend
from federation.search.query import (
    FACETS,
    BackendAnswer,
    Cell,
    Criteria,
    FacetCell,
    PageRequest,
    RecordPage,
    SampleQuery,
)
from federation.search.result import SearchResult
from federation.search.warm import (
    LANDING,
    PublishedAnswers,
    cut,
    decode_answer,
    encode_answer,
    warm_published,
)
from federation.sync.orchestrate import warm_answers
from tests.conftest import Federation
from tests.engine.node import RunningNode, drop_prefix
from tests.search.conformance import build_network
from tests.search.test_engine import engine_federation

pytest_plugins = ["tests.engine.fixtures"]

SECRET = "warm-tests-fixed-secret-0001"
# How long a background watch may take to notice a publish on a loaded machine.
WAIT_S = 60.0
REGISTERED = Identity("researcher@warm.example", authenticated=True, via="api_key")
OPERATOR = Identity("operator@warm.example", authenticated=True, operator=True, via="api_key")
ROLES = {"anonymous": ANONYMOUS, "registered": REGISTERED, "operator": OPERATOR}
# Registered researchers see noised figures (keyed on fingerprints), anonymous rounded ones.
DISCLOSURE = {
    "anonymous": {"granularity": "count", "min_count": 2, "rounding": 5},
    "registered": {"granularity": "count", "min_count": 1, "rounding": 1, "noise": 1.0},
}


def with_roles(fed: Federation) -> Federation:
    """The conformance network with the disclosure rules above (anonymous rounded,
    registered noised) and a fixed secret, synced."""
    fed.settings = dataclasses.replace(fed.settings, secret_key=SECRET)
    fed.runtime = Runtime(fed.settings)
    write = fed.write

    def write_with_rules() -> Path:
        network = write()
        document = yaml.safe_load(network.read_text(encoding="utf-8"))
        document["default_disclosure"] = DISCLOSURE
        network.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return network

    fed.write = write_with_rules  # type: ignore[method-assign]
    build_network(fed)
    return fed


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Federation]:
    fed = with_roles(Federation(tmp_path))
    yield fed
    fed.runtime.backend.close()


@pytest.fixture
def engine(tmp_path: Path, engine_node: RunningNode) -> Iterator[Federation]:
    fed = engine_federation(tmp_path, engine_node)
    fed = with_roles(fed)
    yield fed
    fed.runtime.backend.close()
    drop_prefix(engine_node.url, fed.settings.engine.index_prefix)


def server(fed: Federation) -> Runtime:
    """A fresh server process's runtime on the federation's data: nothing kept in memory."""
    return Runtime(fed.settings, audited=False)


def source(runtime: Runtime) -> PublishedAnswers:
    found = runtime.search.source
    assert isinstance(found, PublishedAnswers)
    return found


def figures(result: SearchResult) -> Any:
    """What a role is shown: totals, per biobank and per facet bucket, with precision."""
    return (result.donors, result.samples, result.by_biobank, result.facets)


def cold(runtime: Runtime) -> Runtime:
    """The runtime's service asking the backend for everything (no warm answers)."""
    runtime.search.source = runtime.backend
    return runtime


def comparable(answer: BackendAnswer) -> Any:
    return (
        answer.by_biobank,
        sorted(answer.facets, key=lambda c: (c.facet, c.key, c.biobank_id)),
        answer.generation,
        answer.segments,
        answer.covered,
    )


# --- the stored form ------------------------------------------------------------------------


def test_an_answer_round_trips_through_its_stored_form(embedded: Federation) -> None:
    backend = embedded.runtime.backend
    # A real answer with everything an answer can hold: facets, segments, a page of rows.
    real = backend.answer(
        Criteria(),
        facets=FACETS,
        page=PageRequest(first=3),
        segments={"all": Criteria().to_expr()},
    )
    assert real.page is not None and real.page.records and real.segments
    assert decode_answer(encode_answer(real)) == real
    made = BackendAnswer(
        {"x": Cell(1, 2, 2**64 - 1)},
        (FacetCell("sex", "FEMALE", "x", 1, 2, 3),),
        RecordPage(
            ({"d": dt.date(2020, 1, 2), "l": ["a", None], "n": None, "f": 1.5, "b": True},),
            "cursor",
            True,
            9,
        ),
        {"x": "g1"},
        {"x": {"ok": Cell(0, 0)}},
        None,
    )
    assert decode_answer(encode_answer(made)) == made
    assert json.loads(encode_answer(made))["by_biobank"]["x"][2] == 2**64 - 1


def _cuts_match_the_backend(fed: Federation) -> None:
    backend = fed.runtime.backend
    landing = backend.answer(Criteria(), facets=FACETS, fingerprints=True)
    questions = [FACETS, (), *((f,) for f in FACETS)]
    for facets in questions:
        for keyed in (True, False):
            asked = backend.answer(Criteria(), facets=facets, fingerprints=keyed)
            assert comparable(cut(landing, facets, keyed)) == comparable(asked), (facets, keyed)
    # Keys for some biobanks only (those that noise the asker): theirs as asked with all
    # keys, the others' 0, as the engine answers then.
    first = sorted(landing.by_biobank)[0]
    some = cut(landing, FACETS, frozenset({first}))
    assert some.by_biobank[first] == landing.by_biobank[first] and some.by_biobank[first].donor_fp
    assert all(c.donor_fp == 0 for bb, c in some.by_biobank.items() if bb != first)
    assert all(c.donor_fp == 0 for c in some.facets if c.biobank_id != first)
    assert [c for c in some.facets if c.biobank_id == first] == [
        c for c in landing.facets if c.biobank_id == first
    ]


def test_every_unfiltered_question_cut_from_the_landing_answer_is_the_backends(
    embedded: Federation,
) -> None:
    _cuts_match_the_backend(embedded)


@pytest.mark.engine
def test_engine_unfiltered_questions_cut_from_the_landing_answer_are_the_engines(
    engine: Federation,
) -> None:
    _cuts_match_the_backend(engine)


# --- used, invalidated, released per role -----------------------------------------------------


def landing(runtime: Runtime, identity: Identity = ANONYMOUS) -> SearchResult:
    return runtime.search.search(SampleQuery(), identity=identity)


def test_the_warm_landing_answer_is_used_instead_of_asking_the_backend(
    embedded: Federation,
) -> None:
    assert warm_published(embedded.runtime.backend, embedded.runtime.store.publications)
    runtime = server(embedded)
    backend = runtime.backend
    assert isinstance(backend, EmbeddedBackend) and backend.answers.size > 0
    for name, identity in ROLES.items():
        landing(runtime, identity)
        runtime.search.search(SampleQuery(), identity=identity, facets=("sex",))
        # Not a miss and not a hit: the backend's answer was never asked for.
        assert (backend.answers.misses, backend.answers.hits) == (0, 0), name
    assert source(runtime).warm_hits == 2 * len(ROLES)
    # A filtered question is the backend's, as before.
    runtime.search.search(SampleQuery(sexes=("FEMALE",)))
    assert backend.answers.misses == 1


def test_each_role_releases_the_warm_answer_as_it_would_the_backends(
    embedded: Federation,
) -> None:
    assert warm_published(embedded.runtime.backend, embedded.runtime.store.publications)
    warm, asked = server(embedded), cold(server(embedded))
    shown = {}
    for name, identity in ROLES.items():
        shown[name] = figures(landing(warm, identity))
        assert shown[name] == figures(landing(asked, identity)), name
    assert source(warm).warm_hits == len(ROLES)
    # Three releases of one answer, each the role's own.
    precision = {name: s[0].precision for name, s in shown.items()}
    assert precision == {
        "anonymous": Precision.ROUNDED,
        "registered": Precision.NOISED,
        "operator": Precision.EXACT,
    }
    assert shown["operator"][0].value == 6  # A1..A4 and B1, B2: the withdrawn A5 is not there


def _published_changes_show_at_once(fed: Federation) -> None:
    """Warm, serve, change the data and publish: the next search shows the new counts
    (asked of the backend while the new warm answer is not there), then warm again."""
    assert warm_published(fed.runtime.backend, fed.runtime.store.publications)
    runtime = server(fed)
    before = landing(runtime, OPERATOR)
    assert source(runtime).warm_hits == 1
    beta = fed.biobanks["beta"]
    beta.donor("B3", "FEMALE", 1975, diagnoses="E11.9")
    beta.sample("b4", "B3", "SERUM", "2013-06-01")
    fed.sync("beta")  # publishes and bumps the counter; not warmed yet
    during = landing(runtime, OPERATOR)
    assert source(runtime).warm_hits == 1  # the new publication has no warm answer yet
    assert during.donors.value == before.donors.value + 1
    assert figures(during) == figures(landing(cold(server(fed)), OPERATOR))
    warm_answers(fed.runtime.backend, fed.runtime.state)
    after = landing(runtime, OPERATOR)
    assert figures(after) == figures(during)
    assert source(runtime).warm_hits == 2
    stored = fed.runtime.store.publications
    scope = fed.runtime.backend.publication_scope()
    assert set(stored.answers(scope, stored.serial(scope))) == {LANDING}
    assert stored.answers(scope, stored.serial(scope) - 1) == {}  # the old one is dropped


def test_a_publish_shows_its_counts_at_once_and_is_warmed_again(embedded: Federation) -> None:
    _published_changes_show_at_once(embedded)


@pytest.mark.engine
def test_engine_publish_shows_its_counts_at_once_and_is_warmed_again(engine: Federation) -> None:
    _published_changes_show_at_once(engine)


def test_a_warm_answer_of_other_data_is_never_used(embedded: Federation, tmp_path: Path) -> None:
    # Another index folder's answer stored under this scope's publication (a host sharing
    # the state store and the folder's name, say): its generations are not ours.
    runtime = server(embedded)
    publications = runtime.store.publications
    scope = runtime.backend.publication_scope()
    real = runtime.backend.answer(Criteria(), facets=FACETS)
    other = BackendAnswer(
        {bb: Cell(cell.donors + 100, cell.samples) for bb, cell in real.by_biobank.items()},
        real.facets,
        None,
        {bb: "some-other-generation" for bb in real.generation},
        real.segments,
        real.covered,
    )
    assert publications.keep_answers(
        scope, publications.serial(scope), {LANDING: encode_answer(other)}
    )
    assert landing(runtime, OPERATOR).donors.value == 6
    assert source(runtime).warm_hits == 0


def test_a_watching_process_prepares_a_publish_before_its_first_search(
    embedded: Federation,
) -> None:
    # A server process whose watch (started in each gunicorn worker) notices a publish and
    # reads the new snapshot and warm answer before any visitor asks; each role's first
    # search then releases that answer as its own, exactly as asking the backend would.
    assert warm_published(embedded.runtime.backend, embedded.runtime.store.publications)
    runtime = server(embedded)
    watched = source(runtime)
    landing(runtime, OPERATOR)
    watched.watch()
    beta = embedded.biobanks["beta"]
    beta.donor("B3", "FEMALE", 1975, diagnoses="E11.9")
    beta.sample("b4", "B3", "SERUM", "2013-06-01")
    embedded.sync("beta")
    warm_answers(embedded.runtime.backend, embedded.runtime.state)
    publications = runtime.store.publications
    serial = publications.serial(watched.scope)
    manifest = EmbeddedBackend(embedded.settings.index_dir).store.read_manifest()
    backend = runtime.backend
    assert isinstance(backend, EmbeddedBackend)
    deadline = time.monotonic() + WAIT_S
    while not (watched._serial == serial and watched._landing is not None):
        assert time.monotonic() < deadline, "the watch did not prepare the publish"
        time.sleep(0.05)
    opened = backend._current
    assert opened is not None and opened.name == manifest["snapshot"]["file"]
    # The landing page asked before the publish is already cut from the new answer.
    deadline = time.monotonic() + WAIT_S
    while not watched._cuts:
        assert time.monotonic() < deadline, "the watch did not cut the landing page again"
        time.sleep(0.05)
    [(facets, _)] = watched._cuts
    assert facets == tuple(FACETS)
    hits = watched.warm_hits
    for name, identity in ROLES.items():
        assert figures(landing(runtime, identity)) == figures(
            landing(cold(server(embedded)), identity)
        ), name
    assert watched.warm_hits == hits + len(ROLES)
    assert landing(runtime, OPERATOR).donors.value == 7


# --- proved on the engine by its own search counter --------------------------------------------


def query_total(node: RunningNode, prefix: str) -> int:
    """Searches the engine has run on the federation's indices (its own statistics)."""
    url = f"{node.url}/{prefix}-samples-*/_stats/search"
    with urllib.request.urlopen(url, timeout=30) as response:
        stats = json.load(response)
    return int(stats["_all"]["primaries"]["search"]["query_total"])


@pytest.mark.engine
def test_engine_warm_landing_runs_no_engine_search(
    engine: Federation, engine_node: RunningNode
) -> None:
    assert warm_published(engine.runtime.backend, engine.runtime.store.publications)
    prefix = engine.settings.engine.index_prefix
    warm, asked = server(engine), cold(server(engine))
    for identity in ROLES.values():
        start = query_total(engine_node, prefix)
        result = landing(warm, identity)
        assert query_total(engine_node, prefix) == start
        assert figures(result) == figures(landing(asked, identity))
        # The same question asked of the engine runs searches: the counter counts them.
        assert query_total(engine_node, prefix) > start
    assert source(warm).warm_hits == len(ROLES)
