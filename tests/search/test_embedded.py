"""The embedded (DuckDB over Parquet) backend: the conformance suite, its one-statement answers
against a count over the rows by the reference evaluator, and its answer cache."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from federation.consent.matching import compile_purpose
from federation.consent.purpose import PurposeKind, ResearchPurpose
from federation.model import expr as ex
from federation.runtime import Runtime
from federation.search.documents import ARROW_SCHEMA, CONSENT_COLUMNS
from federation.search.embedded import AnswerCache, EmbeddedBackend
from federation.search.embedded.snapshot import TABLE, Snapshot, snapshot_folder
from federation.search.embedded.sql import (
    PER_DONOR_FACETS,
    Holds,
    consent_table,
    donor_table,
    read_columns,
    summary_sql,
)
from federation.search.facets import FACET
from federation.search.fingerprint import KEY_BITS, donor_key
from federation.search.query import (
    FACETS,
    BackendAnswer,
    Cell,
    Criteria,
    FacetCell,
    SampleQuery,
    age_bucket,
)
from federation.settings import SettingsError, load_settings
from federation.sync.run import sync_biobank
from tests.conftest import Federation, make_settings
from tests.search.conformance import BackendConformance, build_network, per_biobank


class TestEmbeddedBackend(BackendConformance):
    """`federation` from tests/conftest.py is built on the embedded backend by default."""


# --- answers against the reference evaluator --------------------------------------------------


@dataclasses.dataclass
class Generated:
    backend: EmbeddedBackend
    rows: list[dict[str, Any]]
    biobanks: list[str]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """A generated network synced into the embedded backend, and its rows read back."""
    from federation.demo.generator import generate_network

    root = tmp_path_factory.mktemp("generated")
    generate_network(root / "demo", biobanks=3, samples=3_000, seed=11)
    runtime = Runtime(make_settings(root, root / "demo" / "network.yaml"))
    for source in runtime.network().biobanks:
        sync_biobank(source, runtime.backend, runtime.state, locks_dir=runtime.settings.locks_dir)
    backend = runtime.backend
    assert isinstance(backend, EmbeddedBackend)
    files = backend.store.live_files(backend.store.read_manifest())
    rows = [row for path in files for row in pq.read_table(path).to_pylist()]
    yield Generated(backend, rows, sorted({row["biobank_id"] for row in rows}))
    backend.close()


def _facet_keys(facet: str, row: dict[str, Any]) -> Sequence[Any]:
    value = {
        "material_type": row["material_type"],
        "sex": row["sex"],
        "age": None if row["age"] is None else age_bucket(row["age"]),
        "chapter": row["chapters"],
        "block": row["blocks"],
        "biobank": row["biobank_id"],
        "country": row["biobank_id"],  # counted per biobank; the service groups by country
        "collection_type": row["collection_types"],
    }[facet]
    if isinstance(value, list):
        return value
    return () if value is None else (value,)


def _cells(rows: list[dict[str, Any]]) -> Cell:
    """Counts and the donors' fingerprint worked out from the ordinal of each row's donor."""
    donors = {row["donor_id"]: donor_key(row["donor_ord"]) for row in rows}
    return Cell(len(donors), len(rows), sum(donors.values()))


def reference(
    rows: list[dict[str, Any]],
    criteria: Criteria,
    facets: Sequence[str],
    segments: dict[str, ex.Expr],
) -> dict[str, Any]:
    """The answer counted row by row with `expr.evaluate`, one filter per facet."""
    matching = [row for row in rows if ex.evaluate(criteria.to_expr(), row)]
    per_biobank: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in matching:
        per_biobank[row["biobank_id"]].append(row)
    facet_cells = []
    for facet in facets:
        without = criteria.without(facet).to_expr()
        buckets: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if ex.evaluate(without, row):
                for key in _facet_keys(facet, row):
                    buckets[(row["biobank_id"], str(key))].append(row)
        facet_cells += [
            FacetCell(facet, key, biobank, *dataclasses.astuple(_cells(found)))
            for (biobank, key), found in buckets.items()
        ]
    return {
        "by_biobank": {bb: _cells(found) for bb, found in per_biobank.items()},
        "segments": {
            bb: {
                name: _cells([row for row in found if ex.evaluate(segment, row)])
                for name, segment in segments.items()
            }
            for bb, found in per_biobank.items()
        },
        "facets": sorted(facet_cells, key=lambda c: (c.facet, c.key, c.biobank_id)),
    }


def comparable(answer: BackendAnswer) -> dict[str, Any]:
    return {
        "by_biobank": answer.by_biobank,
        "segments": answer.segments,
        "facets": sorted(answer.facets, key=lambda c: (c.facet, c.key, c.biobank_id)),
    }


# Segments in the shapes consent filters take: negations, nulls, ranges, constants.
SEGMENTS: dict[str, ex.Expr] = {
    "gru": ex.In("duo_permission", ("GRU",)),
    "unknown_consent": ex.IsNull("duo_permission"),
    "not_npu": ex.Not(ex.HasAny("duo_modifiers", ("NPU", "NCU"))),
    "old_or_unknown_age": ex.Or((ex.Range("age", gte=65), ex.IsNull("age"))),
    "collected_2015_on": ex.Range("collection_date", gte=dt.date(2015, 1, 1)),
    "none": ex.FALSE,
}

# Several facet clauses at once, so each facet drops its own and keeps the others'.
CRITERIA = [
    Criteria(),
    Criteria(sex=("FEMALE",), age_min=40, age_max=69, disease_terms=(("II",),)),
    Criteria(
        material_type=("PLASMA", "SERUM"),
        collection_types=("COHORT", "POPULATION_BASED"),
        age_max=60,
    ),
    Criteria(sex=("MALE",), data_categories=("GENOMIC_DATA",), disease_terms=(("IX", "E11"),)),
    Criteria(disease_terms=((),)),
]


@pytest.mark.parametrize("number", range(len(CRITERIA)))
@pytest.mark.parametrize("facets", [FACETS, ("age", "sex"), ()], ids=["all", "two", "none"])
def test_answers_match_the_reference_evaluator(
    generated: Generated, number: int, facets: tuple[str, ...]
) -> None:
    criteria = CRITERIA[number]
    first = generated.biobanks[number % len(generated.biobanks)]
    for variant in (criteria, dataclasses.replace(criteria, biobank_id=(first,))):
        for segments in ({}, SEGMENTS):
            answer = generated.backend.answer(variant, facets=facets, segments=segments)
            expected = reference(generated.rows, variant, facets, segments)
            assert comparable(answer) == expected


@pytest.mark.parametrize("number", range(len(CRITERIA)))
def test_grouping_by_ordinal_or_stored_key_answers_alike(generated: Generated, number: int) -> None:
    """The snapshot's stored donor keys are unique here: counting groups donors by them.
    Grouping by the ordinal (the path of a snapshot without them) gives the same answer."""
    criteria = CRITERIA[number]
    expected = reference(generated.rows, criteria, FACETS, SEGMENTS)
    with generated.backend._reading() as (snapshot, _, _):
        assert snapshot.donor_keys  # the generated network's ordinals are far below 2^26
    statements = [
        summary_sql(TABLE, criteria, FACETS, list(SEGMENTS.values()), holds=Holds(keyed))[0]
        for keyed in (True, False)
    ]
    assert "GROUP BY bb, donor_key" in statements[0] and "donor_key" not in statements[1]
    cache = generated.backend.answers
    try:
        for keyed in (True, False):
            generated.backend.answers = AnswerCache(0)
            with generated.backend._reading() as (snapshot, _, _):
                snapshot.donor_keys = keyed
            answer = generated.backend.answer(criteria, facets=FACETS, segments=SEGMENTS)
            assert comparable(answer) == expected, keyed
    finally:
        with generated.backend._reading() as (snapshot, _, _):
            snapshot.donor_keys = True
        generated.backend.answers = cache


def _unkeyed(cell: Cell) -> Cell:
    return dataclasses.replace(cell, donor_fp=0)


@pytest.mark.parametrize("number", range(len(CRITERIA)))
def test_without_fingerprints_the_counts_are_the_same(generated: Generated, number: int) -> None:
    """An asker whose figures carry no noise skips the key sums: same counts, no keys."""
    criteria = CRITERIA[number]
    answer = generated.backend.answer(
        criteria, facets=FACETS, segments=SEGMENTS, fingerprints=False
    )
    expected = reference(generated.rows, criteria, FACETS, SEGMENTS)
    assert answer.by_biobank == {bb: _unkeyed(c) for bb, c in expected["by_biobank"].items()}
    assert answer.segments == {
        bb: {name: _unkeyed(c) for name, c in split.items()}
        for bb, split in expected["segments"].items()
    }
    assert comparable(answer)["facets"] == [
        dataclasses.replace(c, donor_fp=0) for c in expected["facets"]
    ]


def _answer_from(db: Any, criteria: Criteria, *, donor_tables: bool) -> dict[str, Any]:
    """The statement's rows, per biobank and per facet cell, as the reference gives them."""
    facets = [f for f in FACETS if f not in ("biobank", "country")]
    sql, params = summary_sql(TABLE, criteria, facets, [], holds=Holds(donor_tables=donor_tables))
    by_biobank, cells = {}, []
    for facet, biobank, key, donors, samples, key_sum in db.execute(sql, params).fetchall():
        if facet is None:
            by_biobank[biobank] = Cell(donors, samples, key_sum)
        else:
            cells.append(
                FacetCell(facet, FACET[facet].bucket_key(key), biobank, donors, samples, key_sum)
            )
    return {
        "by_biobank": by_biobank,
        "facets": sorted(cells, key=lambda c: (c.facet, c.key, c.biobank_id)),
    }


