"""The demo network generator: determinism, sizes, realism, dirty rows, the folder contract.

Validity is judged by the independent oracle in `tests/support/source_truth.py`, never by
the project's own validation, so a bug shared by both cannot hide here.
"""

from __future__ import annotations

import collections
import csv
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.demo import dirty
from federation.demo.generator import (
    MIN_SAMPLES_PER_BIOBANK,
    XLSX_MAX_SAMPLES,
    NetworkSummary,
    generate_network,
)
from tests.support.source_truth import SourceTruth, diagnosis, read_tables, vocabulary

BIOBANKS, SAMPLES, SEED = 9, 24_000, 11


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> tuple[NetworkSummary, Path]:
    out = tmp_path_factory.mktemp("demo")
    return generate_network(out, biobanks=BIOBANKS, samples=SAMPLES, seed=SEED), out


@pytest.fixture(scope="module")
def truth(network: tuple[NetworkSummary, Path]) -> SourceTruth:
    return SourceTruth(network[1])


@pytest.fixture(scope="module")
def entries(network: tuple[NetworkSummary, Path]) -> list[dict[str, Any]]:
    loaded = yaml.safe_load((network[1] / "network.yaml").read_text(encoding="utf-8"))
    return list(loaded["biobanks"])


@pytest.fixture(scope="module")
def tables(
    network: tuple[NetworkSummary, Path], entries: list[dict[str, Any]]
) -> dict[str, dict[str, list[dict[str, str]]]]:
    """Every biobank's rows by canonical field, read through its network.yaml mapping."""
    return {
        e["id"]: {
            stream: [record for _, record in rows]
            for stream, rows in read_tables(network[1], e["connector"]["options"]).items()
        }
        for e in entries
    }


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- determinism ------------------------------------------------------------------------


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    first = generate_network(tmp_path / "a", biobanks=7, samples=3_000, seed=5)
    second = generate_network(tmp_path / "b", biobanks=7, samples=3_000, seed=5)
    assert first.biobanks == second.biobanks
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert a == b
    assert any(name.endswith(".xlsx") for name in a)


def test_xlsx_carries_no_clock_time(tmp_path: Path) -> None:
    generate_network(tmp_path, biobanks=7, samples=3_000, seed=5)
    workbooks = list(tmp_path.rglob("*.xlsx"))
    assert workbooks
    for workbook in workbooks:
        with zipfile.ZipFile(workbook) as archive:
            assert {info.date_time for info in archive.infolist()} == {(2026, 9, 30, 0, 0, 0)}
            core = archive.read("docProps/core.xml").decode()
        assert "2026-09-30T00:00:00Z" in core


def test_another_seed_writes_another_network(tmp_path: Path) -> None:
    generate_network(tmp_path / "a", biobanks=4, samples=2_000, seed=1)
    generate_network(tmp_path / "b", biobanks=4, samples=2_000, seed=2)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    samples = [name for name in a if "samples." in name]
    assert samples and all(a[n] != b.get(n) for n in samples)


# --- sizes ------------------------------------------------------------------------------


def test_n_counts_every_sample_row_written(
    network: tuple[NetworkSummary, Path], tables: dict[str, dict[str, list[dict[str, str]]]]
) -> None:
    summary, _ = network
    assert summary.samples == SAMPLES
    assert sum(len(t["samples"]) for t in tables.values()) == SAMPLES
    for biobank in summary.biobanks:
        assert len(tables[biobank.id]["samples"]) == biobank.samples >= MIN_SAMPLES_PER_BIOBANK
        assert len(tables[biobank.id]["donors"]) == biobank.donors


def test_biobank_sizes_are_skewed(network: tuple[NetworkSummary, Path]) -> None:
    sizes = sorted(b.samples for b in network[0].biobanks)
    assert sizes[-1] > 4 * sizes[0]


def test_too_few_samples_for_the_biobanks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 100"):
        generate_network(tmp_path, biobanks=5, samples=99, seed=1)


