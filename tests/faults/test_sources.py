"""Broken exports: an empty or shrunk source fails its run unless confirmed, and a truncated
last line is quarantined with its reason, never indexed with empty fields."""

from __future__ import annotations

from pathlib import Path

from federation.sync.state import FAILED, SUCCEEDED
from tests.faults.harness import FaultNetwork


def test_an_empty_samples_export_fails_the_run_and_the_biobank_keeps_serving(
    tmp_path: Path,
) -> None:
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b"))
    assert network.sync().returncode == 0
    before = network.content()
    samples = network.banks["bb-a"].folder / "samples.csv"
    samples.write_bytes(b"")  # a 0-byte export

    done = network.sync()

    assert done.returncode == 1
    assert "bb-b: succeeded" in done.stdout
    assert "bb-a: FAILED" in done.stderr
    assert "would delete 12 of its 12 indexed samples (every one" in done.stderr
    assert "--allow-shrink" in done.stderr
    failed = network.runs("bb-a")[-1]
    assert failed.outcome == FAILED and failed.generation is None
    assert "shrank" in (failed.error or "")
    # Nothing was published: searches and the quarantine are as before the bad export.
    assert network.content() == before


def test_a_source_shrunk_past_the_limit_needs_confirmation(tmp_path: Path) -> None:
    network = FaultNetwork(tmp_path)
    assert network.sync().returncode == 0
    bank = network.banks["bb-a"]
    for sample_id in [s for s in bank.samples if s.startswith("bb-a-S")][:7]:
        del bank.samples[sample_id]  # 7 of 12 indexed samples go: 58% > 50%
    network.write()

    refused = network.sync()
    assert refused.returncode == 1
    assert "would delete 7 of its 12 indexed samples (58%; at most 50%" in refused.stderr
    assert network.content()["counts"]["bb-a"] == (6, 12)

    confirmed = network.cli("sync", "--biobank", "bb-a", "--no-progress", "--allow-shrink")
    assert confirmed.returncode == 0, confirmed.stderr
    assert network.content()["counts"]["bb-a"] == (3, 5)
    assert [r.outcome for r in network.runs("bb-a")] == [SUCCEEDED, FAILED, SUCCEEDED]
    assert network.runs("bb-a")[-1].deleted == 7


def test_a_shrink_within_the_limit_publishes(tmp_path: Path) -> None:
    network = FaultNetwork(tmp_path)
    assert network.sync().returncode == 0
    del network.banks["bb-a"].samples["bb-a-S0-0"]
    network.write()
    done = network.sync()
    assert done.returncode == 0, done.stderr
    assert network.content()["counts"]["bb-a"] == (6, 11)


def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    network = FaultNetwork(tmp_path)
    assert network.sync().returncode == 0
    del network.banks["bb-a"].samples["bb-a-S0-0"]
    network.write()
    done = network.sync(BIOFED_SYNC_MAX_SHRINK="0.05")  # 1 of 12 is 8%
    assert done.returncode == 1
    assert "(8%; at most 5% may go" in done.stderr


def test_a_truncated_last_line_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    network = FaultNetwork(tmp_path)
    samples = network.banks["bb-a"].folder / "samples.csv"
    text = samples.read_text(encoding="utf-8").rstrip("\n")
    # The export was cut at a field boundary: the last line ends after its donor_id.
    cut = text[: text.rindex("\n") + 1] + "bb-a-S9-9,C1,bb-a-D0"
    samples.write_text(cut, encoding="utf-8")

    done = network.sync()

    assert done.returncode == 0, done.stderr
    rows = network.content()["rows"]
    assert "bb-a-S9-9" not in {sample for _, sample, _, _ in rows}
    with network.runtime() as runtime:
        quarantined = {q.source_id: q for q in runtime.state.quarantine("bb-a")}
    record = quarantined["bb-a-S9-9"]
    assert record.field == "row"
    assert record.reason.startswith("fewer cells than columns: no cell for material_type, ")
    assert "(a truncated line?)" in record.reason
    assert record.position == "samples.csv line 14"