def test_the_unfiltered_question_is_counted_from_the_donor_tables(generated: Generated) -> None:
    """The landing page reads the snapshot's per-donor tables: the same figures and keys."""
    with generated.backend._reading() as (snapshot, _, _):
        assert snapshot.donor_tables
    expected = reference(generated.rows, Criteria(), FACETS, {})
    for fingerprints in (True, False):
        answer = comparable(
            generated.backend.answer(Criteria(), facets=FACETS, fingerprints=fingerprints)
        )
        if fingerprints:
            assert answer == expected
        else:
            assert answer["by_biobank"] == {
                bb: _unkeyed(c) for bb, c in expected["by_biobank"].items()
            }
            assert answer["facets"] == [
                dataclasses.replace(c, donor_fp=0) for c in expected["facets"]
            ]
    # Only the unfiltered question without segments reads them.
    facets = [f for f in FACETS if f not in ("biobank", "country")]
    tables = Holds(donor_tables=True)
    assert donor_table(TABLE) in summary_sql(TABLE, Criteria(), facets, [], holds=tables)[0]
    for criteria, segments in ((CRITERIA[1], []), (Criteria(), list(SEGMENTS.values()))):
        sql, _ = summary_sql(TABLE, criteria, facets, segments, holds=Holds(donor_tables=True))
        assert donor_table(TABLE) not in sql