def test_the_smallest_network_still_has_every_dirty_kind(tmp_path: Path) -> None:
    summary = generate_network(tmp_path, biobanks=6, samples=6 * MIN_SAMPLES_PER_BIOBANK, seed=3)
    truth = SourceTruth(tmp_path)
    counts = truth.counts()
    for biobank in summary.biobanks:
        kinds = {*truth.rejected(biobank.id).values(), *truth.partial(biobank.id).values()}
        assert set(dirty.DIRTY_KINDS) <= kinds, biobank.id
        assert counts[biobank.id] == (biobank.searchable_donors, biobank.searchable_samples)


# --- dirty rows -------------------------------------------------------------------------


def test_every_dirty_kind_is_present_in_every_biobank(
    network: tuple[NetworkSummary, Path], truth: SourceTruth
) -> None:
    for biobank in network[0].biobanks:
        rejected = collections.Counter(truth.rejected(biobank.id).values())
        partial = collections.Counter(truth.partial(biobank.id).values())
        found = rejected + partial
        assert {k: found[k] for k in dirty.DIRTY_KINDS} == biobank.dirty, biobank.id
        assert all(found[k] >= 1 for k in dirty.DIRTY_KINDS), biobank.id
        # Nothing is rejected or kept in part for a reason the generator did not mean.
        assert set(rejected) <= {*dirty.DIRTY_KINDS, dirty.DONOR_REJECTED}, biobank.id
        assert set(partial) == set(dirty.PARTIAL_KINDS), biobank.id
        assert sum(rejected.values()) - rejected[dirty.UNKNOWN_SEX] == biobank.rejected_samples
        assert sum(partial.values()) == biobank.partial_samples


def test_dirty_rows_are_a_small_share(network: tuple[NetworkSummary, Path]) -> None:
    for biobank in network[0].biobanks:
        floor = len(dirty.DIRTY_KINDS)
        assert floor <= biobank.dirty_rows <= max(floor, round(biobank.samples * 0.005)) + 1


def test_summary_counts_match_the_oracle(
    network: tuple[NetworkSummary, Path], truth: SourceTruth
) -> None:
    counts = truth.counts()
    for biobank in network[0].biobanks:
        assert counts[biobank.id] == (biobank.searchable_donors, biobank.searchable_samples)
        assert len(truth.withdrawn(biobank.id)) == biobank.withdrawn_donors


def test_withdrawn_donors_are_present(
    network: tuple[NetworkSummary, Path], tables: dict[str, dict[str, list[dict[str, str]]]]
) -> None:
    for biobank in network[0].biobanks:
        donors = tables[biobank.id]["donors"]
        withdrawn = [d for d in donors if d["consent_withdrawn"] == "true"]
        assert withdrawn, biobank.id
        assert len(withdrawn) <= max(1, 0.035 * len(donors)), biobank.id
        assert {d["consent_withdrawn"] for d in donors} == {"true", "false"}


# --- realism ----------------------------------------------------------------------------


def _valid_donors(
    tables: dict[str, dict[str, list[dict[str, str]]]],
) -> list[tuple[str, dict[str, str], set[str]]]:
    """(biobank, donor, categories of its diagnoses) for donors with a known sex code."""
    out = []
    for biobank_id, streams in tables.items():
        for donor in streams["donors"]:
            if donor["sex"] in vocabulary("sex"):
                codes = {diagnosis(d) for d in donor["diagnoses"].split(";") if d}
                out.append((biobank_id, donor, {c[:3] for c in codes if c}))
    return out


def test_diagnoses_are_sex_consistent(tables: dict[str, dict[str, list[dict[str, str]]]]) -> None:
    donors = _valid_donors(tables)
    assert not [d for _, d, c in donors if d["sex"] == "FEMALE" and "C61" in c]
    assert not [d for _, d, c in donors if d["sex"] == "MALE" and c & {"C53", "C56"}]
    breast = collections.Counter(d["sex"] for _, d, c in donors if "C50" in c)
    assert breast["FEMALE"] > 50
    assert breast["FEMALE"] / sum(breast.values()) >= 0.95


