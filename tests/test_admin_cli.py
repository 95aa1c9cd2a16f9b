"""Admin side: sync --all past invalid entries, country codes, quarantine output, unknown
ids, and the documentation's network example and option reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from federation import PROJECT_ROOT
from federation.settings import SettingsError, load_network
from federation.sync.option_reference import BEGIN_MARKER, END_MARKER, option_reference
from federation.sync.registry import installed
from tests.conftest import Federation
from tests.sync.test_sync import small_biobank
from tests.test_cli import invoke, run

DOCS = PROJECT_ROOT / "docs" / "connectors.md"


def test_sync_all_syncs_every_valid_biobank_and_reports_the_invalid_ones(
    federation: Federation,
) -> None:
    small_biobank(federation, "bb1")
    small_biobank(federation, "bb2")
    path = federation.write()
    document = yaml.safe_load(path.read_text("utf-8"))
    document["biobanks"][0]["country"] = "UK"
    document["biobanks"].append({"id": "bb3", "name": "No connector", "country": "DE"})
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    result = run(federation, "sync", "--all", "--no-progress")
    assert result.exit_code == 1
    assert "bb1: INVALID:" in result.output
    assert "'UK' is not ISO 3166-1 alpha-2: ISO 3166 says GB" in result.output
    assert "bb3: INVALID:" in result.output and "connector.type is missing" in result.output
    assert "bb2: succeeded (full)" in result.output
    # Asked for by id, an invalid biobank is a usage error naming the problem.
    by_id = run(federation, "sync", "--biobank", "bb1", "--no-progress")
    assert by_id.exit_code == 2 and "biobank 'bb1' is invalid" in by_id.output


@pytest.mark.parametrize(
    ("country", "message"),
    [
        ("UK", r"country: 'UK' is not ISO 3166-1 alpha-2: ISO 3166 says GB for the United"),
        ("EL", r"ISO 3166 says GR for Greece"),
        ("XX", r"'XX' is not ISO 3166-1 alpha-2 \(a country code such as DE, JP\)"),
        ("gb", r"'gb' is not ISO 3166-1 alpha-2"),
    ],
)
def test_countries_are_iso_3166_alpha_2(tmp_path: Path, country: str, message: str) -> None:
    path = tmp_path / "network.yaml"
    entry = {"id": "b", "name": "B", "country": country, "connector": {"type": "tabular"}}
    path.write_text(yaml.safe_dump({"biobanks": [entry]}), encoding="utf-8")
    with pytest.raises(SettingsError, match=message):
        load_network(path)
    entry["country"] = "GB"
    path.write_text(yaml.safe_dump({"biobanks": [entry]}), encoding="utf-8")
    assert load_network(path).biobanks[0].biobank.country == "GB"


def test_quarantine_shows_field_value_reason_and_how_many_of_how_many(
    federation: Federation,
) -> None:
    small_biobank(federation)
    bb = federation.biobank("bb1")
    for n in range(5):
        bb.sample(f"X{n}", "D1", material="BLOOD_SPOT")
    bb.donor("D3", "FEMALE", 1980, diagnoses="C50.9;F3181")
    federation.write()
    invoke(federation, "sync", "--all", "--no-progress")
    result = run(federation, "quarantine", "--biobank", "bb1", "--limit", "3")
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if line.startswith("samples X")]
    assert len(lines) == 2  # donors sort first: D3, then X0, X1
    assert "| field material_type, value 'BLOOD_SPOT'" in lines[0]
    kept = next(line for line in result.output.splitlines() if line.startswith("donors D3"))
    assert "field diagnoses[1], value 'F3181' (record kept without it)" in kept
    assert "showing 3 of 6 quarantined record(s)" in result.output


@pytest.mark.parametrize("command", ["runs", "quarantine"])
def test_an_unknown_biobank_id_is_an_error_naming_the_known_ones(
    federation: Federation, command: str
) -> None:
    small_biobank(federation, "bb1")
    small_biobank(federation, "bb2")
    federation.write()
    invoke(federation, "sync", "--biobank", "bb1", "--no-progress")
    result = run(federation, command, "--biobank", "bb9")
    assert result.exit_code == 2
    assert "no biobank 'bb9' (known: bb1, bb2)" in result.output
    assert run(federation, command, "--biobank", "bb2").exit_code == 0  # known, never synced


def test_the_option_reference_in_the_docs_is_generated_from_the_schemas() -> None:
    text = DOCS.read_text("utf-8")
    block = text[text.index(BEGIN_MARKER) + len(BEGIN_MARKER) : text.index(END_MARKER)]
    assert block.strip() == option_reference(installed()).strip(), (
        "docs/connectors.md's option reference is stale: run `biofed connectors options --write`"
    )
    for name, cls in installed().items():
        assert f"### `{name}`" in block
        for field in cls.config_schema().fields.values():
            assert f"| `{field.data_key or field.name}` |" in block, (name, field.name)


def test_the_network_example_in_the_docs_loads_and_every_connector_takes_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DOCS.read_text("utf-8")
    section = text[text.index("## A network file") :]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    path = tmp_path / "network.yaml"
    path.write_text(example.group(1), encoding="utf-8")
    network = load_network(path)
    assert {s.connector for s in network.biobanks} == set(installed())
    monkeypatch.setenv("DE_HOSPITAL_TOKEN", "t0ken")
    for source in network.biobanks:
        installed()[source.connector](source.biobank.id, source.options, base_dir=str(tmp_path))