# The segments of SEGMENTS that read only what a consent outcome reads.
CONSENT_SEGMENTS = {
    name: segment
    for name, segment in SEGMENTS.items()
    if read_columns(segment) <= set(CONSENT_COLUMNS)
}


def test_the_unfiltered_question_split_by_consent_is_counted_per_donor_and_consent(
    generated: Generated,
) -> None:
    """The landing page asked with a purpose splits the rows per donor and consent: the
    same figures and keys per segment as the rows give."""
    assert set(CONSENT_SEGMENTS) == {"gru", "unknown_consent", "not_npu", "none"}
    with generated.backend._reading() as (snapshot, _, _):
        assert snapshot.consent_table
    for asked in (CONSENT_SEGMENTS, {"gru": SEGMENTS["gru"]}):
        expected = reference(generated.rows, Criteria(), FACETS, asked)
        for fingerprints in (True, False):
            answer = generated.backend.answer(
                Criteria(), facets=FACETS, segments=asked, fingerprints=fingerprints
            )
            if fingerprints:
                assert comparable(answer) == expected
            else:
                assert answer.segments == {
                    bb: {name: _unkeyed(c) for name, c in split.items()}
                    for bb, split in expected["segments"].items()
                }
    # Only segments on consent columns, and only the unfiltered question, read the table.
    facets = [f for f in FACETS if f not in ("biobank", "country")]
    holds = Holds(donor_tables=True, consent_table=True)
    sql, _ = summary_sql(TABLE, Criteria(), facets, list(CONSENT_SEGMENTS.values()), holds=holds)
    assert consent_table(TABLE) in sql
    for criteria, segments in (
        (Criteria(), list(SEGMENTS.values())),
        (CRITERIA[1], list(CONSENT_SEGMENTS.values())),
        (Criteria(), [SEGMENTS["old_or_unknown_age"]]),
    ):
        sql, _ = summary_sql(TABLE, criteria, facets, segments, holds=holds)
        assert consent_table(TABLE) not in sql
    # A snapshot with the per-donor tables but not this one splits its rows.
    older = Holds(donor_tables=True)
    sql, _ = summary_sql(TABLE, Criteria(), facets, list(CONSENT_SEGMENTS.values()), holds=older)
    assert consent_table(TABLE) not in sql and donor_table(TABLE) not in sql


