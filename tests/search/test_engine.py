"""The engine backend on real OpenSearch and Elasticsearch nodes: the conformance suite,
identical answers to the embedded backend on a generated network, generations and aliases,
incremental changes, the cross-host sync lock, and settings.

Every test taking `engine_node` runs once per engine; the nodes come from
`tests/engine/node.py` (BIOFED_TEST_ENGINE_URL / BIOFED_TEST_ELASTICSEARCH_URL, or ones this
session starts). Every test works under its own index prefix, so sessions can share a node.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import SCHEMA_DIR
from federation.model import expr as ex
from federation.runtime import Runtime
from federation.search.backend import BackendUnavailable, IncompleteAnswer, SearchBackend
from federation.search.documents import ARROW_SCHEMA, COLUMNS
from federation.search.engine import BiobankLockHeld, EngineBackend, EngineError, biobank_key
from federation.search.engine.bulk import spool_json_sql
from federation.search.engine.compiler import compile_filter, normal_form
from federation.search.fingerprint import DONOR_KEY_FIELD
from federation.search.query import (
    FACETS,
    BackendAnswer,
    Cell,
    Criteria,
    PageRequest,
    SampleQuery,
)
from federation.settings import SettingsError, load_settings
from federation.sync.run import sync_biobank
from tests.conftest import Federation, make_settings
from tests.engine.node import (
    ELASTICSEARCH,
    ENGINES,
    OPENSEARCH,
    Engine,
    RunningNode,
    SessionNodes,
    drop_prefix,
    engine_request,
    engine_settings,
    indices,
    unique_prefix,
)
from tests.search.conformance import BackendConformance, build_network
from tests.support.server import free_port

pytest_plugins = ["tests.engine.fixtures"]
pytestmark = pytest.mark.engine


def engine_federation(root: Path, node: RunningNode, **values: Any) -> Federation:
    fed = Federation(root)
    fed.settings = engine_settings(fed.settings, node, unique_prefix(), **values)
    fed.runtime = Runtime(fed.settings)
    return fed


def engine_of(fed: Federation) -> EngineBackend:
    backend = fed.runtime.backend
    assert isinstance(backend, EngineBackend)
    return backend


@pytest.fixture
def federation(tmp_path: Path, engine_node: RunningNode) -> Iterator[Federation]:
    fed = engine_federation(tmp_path, engine_node)
    yield fed
    fed.runtime.backend.close()
    drop_prefix(engine_node.url, fed.settings.engine.index_prefix)


@pytest.fixture
def network(federation: Federation) -> Federation:
    build_network(federation)
    return federation


class TestEngineBackend(BackendConformance):
    """The conformance suite, unchanged, on the engine."""


# --- identical answers on the embedded backend and the engine --------------------------------


@dataclasses.dataclass
class Twins:
    embedded: SearchBackend
    engine: SearchBackend
    biobanks: list[str]


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory, engine_node: RunningNode) -> Iterator[Twins]:
    """One generated network synced into both backends."""
    from federation.demo.generator import generate_network

    root = tmp_path_factory.mktemp("twins")
    generate_network(root / "demo", biobanks=4, samples=6_000, seed=4)
    network = root / "demo" / "network.yaml"
    embedded = Runtime(make_settings(root / "embedded", network))
    engine = Runtime(
        engine_settings(make_settings(root / "engine", network), engine_node, unique_prefix())
    )
    biobanks = [s.biobank.id for s in embedded.network().biobanks]
    for runtime in (embedded, engine):
        for source in runtime.network().biobanks:
            sync_biobank(
                source, runtime.backend, runtime.state, locks_dir=runtime.settings.locks_dir
            )
    yield Twins(embedded.backend, engine.backend, biobanks)
    embedded.backend.close()
    engine.backend.close()
    drop_prefix(engine_node.url, engine.settings.engine.index_prefix)


# Segments and page filters in the shapes consent filters take: negations, nulls, ranges.
SEGMENTS: dict[str, ex.Expr] = {
    "gru": ex.In("duo_permission", ("GRU",)),
    "unknown_consent": ex.IsNull("duo_permission"),
    "not_npu": ex.Not(ex.HasAny("duo_modifiers", ("NPU", "NCU"))),
    "no_modifiers_list_null": ex.IsNull("duo_modifiers"),
    "old_or_unknown_age": ex.Or((ex.Range("age", gte=65), ex.IsNull("age"))),
    "not_young": ex.Not(ex.Range("age", lt=30)),
    "collected_2015_on": ex.Range("collection_date", gte=dt.date(2015, 1, 1)),
    "none": ex.FALSE,
    "all": ex.TRUE,
}

CRITERIA = [
    Criteria(),
    Criteria(material_type=("PLASMA", "SERUM")),
    Criteria(sex=("FEMALE",), age_min=40, age_max=69),
    Criteria(disease_terms=(("C00-C97",),)),
    Criteria(disease_terms=(("II",), ("C50", "C18"))),
    Criteria(disease_terms=(("E11", "I10", "J45"),), material_type=("DNA", "PLASMA")),
    Criteria(disease_terms=((),)),
    Criteria(collection_types=("COHORT", "POPULATION_BASED")),
    Criteria(data_categories=("GENOMIC_DATA",), age_max=50),
    Criteria(age_min=90),
]


def comparable(answer: BackendAnswer) -> dict[str, Any]:
    page = answer.page
    return {
        "by_biobank": answer.by_biobank,
        "segments": answer.segments,
        "facets": sorted(answer.facets, key=lambda c: (c.facet, c.key, c.biobank_id)),
        "page": None if page is None else (page.records, page.end_cursor, page.has_next_page),
    }


@pytest.mark.parametrize("number", range(len(CRITERIA)))
def test_engine_answers_exactly_as_embedded(twins: Twins, number: int) -> None:
    criteria = CRITERIA[number]
    first = twins.biobanks[number % len(twins.biobanks)]
    for criteria_variant in (criteria, dataclasses.replace(criteria, biobank_id=(first,))):
        kwargs: dict[str, Any] = {
            "facets": FACETS,
            "segments": SEGMENTS,
            "page": PageRequest(first=7),
            "page_filter": ex.Not(ex.IsNull("duo_permission")),
        }
        expected = twins.embedded.answer(criteria_variant, **kwargs)
        got = twins.engine.answer(criteria_variant, **kwargs)
        assert got.page is not None and expected.page is not None
        for mine, reference in zip(got.page.records, expected.page.records, strict=True):
            assert mine == reference
        assert comparable(got) == comparable(expected)
        assert set(got.generation) == set(got.by_biobank)
        # The cells carry the exact fingerprints of their donors, the same on both backends
        # (compared above with the counts); a counted cell never has an empty fingerprint.
        counted = [c for c in got.by_biobank.values() if c.donors] + [
            c.cell for c in got.facets if c.donors
        ]
        assert all(c.donor_fp for c in counted)


def _unkeyed_outside(answer: BackendAnswer, keyed: frozenset[str]) -> dict[str, Any]:
    """`comparable(answer)` with the fingerprints of the biobanks outside `keyed` set to 0."""

    def cell(biobank: str, c: Cell) -> Cell:
        return c if biobank in keyed else dataclasses.replace(c, donor_fp=0)

    return comparable(
        dataclasses.replace(
            answer,
            by_biobank={bb: cell(bb, c) for bb, c in answer.by_biobank.items()},
            segments={
                bb: {name: cell(bb, c) for name, c in split.items()}
                for bb, split in answer.segments.items()
            },
            facets=tuple(
                c if c.biobank_id in keyed else dataclasses.replace(c, donor_fp=0)
                for c in answer.facets
            ),
        )
    )


@pytest.mark.parametrize("number", [0, 3, 6, 8])
def test_fingerprints_of_some_biobanks_only(twins: Twins, number: int) -> None:
    """Asked to key some biobanks only (those noising the asker's figures), the engine
    counts every biobank alike and sums exactly those biobanks' keys: the same
    fingerprints as when every biobank is keyed, 0 for the others; the same biobanks
    covered."""
    criteria = CRITERIA[number]
    kwargs: dict[str, Any] = {"facets": FACETS, "segments": SEGMENTS}
    full = twins.engine.answer(criteria, **kwargs)
    for keyed in (frozenset(twins.biobanks[:1]), frozenset(twins.biobanks[1:3])):
        some = twins.engine.answer(criteria, fingerprints=keyed, **kwargs)
        assert _unkeyed_outside(some, keyed) == _unkeyed_outside(full, keyed)
        assert some.generation == full.generation
        assert all(c.donor_fp for bb, c in some.by_biobank.items() if bb in keyed and c.donors)
        assert not any(c.donor_fp for bb, c in some.by_biobank.items() if bb not in keyed)
        # Facets asked without segments take the same split.
        facets_only = twins.engine.answer(criteria, facets=FACETS, fingerprints=keyed)
        expected = twins.engine.answer(criteria, facets=FACETS)
        assert _unkeyed_outside(facets_only, keyed) == _unkeyed_outside(expected, keyed)


def test_pages_walk_the_same_rows_on_both(twins: Twins) -> None:
    criteria = Criteria(material_type=("PLASMA",))
    walked: list[list[Any]] = []
    for backend in (twins.embedded, twins.engine):
        rows: list[Any] = []
        after = None
        while True:
            page = backend.answer(criteria, page=PageRequest(first=100, after=after)).page
            assert page is not None
            rows.extend(page.records)
            if not page.has_next_page:
                break
            after = page.end_cursor
        walked.append(rows)
    assert walked[0] == walked[1]
    assert len(walked[1]) > 200


def test_published_generations_and_sample_ids_match(twins: Twins) -> None:
    embedded, engine = twins.embedded.published(), twins.engine.published()
    assert embedded.keys() == engine.keys() == set(twins.biobanks)
    for biobank in twins.biobanks:
        assert engine[biobank].documents == embedded[biobank].documents
        assert engine[biobank].metadata == embedded[biobank].metadata
        assert twins.engine.sample_ids(biobank) == twins.embedded.sample_ids(biobank)


# --- generations, aliases and the write path ---------------------------------------------------


def test_each_biobank_serves_one_index_behind_both_aliases(
    network: Federation, engine_node: RunningNode
) -> None:
    engine_url = engine_node.url
    prefix = network.settings.engine.index_prefix
    before = indices(engine_url, f"{prefix}-samples")
    network.sync("beta")  # a second generation of beta replaces the first
    after = indices(engine_url, f"{prefix}-samples")
    assert len(after) == 2
    for name, aliases in after.items():
        biobank = "alpha" if "-alpha-" in name else "beta"
        assert aliases == {f"{prefix}-samples", f"{prefix}-samples-{biobank}"}
    (old_beta,) = (n for n in before if "-beta-" in n)
    assert old_beta not in after  # the old generation is deleted after the swap
    settings = engine_request(engine_url, "GET", f"/{prefix}-samples-beta/_settings")
    (index_settings,) = (v["settings"]["index"] for v in settings.values())
    assert index_settings["number_of_replicas"] == "0"
    # Serving indices refresh only when told (after a load, after an incremental batch).
    assert index_settings["refresh_interval"] == "-1"
    assert index_settings["translog"]["durability"] == "request"


def test_writer_failures_leave_no_trace(network: Federation, engine_node: RunningNode) -> None:
    engine_url = engine_node.url
    backend = engine_of(network)
    prefix = network.settings.engine.index_prefix
    before = indices(engine_url, prefix)
    counts = backend.answer(Criteria()).by_biobank
    rows = _rows(backend, "beta")
    # A document the engine refuses (a term over Lucene's 32 kB limit) fails the load
    # after the new index was created.
    bad = [*rows, {**rows[0], "sample_id": "bad", "storage_temperature": "x" * 40_000}]
    writer = backend.generation_writer("beta")
    with pytest.raises(EngineError, match="immense term"), writer:
        writer.add(bad)
        writer.publish()
    assert indices(engine_url, prefix) == before
    assert backend.answer(Criteria()).by_biobank == counts
    assert not writer._spool_dir.exists()  # the local spool is gone too
    # The lock was released: the next writer of beta can start at once.
    with backend.generation_writer("beta") as again:
        again.add(rows)
        again.publish()
    assert backend.answer(Criteria()).by_biobank == counts


def _rows(backend: EngineBackend, biobank_id: str) -> list[dict[str, Any]]:
    """The current rows of a biobank, read back from its sample documents."""
    hits = backend.writer.search(
        backend.names.biobank_alias(biobank_id),
        {"size": 1000, "query": {"term": {"kind": "sample"}}, "sort": [{"sample_id": "asc"}]},
    )["hits"]["hits"]
    rows = []
    for hit in hits:
        row = {k: v for k, v in hit["_source"].items() if k in COLUMNS}
        for name, kind in COLUMNS.items():
            if isinstance(row[name], str) and kind == "date":
                row[name] = dt.date.fromisoformat(row[name])
            elif isinstance(row[name], str) and kind == "timestamp":
                row[name] = dt.datetime.fromisoformat(row[name])
        rows.append(row)
    return rows


def test_remove_biobank_deletes_its_indices(network: Federation, engine_node: RunningNode) -> None:
    engine_url = engine_node.url
    prefix = network.settings.engine.index_prefix
    network.runtime.backend.remove_biobank("beta")
    assert all("-beta-" not in name for name in indices(engine_url, prefix))
    assert set(network.runtime.backend.published()) == {"alpha"}
    answer = network.runtime.backend.answer(Criteria())
    assert set(answer.by_biobank) == {"alpha"} and answer.covered == {"alpha"}
    # beta is still in the network file and a sync published it: until it leaves the
    # network (launch.py removes a biobank's indices only then), a search without it is
    # refused naming it, never answered short (issue 20, case 1).
    with pytest.raises(IncompleteAnswer) as refused:
        network.runtime.search.search(SampleQuery())
    assert refused.value.missing == ("beta",)


def test_an_empty_network_answers_empty(federation: Federation) -> None:
    backend = federation.runtime.backend
    answer = backend.answer(Criteria(), facets=FACETS, page=PageRequest(3))
    assert answer.by_biobank == {} and answer.facets == ()
    assert answer.page is not None and answer.page.records == ()
    assert backend.published() == {} and backend.sample_ids("alpha") == set()
    assert backend.ready()


# --- incremental changes -----------------------------------------------------------------------


def test_incremental_changes_upsert_delete_and_count_conflicts(network: Federation) -> None:
    backend = engine_of(network)
    rows = {r["sample_id"]: r for r in _rows(backend, "beta")}
    first = backend.answer(Criteria()).by_biobank["beta"]
    assert (first.donors, first.samples) == (2, 3)
    # b4: a new sample of an existing donor; b5: a new donor; b3 deleted (its donor B2 goes).
    b4 = {**rows["b1"], "sample_id": "b4", "material_type": "SERUM"}
    b5 = {**rows["b1"], "sample_id": "b5", "donor_id": "B9", "sex": "MALE"}
    outcome = backend.apply_changes("beta", [b4, b5], ["b3", "nope"], version=1000)
    assert (outcome.upserted, outcome.deleted, outcome.missing, outcome.conflicts) == (2, 1, 1, 0)
    cell = backend.answer(Criteria()).by_biobank["beta"]
    assert (cell.donors, cell.samples) == (2, 4)  # B1 (b1, b2, b4), B9 (b5)
    serum = backend.answer(Criteria(material_type=("SERUM",))).by_biobank["beta"]
    assert (serum.donors, serum.samples) == (1, 1)
    assert backend.published()["beta"].documents == 4
    # A stale replay (older version) loses to what is there: counted, not applied.
    stale = backend.apply_changes("beta", [{**b4, "material_type": "DNA"}], ["b5"], version=999)
    assert stale.conflicts == 2 and stale.upserted == stale.deleted == 0
    assert backend.answer(Criteria(material_type=("SERUM",))).by_biobank["beta"].samples == 1
    # A withdrawn donor's row is removed, never indexed.
    gone = backend.apply_changes("beta", [{**b5, "withdrawn": True}], [], version=1001)
    assert gone.deleted == 1
    cell = backend.answer(Criteria()).by_biobank["beta"]
    assert (cell.donors, cell.samples) == (1, 3)
    # A sample moving to another donor rebuilds both donors.
    moved = backend.apply_changes("beta", [{**b4, "donor_id": "B7"}], [], version=1002)
    assert moved.upserted == 1 and moved.donors_rebuilt == 2
    cell = backend.answer(Criteria()).by_biobank["beta"]
    assert (cell.donors, cell.samples) == (2, 3)
    assert backend.sample_ids("beta") == {"b1", "b2", "b4"}


def test_an_index_made_before_donor_keys_takes_changes_and_reads_unkeyed(
    federation: Federation,
) -> None:
    """An index whose (strict) mapping predates `donor_key` still takes incremental changes
    (its donors are rebuilt without the key) and answers with fingerprint 0 until a full
    sync makes a new index (docs/privacy.md, Overhead: existing data)."""
    backend = engine_of(federation)
    schema = copy.deepcopy(backend.index_schema())
    del schema["mappings"]["properties"][DONOR_KEY_FIELD]
    backend.admin._schema = schema  # the mappings an older version made its indices with
    build_network(federation)
    before = backend.answer(Criteria()).by_biobank["beta"]
    assert before.donors == 2 and before.donor_fp == 0
    row = {**_rows(backend, "beta")[0], "sample_id": "b9", "material_type": "SERUM"}
    outcome = backend.apply_changes("beta", [row], [], version=1000)
    assert outcome.upserted == 1 and outcome.donors_rebuilt == 1
    after = backend.answer(Criteria()).by_biobank["beta"]
    assert (after.donors, after.samples, after.donor_fp) == (2, 4, 0)


# --- the sync lock across hosts ----------------------------------------------------------------


def test_one_sync_per_biobank_across_hosts(network: Federation) -> None:
    here = engine_of(network)
    # Another host: its own backend instance (own clients and lock owner) on the same engine.
    there = EngineBackend.from_settings(network.settings)
    try:
        with here.lock("alpha"):
            with pytest.raises(BiobankLockHeld, match="already running on"):
                there.generation_writer("alpha")
            with here.lock("alpha"):  # re-entrant in the process holding it
                pass
            with there.lock("beta"):  # other biobanks are free
                pass
        with there.lock("alpha"):  # released: the other host may sync now
            pass
    finally:
        there.close()


def test_a_stale_lock_is_taken_over(network: Federation, engine_node: RunningNode) -> None:
    engine_url = engine_node.url
    backend = engine_of(network)
    prefix = network.settings.engine.index_prefix
    # What a sync killed mid-run leaves: its lock document, past its expiry.
    stale = {"biobank_id": "beta", "owner": "dead", "host": "gone", "pid": 1, "expires_at": 1}
    engine_request(engine_url, "PUT", f"/{prefix}-locks/_doc/beta?refresh=true", stale)
    with backend.lock("beta") as lease:
        assert lease.document["owner"] != "dead"
    live = {"biobank_id": "beta", "owner": "x", "host": "h1", "pid": 2, "expires_at": 2**42}
    engine_request(engine_url, "PUT", f"/{prefix}-locks/_doc/beta?refresh=true", live)
    with pytest.raises(BiobankLockHeld, match="h1"):
        backend.generation_writer("beta")


def test_a_held_lock_is_renewed(federation: Federation) -> None:
    engine = dataclasses.replace(federation.settings.engine, lock_ttl=0.6)
    settings = dataclasses.replace(federation.settings, engine=engine)
    backend = EngineBackend.from_settings(settings)
    try:
        with backend.lock("gamma") as lease:
            first = lease.document["expires_at"]
            time.sleep(1.0)  # past the TTL: only renewal keeps it
            lease.check()
            assert lease.document["expires_at"] > first
    finally:
        backend.close()


# --- outage without a node, settings, schema ---------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES, ids=str)
def test_searches_fail_fast_when_the_engine_is_unreachable(tmp_path: Path, engine: Engine) -> None:
    nowhere = RunningNode(engine, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    settings = engine_settings(make_settings(tmp_path), nowhere, "down", engine_search_retries=1)
    backend = EngineBackend.from_settings(settings)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        backend.answer(Criteria(), facets=FACETS)
    assert time.monotonic() - started < 2
    assert backend.ready() is False
    backend.close()


def test_engine_settings_are_validated(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "BIOFED_BACKEND": "elasticsearch",
            "BIOFED_ENGINE_URLS": "https://a:9200, https://b:9200/",
            "BIOFED_ENGINE_API_KEY": "sekrit-api-key",
            "BIOFED_ENGINE_VERIFY_CERTS": "false",
            "BIOFED_ENGINE_SEARCH_TIMEOUT": "1.5",
        },
        read_files=False,
    )
    assert settings.engine.urls == ("https://a:9200", "https://b:9200")
    assert settings.engine.verify_certs is False and settings.engine.search_timeout == 1.5
    assert "sekrit" not in repr(settings)
    for environ, message in [
        ({"BIOFED_ENGINE_URLS": "a:9200"}, "is not an http"),
        ({"BIOFED_ENGINE_INDEX_PREFIX": "Bad"}, "lowercase"),
        ({"BIOFED_ENGINE_SEARCH_TIMEOUT": "0"}, "more than 0"),
        ({"BIOFED_ENGINE_BULK_RETRIES": "-1"}, "must not be negative"),
        ({"BIOFED_ENGINE_VERIFY_CERTS": "maybe"}, "true or false"),
    ]:
        with pytest.raises(SettingsError, match=message):
            load_settings(environ=environ, read_files=False)
    config = tmp_path / "site.yaml"
    config.write_text("engine_password: hunter2\n")
    with pytest.raises(SettingsError, match="secret; set BIOFED_ENGINE_PASSWORD"):
        load_settings(config, environ={})
    with pytest.raises(SettingsError, match="OpenSearch has no API keys"):
        EngineBackend.from_settings(
            load_settings(
                environ={"BIOFED_BACKEND": "opensearch", "BIOFED_ENGINE_API_KEY": "k"},
                read_files=False,
            )
        )


def _mapping_fields(properties: dict[str, Any]) -> dict[str, str]:
    kinds = {"keyword": "string", "integer": "int", "boolean": "bool"}
    out = {}
    for name, spec in properties.items():
        if spec["type"] == "date":
            out[name] = "date" if spec["format"] == "strict_date" else "timestamp"
        else:
            out[name] = kinds[spec["type"]]
    return out


@pytest.mark.parametrize("path", sorted((SCHEMA_DIR / "engine").glob("*-*.json")), ids=str)
def test_mappings_follow_the_document_columns(path: Path) -> None:
    schema = json.loads(path.read_text())
    top = dict(schema["mappings"]["properties"])
    nested = top.pop("samples")
    assert nested["type"] == "nested"
    assert top.pop("kind") == {"type": "keyword"}
    # A donor document's key, summed into its donors' fingerprint (search/fingerprint.py).
    assert top.pop("donor_key") == {"type": "integer"}
    # Lists are keyword arrays: compare kinds without the [] marker.
    expected = {name: kind.removesuffix("[]") for name, kind in COLUMNS.items()}
    assert _mapping_fields(top) == expected
    assert _mapping_fields(nested["properties"]) == expected
    assert schema["mappings"]["dynamic"] == "strict"
    # Loading: no replicas, no fsync per request (each restored afterwards), no refresh.
    assert schema["loading_settings"]["index"] == {
        "number_of_replicas": 0,
        "refresh_interval": "-1",
        "translog": {"durability": "async"},
    }
    assert schema["settings"]["index"]["translog"] == {"durability": "request"}


_LEAVES = st.one_of(
    st.sampled_from(["a", "b", None]).map(lambda v: ex.In("sex", (v or "x",))),
    st.just(ex.IsNull("sex")),
    st.just(ex.IsNull("duo_permission")),
    st.just(ex.In("duo_permission", ("GRU",))),
    st.just(ex.IsNull("age")),
    st.sampled_from(["GS", "IRB"]).map(lambda v: ex.HasAny("duo_modifiers", (v,))),
    st.just(ex.Range("age", gte=40)),
    st.booleans().map(ex.Const),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        inner.map(ex.Not),
        st.lists(inner, max_size=4).map(lambda items: ex.And(tuple(items))),
        st.lists(inner, max_size=4).map(lambda items: ex.Or(tuple(items))),
    ),
    max_leaves=12,
)
_ROWS = st.fixed_dictionaries(
    {
        "sex": st.sampled_from(["a", "b", "x", None]),
        "duo_permission": st.sampled_from(["GRU", None]),
        "duo_modifiers": st.lists(st.sampled_from(["GS", "IRB", "COL"]), max_size=2),
        "age": st.one_of(st.none(), st.integers(0, 90)),
    }
)


@settings(max_examples=600, deadline=None)
@given(tree=_TREES, rows=st.lists(_ROWS, min_size=1, max_size=8))
def test_the_engine_normal_form_keeps_the_meaning(
    tree: ex.Expr, rows: list[dict[str, Any]]
) -> None:
    # Negations pushed to the leaves and null tests absorbed: the same rows must match.
    normal = normal_form(tree)
    for row in rows:
        assert ex.evaluate(normal, row) == ex.evaluate(tree, row), (tree, normal, row)


def test_consent_style_negations_compile_to_positive_clauses() -> None:
    # "not (permission unknown or (known and not allowed) or GS)", as the consent compiler
    # writes it, is "permission allowed, and not GS" for the engine.
    allowed = ex.In("duo_permission", ("GRU", "HMB"))
    tree = ex.Not(
        ex.Or(
            (
                ex.IsNull("duo_permission"),
                ex.And((ex.Not(ex.IsNull("duo_permission")), ex.Not(allowed))),
                ex.HasAny("duo_modifiers", ("GS",)),
            )
        )
    )
    assert compile_filter(tree, "samples.") == {
        "bool": {
            "filter": [{"terms": {"samples.duo_permission": ["GRU", "HMB"]}}],
            "must_not": [{"terms": {"samples.duo_modifiers": ["GS"]}}],
        }
    }
    # Its negation ("not permitted") cancels the double negation and keeps one must_not of
    # the positive permission clause, which also matches the unknown permissions.
    assert compile_filter(ex.Not(tree), "samples.") == {
        "bool": {
            "should": [
                {"bool": {"must_not": [{"terms": {"samples.duo_permission": ["GRU", "HMB"]}}]}},
                {"terms": {"samples.duo_modifiers": ["GS"]}},
            ],
            "minimum_should_match": 1,
        }
    }


def test_filter_compiler_shapes() -> None:
    assert compile_filter(ex.Not(ex.In("sex", ("MALE",))), "samples.") == {
        "bool": {"must_not": [{"term": {"samples.sex": "MALE"}}]}
    }
    assert compile_filter(ex.IsNull("age")) == {
        "bool": {"must_not": [{"exists": {"field": "age"}}]}
    }
    assert compile_filter(ex.Range("age")) == {"exists": {"field": "age"}}
    assert compile_filter(ex.Range("collection_date", lt=dt.date(2020, 1, 2))) == {
        "range": {"collection_date": {"lt": "2020-01-02"}}
    }
    with pytest.raises(ValueError, match="unknown index column"):
        compile_filter(ex.In("nope", ("x",)))


def test_biobank_keys_are_index_safe_and_distinct() -> None:
    ids = ["alpha", "Alpha", "a-b", "a_b", "a_2db", "東北", "x" * 300, "x" * 299 + "y"]
    keys = [biobank_key(i) for i in ids]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert key == key.lower() and "-" not in key and len(key) <= 120
        assert all(c.isascii() for c in key)


# --- each engine is what it says it is -----------------------------------------------------------


def test_the_elasticsearch_node_is_elasticsearch_8_to_the_official_client(
    request: pytest.FixtureRequest, engine_nodes: SessionNodes, tmp_path: Path
) -> None:
    """No proxy between the `elasticsearch` client and the node: it checks the product itself."""
    from elasticsearch import Elasticsearch

    node = engine_nodes.get(request, ELASTICSEARCH)
    client = Elasticsearch(node.url, request_timeout=10)
    try:
        info = client.info()
        # The client raises UnsupportedProductError unless the answer carries the header
        # Elasticsearch's REST layer adds to every response.
        assert info.meta.headers["X-Elastic-Product"] == "Elasticsearch"
        version = info["version"]
        assert version["number"].startswith("8."), info
        assert "distribution" not in version  # OpenSearch names itself here
        # The server's own node info (not the root endpoint) reports the same build.
        nodes = client.nodes.info(node_id="_local")["nodes"]
        ((_, local),) = nodes.items()
        assert local["version"] == version["number"]
        assert local["build_hash"] == version["build_hash"]
        assert client.ping()
    finally:
        client.close()
    backend = EngineBackend.from_settings(engine_settings(make_settings(tmp_path), node, "probe"))
    try:
        assert type(backend.reader).__name__ == "ElasticsearchClient"
        assert backend.reader.info()["version"]["number"] == version["number"]
    finally:
        backend.close()


def test_the_elasticsearch_client_refuses_the_opensearch_node(
    request: pytest.FixtureRequest, engine_nodes: SessionNodes, tmp_path: Path
) -> None:
    opensearch = engine_nodes.get(request, OPENSEARCH)
    as_elasticsearch = RunningNode(ELASTICSEARCH, opensearch.url)
    backend = EngineBackend.from_settings(
        engine_settings(make_settings(tmp_path), as_elasticsearch, "probe")
    )
    try:
        with pytest.raises(EngineError, match="set backend: opensearch"):
            backend.reader.info()
    finally:
        backend.close()


def test_spool_rows_become_the_same_json_the_python_encoder_writes(tmp_path: Path) -> None:
    # The bulk load takes each row's JSON from DuckDB; it must read back as the row.
    awkward = {
        "biobank_id": "bb1",
        "sample_id": 'S"1\\é\n',
        "donor_id": "D1",
        "collection_types": ["CASE_CONTROL", "DISEASE_SPECIFIC"],
        "age": 0,
        "withdrawn": False,
        "collection_date": dt.date(2019, 2, 3),
        "duo_mor_date": None,
        "last_updated": dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        "data_categories": [],
    }
    rows = [
        awkward,
        {"biobank_id": "bb1", "sample_id": "S2", "donor_id": "D0", "last_updated": None},
        {
            "biobank_id": "bb1",
            "sample_id": "S3",
            "donor_id": "D1",
            "last_updated": dt.datetime(
                2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2))
            ),
        },
    ]
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), path)
    out = duckdb.connect().sql(spool_json_sql(path)).fetchall()
    assert [(donor, json.loads(doc_id)) for donor, doc_id, _, _ in out] == [
        ("D0", "s:S2"),
        ("D1", 's:S"1\\é\n'),
        ("D1", "s:S3"),
    ]
    # The donor's ordinal rides along: its key goes on the donor document.
    assert [ordinal for _, _, doc, ordinal in out] == [
        json.loads(doc)["donor_ord"] for _, _, doc, _ in out
    ]
    by_id = {json.loads(doc)["sample_id"]: json.loads(doc) for _, _, doc, _ in out}
    for row in rows:
        doc = by_id[row["sample_id"]]
        assert list(doc) == list(COLUMNS)
        for name in COLUMNS:
            expected = row.get(name)
            if isinstance(expected, dt.datetime):
                assert dt.datetime.fromisoformat(doc[name]) == expected
            elif isinstance(expected, dt.date):
                assert doc[name] == expected.isoformat()
            else:
                assert doc[name] == expected, name
