"""A source that suddenly reads empty: the run fails unless the admin confirms it."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.sync.run import SyncFailed
from tests.conftest import Federation
from tests.connectors.sources import BEACON_MAPPING, beacon_fixtures
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import BeaconApp, serving
from tests.sync.test_sync import small_biobank
from tests.test_cli import run


def test_an_emptied_export_fails_and_the_previous_data_keeps_serving(
    federation: Federation,
) -> None:
    small_biobank(federation)
    biobank = federation.biobank("bb1")
    first = federation.sync("bb1")
    assert first.read > 0
    biobank.collections.clear()
    biobank.donors.clear()
    biobank.samples.clear()  # the tables keep their header rows only
    with pytest.raises(SyncFailed) as failure:
        federation.sync("bb1")
    assert failure.value.run.outcome == "failed"
    assert f"read 0 records where the last successful full run (#{first.id}" in str(
        failure.value.run.error
    )
    assert "--allow-empty" in str(failure.value.run.error)
    published = federation.runtime.backend.published()["bb1"]
    assert published.generation == first.generation  # the previous generation serves on

    # The admin confirms: through the CLI flag...
    result = run(federation, "sync", "--biobank", "bb1", "--no-progress", "--allow-empty")
    assert result.exit_code == 0, result.output
    assert "bb1: succeeded (full)" in result.output and "read 0" in result.output
    # ...after which an empty source is what the last success read: no confirmation needed.
    assert federation.sync("bb1").outcome == "succeeded"


def test_the_confirmation_can_live_in_the_network_file(federation: Federation) -> None:
    small_biobank(federation)
    biobank = federation.biobank("bb1")
    federation.sync("bb1")
    biobank.donors.clear()
    biobank.samples.clear()
    biobank.collections.clear()
    path = federation.write()
    path.write_text(
        path.read_text("utf-8").replace("  connector:", "  allow_empty: true\n  connector:"),
        encoding="utf-8",
    )
    source = federation.runtime.network().get("bb1")
    assert source.allow_empty
    from federation.sync.run import sync_biobank

    run_ = sync_biobank(
        source,
        federation.runtime.backend,
        federation.runtime.state,
        locks_dir=federation.settings.locks_dir,
    )
    assert (run_.outcome, run_.read, run_.indexed) == ("succeeded", 0, 0)


def test_an_emptied_network_source_fails_and_is_read_again_by_the_next_run(
    tmp_path: Path,
) -> None:
    datasets, individuals, biosamples = beacon_fixtures()
    datasets[0]["dataUseConditions"]["duoDataUse"] = [{"id": "DUO:0000042"}]
    app = BeaconApp(datasets, individuals, biosamples)
    with serving(app) as server:
        options = {"base_url": f"{server.url}/api", **BEACON_MAPPING, **FAST_RETRIES}
        network = HttpNetwork(tmp_path, [entry("bb", "beacon", options)])
        assert network.sync("bb").read == 41
        full = dict(app.data)
        app.data = {name: [] for name in full}
        with pytest.raises(SyncFailed, match="read 0 records where the last successful"):
            network.sync("bb")
        assert network.counts() == {"bb": (20, 20)}
        # The source is back: the next run reads it again rather than resuming the empty pass.
        app.data = full
        again = network.sync("bb")
        assert (again.outcome, again.read) == ("succeeded", 41)
        assert network.counts() == {"bb": (20, 20)}
    network.close()


def test_a_bad_allow_empty_value_names_the_field(tmp_path: Path) -> None:
    from federation.settings import SettingsError, load_network

    path = tmp_path / "network.yaml"
    bad = entry("bb", "tabular", {"path": "x"})
    bad["allow_empty"] = "perhaps"
    HttpNetwork(tmp_path, [bad]).close()
    with pytest.raises(SettingsError, match=r"biobanks\[0\]\.allow_empty: 'perhaps'"):
        load_network(path)


def test_a_quote_left_open_in_an_export_fails_instead_of_hiding_rows(
    federation: Federation,
) -> None:
    small_biobank(federation)
    federation.write()
    samples = federation.biobank("bb1").folder / "samples.csv"
    lines = samples.read_text("utf-8").splitlines()
    # An open quote in the row of S1 swallows S2 and S3 into one cell unless read strictly.
    lines[1] = lines[1].replace("PLASMA", '"PLASMA', 1)
    samples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = federation.runtime.network().get("bb1")
    from federation.sync.run import sync_biobank

    with pytest.raises(SyncFailed, match=r"samples\.csv line \d+: .*a quote left open"):
        sync_biobank(
            source,
            federation.runtime.backend,
            federation.runtime.state,
            locks_dir=federation.settings.locks_dir,
        )