@pytest.mark.parametrize("kind", list(PurposeKind))
def test_every_purpose_outcome_reads_only_consent_columns(kind: PurposeKind) -> None:
    """So the landing page asked with any purpose takes the per-donor-and-consent path."""
    purpose = ResearchPurpose(
        kind,
        diseases=("C50",) if kind in (PurposeKind.DISEASE, PurposeKind.METHODS) else (),
        commercial=True,
        for_profit=True,
        country="JP",
        ethics_approval=True,
        genetic=True,
        on=dt.date(2026, 12, 7),
    )
    for segment in compile_purpose(purpose).outcome_filters().values():
        assert read_columns(segment) <= set(CONSENT_COLUMNS), segment


def test_a_snapshot_built_before_the_donor_tables_is_counted_row_by_row(
    generated: Generated, tmp_path: Path
) -> None:
    """A server reading a snapshot an older build wrote (no per-donor tables) counts rows."""
    with generated.backend._reading() as (snapshot, _, _):
        source = snapshot_folder(generated.backend.store) / str(snapshot.record["file"])
    older = tmp_path / "older.duckdb"
    shutil.copyfile(source, older)
    with duckdb.connect(str(older)) as db:
        tables = [donor_table(TABLE), consent_table(TABLE)]
        for name in [*tables, *(donor_table(TABLE, f) for f in PER_DONOR_FACETS)]:
            db.execute(f"DROP TABLE {name}")
    opened = Snapshot(duckdb.connect(str(older), read_only=True), {"file": older.name}, older.name)
    try:
        assert not opened.donor_tables and not opened.consent_table
        expected = reference(generated.rows, Criteria(), FACETS, {})
        rows = _answer_from(opened.db, Criteria(), donor_tables=False)
        assert rows["by_biobank"] == expected["by_biobank"]
        assert rows["facets"] == [
            c for c in expected["facets"] if c.facet not in ("biobank", "country")
        ]
    finally:
        opened.close()


def test_missing_values_load_and_stay_out_of_the_facets(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path)
    blank: dict[str, Any] = {name: None for name in ARROW_SCHEMA.names}
    rows = [
        {**blank, "biobank_id": "x", "sample_id": "s1", "donor_ord": 0, "withdrawn": False},
        {
            **blank,
            "biobank_id": "x",
            "sample_id": "s2",
            "donor_ord": 1,
            "withdrawn": False,
            "sex": "FEMALE",
            "chapters": ["II", None],
        },
    ]
    try:
        with backend.generation_writer("x") as writer:
            writer.add(rows)
            writer.publish()
        answer = backend.answer(Criteria(), facets=FACETS)
        # Two donors, told apart by their ordinals, their keys worked out from them.
        assert answer.by_biobank == {"x": Cell(2, 2, donor_key(0) + donor_key(1))}
        assert sorted((c.facet, c.key, c.donors) for c in answer.facets) == [
            ("biobank", "x", 2),
            ("chapter", "II", 1),
            ("country", "x", 2),  # per biobank: the service names the country
            ("sex", "FEMALE", 1),
        ]
    finally:
        backend.close()


def test_a_donor_with_several_consents_is_split_as_the_rows_are(tmp_path: Path) -> None:
    """Samples of one donor under different consents (a later re-consent, another study):
    the landing page with a purpose counts that donor in each segment some row is in."""
    backend = EmbeddedBackend(tmp_path)
    blank: dict[str, Any] = {name: None for name in ARROW_SCHEMA.names}
    consents = [
        (0, "GRU", []),
        (0, "HMB", ["NPU"]),  # donor 0 again: in two segments
        (0, "GRU", []),
        (1, "GRU", []),
        (2, "HMB", ["NPU"]),
        (2, None, []),  # donor 2: one sample of unrecorded consent
        (3, "GRU", []),
    ]
    rows = [
        {
            **blank,
            "biobank_id": "x",
            "sample_id": f"s{n}",
            "donor_id": f"D{ordinal}",
            "donor_ord": ordinal,
            "withdrawn": False,
            "sex": "FEMALE",
            "duo_permission": permission,
            "duo_modifiers": modifiers,
        }
        for n, (ordinal, permission, modifiers) in enumerate(consents)
    ]
    try:
        with backend.generation_writer("x") as writer:
            writer.add(rows)
            writer.publish()
        with backend._reading() as (snapshot, db, _):
            assert snapshot.consent_table
            several = db.execute(f"SELECT count(*) FROM {consent_table(TABLE)} WHERE NOT one")
            assert several.fetchone() == (4,)  # donors 0 and 2, two consents each
        answer = backend.answer(Criteria(), facets=FACETS, segments=CONSENT_SEGMENTS)
        assert comparable(answer) == reference(rows, Criteria(), FACETS, CONSENT_SEGMENTS)
        assert answer.segments["x"]["gru"] == Cell(3, 4, donor_key(0) + donor_key(1) + donor_key(3))
        assert answer.segments["x"]["not_npu"].donors == 4  # every donor has such a sample
    finally:
        backend.close()