def test_kinds_differ_in_diseases_materials_and_ages(
    network: tuple[NetworkSummary, Path], tables: dict[str, dict[str, list[dict[str, str]]]]
) -> None:
    by_kind: dict[str, dict[str, collections.Counter[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(collections.Counter)
    )
    ages: dict[str, list[int]] = collections.defaultdict(list)
    for biobank in network[0].biobanks:
        for sample in tables[biobank.id]["samples"]:
            by_kind[biobank.kind]["material"][sample["material_type"]] += 1
            ages[biobank.kind].append(int(sample["age_at_collection"]))
        for donor in tables[biobank.id]["donors"]:
            for code in filter(None, donor["diagnoses"].split(";")):
                by_kind[biobank.kind]["disease"][(diagnosis(code) or "?")[:3]] += 1
            by_kind[biobank.kind]["orpha"][donor["orpha"]] += 1
    population, hospital, disease = (by_kind[k] for k in ("population", "hospital", "disease"))
    assert {"I10", "E11", "E78", "J45"} <= set(population["disease"])
    assert not any(code.startswith("C") for code in population["disease"])
    assert {"C50", "C34", "C18", "C61"} <= set(hospital["disease"])
    assert {"TISSUE_FROZEN", "TISSUE_PARAFFIN_EMBEDDED"} <= set(hospital["material"])
    assert "TISSUE_FROZEN" not in population["material"]
    assert {"DNA", "CELL_LINES", "PERIPHERAL_BLOOD_CELLS"} <= set(disease["material"])
    assert any(o.startswith("ORPHA:") for o in disease["orpha"])
    assert not any(population["orpha"].keys() - {""})
    median = {k: sorted(v)[len(v) // 2] for k, v in ages.items()}
    assert median["hospital"] > median["population"] > median["disease"]


def test_donors_give_several_samples(
    network: tuple[NetworkSummary, Path], tables: dict[str, dict[str, list[dict[str, str]]]]
) -> None:
    for biobank in network[0].biobanks:
        per_donor = collections.Counter(s["donor_id"] for s in tables[biobank.id]["samples"])
        materials: dict[str, set[str]] = collections.defaultdict(set)
        for sample in tables[biobank.id]["samples"]:
            materials[sample["donor_id"]].add(sample["material_type"])
        mean = sum(per_donor.values()) / len(per_donor)
        low = 2.5 if biobank.kind == "population" else 1.3
        assert low < mean < 6.5, biobank.id
        assert sum(len(m) > 1 for m in materials.values()) > len(materials) / 3, biobank.id


def test_age_follows_birth_year_and_date(
    tables: dict[str, dict[str, list[dict[str, str]]]], truth: SourceTruth
) -> None:
    checked = 0
    for biobank_id, streams in tables.items():
        born = {d["id"]: int(d["birth_year"]) for d in streams["donors"]}
        rejected = truth.rejected(biobank_id)
        for sample in streams["samples"]:
            if sample["id"] in rejected:
                continue
            years = int(sample["collection_date"][:4]) - born[sample["donor_id"]]
            assert int(sample["age_at_collection"]) in (years - 1, years), sample
            assert sample["collection_date"] < "2026-10-01"
            assert sample["last_updated"][:10] >= sample["collection_date"]
            checked += 1
    assert checked > SAMPLES * 0.9


def test_icd10_spellings_vary_and_stay_valid(
    tables: dict[str, dict[str, list[dict[str, str]]]], truth: SourceTruth
) -> None:
    spellings: collections.Counter[str] = collections.Counter()
    for biobank_id, streams in tables.items():
        rejected = truth.rejected(biobank_id)
        for donor in streams["donors"]:
            if donor["id"] in rejected:
                continue
            for code in filter(None, donor["diagnoses"].split(";")):
                assert diagnosis(code), code
                if code.upper().startswith("ICD10:"):
                    spellings["prefixed"] += 1
                elif "." in code:
                    spellings["dotted"] += 1
                elif len(code) > 3:
                    spellings["compact"] += 1
    assert spellings["dotted"] > spellings["compact"] > 0
    assert spellings["prefixed"] > 0


def test_ids_are_unique_and_pseudonymous(
    tables: dict[str, dict[str, list[dict[str, str]]]],
) -> None:
    for streams in tables.values():
        samples = [s["id"] for s in streams["samples"]]
        donors = [d["id"] for d in streams["donors"]]
        assert len(set(samples)) == len(samples)
        assert len(set(donors)) == len(donors)
        assert not set(samples) & set(donors)


# --- the folder contract ----------------------------------------------------------------


def test_network_yaml_describes_every_export(
    network: tuple[NetworkSummary, Path], entries: list[dict[str, Any]]
) -> None:
    summary, root = network
    text = (root / "network.yaml").read_text(encoding="utf-8")
    assert text.startswith("# ")
    assert f"biofed demo-data --biobanks {BIOBANKS} --samples {SAMPLES} --seed {SEED}" in text
    loaded = yaml.safe_load(text)
    assert loaded["generated"] == {
        "biobanks": BIOBANKS,
        "samples": SAMPLES,
        "seed": SEED,
        "sources": "tables",
    }
    assert summary.network_path == root / "network.yaml"
    assert [e["id"] for e in entries] == [b.id for b in summary.biobanks]
    assert len({e["id"] for e in entries}) == BIOBANKS
    for entry in entries:
        assert entry["id"] == entry["id"].lower() and " " not in entry["id"]
        assert entry["kind"] in ("population", "hospital", "disease")
        assert entry["country"].isupper() and len(entry["country"]) == 2
        assert entry["contact_email"].endswith(".example.org")
        assert entry["access"]["url"].startswith("https://") and entry["access"]["conditions_ja"]
        if entry["country"] == "JP":
            assert entry.get("name_ja")
        options = entry["connector"]["options"]
        assert entry["connector"]["type"] == "tabular"
        assert options["list_separator"] == ";"
        location = root / options["path"]
        assert location.exists()
        if options["format"] == "xlsx":
            assert location == root / "sources" / entry["id"] / "export.xlsx"
        else:
            for stream, name in options["files"].items():
                path = location / name
                assert path.name == f"{stream}.{options['format']}"
                delimiter = "\t" if options["format"] == "tsv" else ","
                with path.open(encoding="utf-8", newline="") as handle:
                    header = next(csv.reader(handle, delimiter=delimiter))
                assert header == list(options["columns"][stream].values())


def test_all_formats_appear(network: tuple[NetworkSummary, Path]) -> None:
    formats = collections.Counter(b.format for b in network[0].biobanks)
    assert set(formats) == {"csv", "tsv", "xlsx"}
    assert all(b.samples <= XLSX_MAX_SAMPLES for b in network[0].biobanks if b.format == "xlsx")


def test_flavours_need_their_column_mapping(entries: list[dict[str, Any]]) -> None:
    headers = {e["connector"]["options"]["columns"]["samples"]["material_type"] for e in entries}
    assert len(headers) >= 3
    recoded = [e for e in entries if e["connector"]["options"].get("values")]
    assert any(
        e["connector"]["options"]["values"]["sex"] == {"F": "FEMALE", "M": "MALE", "U": "UNKNOWN"}
        for e in recoded
    )


def test_canonical_values_after_mapping(
    tables: dict[str, dict[str, list[dict[str, str]]]], truth: SourceTruth
) -> None:
    for biobank_id, streams in tables.items():
        rejected = truth.rejected(biobank_id)
        for collection in streams["collections"]:
            assert set(collection["types"].split(";")) <= vocabulary("collection_types")
        for sample in streams["samples"]:
            if sample["id"] in rejected:
                continue
            assert sample["storage_temperature"].upper() in vocabulary("storage_temperatures")
            assert sample["availability"] in ("available", "limited", "unavailable")
            assert set(sample["data_categories"].split(";")) <= vocabulary("data_categories")
            assert sample["last_updated"][10] == "T" and sample["last_updated"][-6] in "+-"