def test_donors_whose_keys_clash_are_still_two_donors(tmp_path: Path) -> None:
    """Ordinals 2^26 apart share a key (the mix works modulo 2^26): such a snapshot counts
    donors by their ordinals, and their fingerprint still sums both keys."""
    backend = EmbeddedBackend(tmp_path)
    blank: dict[str, Any] = {name: None for name in ARROW_SCHEMA.names}
    far = 1 << KEY_BITS
    rows = [
        {**blank, "biobank_id": "x", "sample_id": f"s{n}", "donor_ord": ordinal, "withdrawn": False}
        for n, ordinal in enumerate((3, 3 + far, 3 + far))
    ]
    assert donor_key(3) == donor_key(3 + far)
    try:
        with backend.generation_writer("x") as writer:
            writer.add(rows)
            writer.publish()
        with backend._reading() as (snapshot, _, _):
            assert not snapshot.donor_keys
        answer = backend.answer(Criteria(), facets=("sex", "biobank"))
        assert answer.by_biobank == {"x": Cell(2, 3, 2 * donor_key(3))}
    finally:
        backend.close()


# --- the answer cache -----------------------------------------------------------------------


def _search(fed: Federation) -> dict[str, tuple[int | None, int | None]]:
    return per_biobank(fed.runtime.search.search(SampleQuery()))


def test_repeated_answers_come_from_the_cache_until_the_next_publish(
    federation: Federation,
) -> None:
    build_network(federation)
    backend = federation.runtime.backend
    assert isinstance(backend, EmbeddedBackend)
    assert backend.answers.size == load_settings(read_files=False, environ={}).embedded_answer_cache
    first = _search(federation)
    assert _search(federation) == first == {"alpha": (4, 6), "beta": (2, 3)}
    assert (backend.answers.hits, len(backend.answers)) == (1, 1)

    federation.biobank("beta").sample("b4", "B2", "SERUM", "2013-06-01")
    federation.sync("beta")
    assert _search(federation) == {"alpha": (4, 6), "beta": (2, 4)}
    assert backend.answers.hits == 1  # the publish emptied the cache


def test_the_cache_can_be_turned_off(tmp_path: Path) -> None:
    fed = Federation(tmp_path)
    fed.settings = fed.settings.with_overrides(embedded_answer_cache=0)
    fed.runtime = Runtime(fed.settings)
    try:
        build_network(fed)
        assert _search(fed) == _search(fed)
        backend = fed.runtime.backend
        assert isinstance(backend, EmbeddedBackend)
        assert (backend.answers.hits, len(backend.answers)) == (0, 0)
    finally:
        fed.runtime.backend.close()


def test_the_cache_keeps_the_most_recently_used_answers() -> None:
    cache = AnswerCache(2)
    answers = {key: BackendAnswer({key: Cell(1, 1)}) for key in "abc"}
    cache.put("a", answers["a"])
    cache.put("b", answers["b"])
    assert cache.get("a") is answers["a"]  # now "b" is the least recently used
    cache.put("c", answers["c"])
    assert len(cache) == 2
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (answers["a"], answers["c"])
    cache.clear()
    assert len(cache) == 0


def test_cache_size_setting_is_validated() -> None:
    settings = load_settings(read_files=False, environ={"BIOFED_EMBEDDED_ANSWER_CACHE": "16"})
    assert settings.embedded_answer_cache == 16
    with pytest.raises(SettingsError, match="embedded_answer_cache: '-1' must not be negative"):
        load_settings(read_files=False, environ={"BIOFED_EMBEDDED_ANSWER_CACHE": "-1"})
    with pytest.raises(ValueError, match="must not be negative"):
        AnswerCache(-1)
