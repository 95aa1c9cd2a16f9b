"""Full syncs: quarantine, idempotence, deletions, atomic publish, concurrency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from federation import PROJECT_ROOT
from federation.search.query import PageRequest, SampleQuery
from federation.sync.locks import SyncAlreadyRunning, biobank_lock
from federation.sync.run import SyncFailed
from tests.conftest import Federation


def counts(fed: Federation, **query: object) -> dict[str, tuple[int | None, int | None]]:
    result = fed.runtime.search.search(SampleQuery.parse(query), facets=())
    return {b.biobank_id: (b.donors.value, b.samples.value) for b in result.by_biobank}


def all_records(fed: Federation) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    after = None
    while True:
        page = fed.runtime.search.search(SampleQuery(), facets=(), page=PageRequest(100, after))
        assert page.records is not None
        records.extend(page.records.records)
        if not page.records.has_next_page:
            return records
        after = page.records.end_cursor


def small_biobank(fed: Federation, biobank_id: str = "bb1") -> None:
    bb = fed.biobank(biobank_id)
    bb.donor("D1", "FEMALE", 1970, diagnoses="C50.9")
    bb.donor("D2", "MALE", 1950, diagnoses="C61")
    bb.sample("S1", "D1", "PLASMA").sample("S2", "D1", "DNA").sample("S3", "D2", "SERUM")


def test_each_kind_of_bad_row_is_quarantined_with_its_reason(federation: Federation) -> None:
    bb = federation.biobank("bb1")
    bb.donor("D1").donor("D2", sex="ALIEN").donor("D3", diagnoses="C50.99")
    bb.donor("", sex="FEMALE")
    bb.sample("S1", "D1")
    bb.sample("S2", "D1", material="BLOOD_SPOT")
    bb.sample("S3", "D1", diagnoses="F3181")
    bb.sample("S4", "D1", date="2019-13-45")
    bb.sample("S5", "D1", material="")
    bb.sample("S6", "D2")
    bb.sample("S7", "D404")
    bb.sample("S8", "D1", collection_id="C404")
    bb.sample("S9", "D3")
    bb.samples["S10"] = {
        "id": "S1",
        "collection_id": "C1",
        "donor_id": "D1",
        "material_type": "DNA",
    }
    run = federation.sync("bb1")

    # D3 and S3 lose their one non-WHO code and are kept; S9 (of D3) is indexed with them.
    assert (run.outcome, run.indexed, run.rejected, run.partial) == ("succeeded", 3, 9, 2)
    reasons = {
        (q.stream, q.source_id or q.position): (q.field, q.value, q.reason)
        for q in federation.runtime.state.quarantine("bb1")
    }
    assert reasons[("donors", "D2")] == (
        "sex",
        "ALIEN",
        "sex: 'ALIEN' is not in the sex vocabulary"
        "; allowed: FEMALE, MALE, NASK, NAV, UNDIFFERENTIAL, UNKNOWN",
    )
    assert reasons[("donors", "D3")][:2] == ("diagnoses[0]", "C50.99")
    assert "WHO ICD-10 has C50.9" in reasons[("donors", "D3")][2]
    assert reasons[("donors", "D3")][2].endswith("(the record is kept without it)")
    assert reasons[("donors", "donors.csv line 5")][0] == "id"
    assert reasons[("samples", "S2")][:2] == ("material_type", "BLOOD_SPOT")
    assert reasons[("samples", "S3")][:2] == ("diagnoses[0]", "F3181")
    assert reasons[("samples", "S3")][2].endswith("(the record is kept without it)")
    assert reasons[("samples", "S4")] == (
        "collection_date",
        "2019-13-45",
        "collection_date: Not a valid date.",
    )
    assert reasons[("samples", "S5")][2] == "material_type: Missing data for required field."
    assert reasons[("samples", "S6")] == (
        "donor_id",
        "D2",
        "donor was rejected: sex: 'ALIEN' is not in the sex vocabulary"
        "; allowed: FEMALE, MALE, NASK, NAV, UNDIFFERENTIAL, UNKNOWN",
    )
    assert reasons[("samples", "S7")] == ("donor_id", "D404", "no such donor at the source")
    assert reasons[("samples", "S8")] == ("collection_id", "C404", "no such collection")
    assert ("samples", "S9") not in reasons  # its donor D3 is kept
    assert sorted(federation.runtime.state.quarantine("bb1"), key=lambda q: q.kept)[-1].kept
    assert "duplicate id 'S1'" in reasons[("samples", "S1")][2]
    payload = next(q for q in federation.runtime.state.quarantine("bb1") if q.source_id == "S2")
    assert '"material_type": "BLOOD_SPOT"' in payload.payload
    assert payload.position == "samples.csv line 3"


def test_fixed_rows_leave_the_quarantine(federation: Federation) -> None:
    small_biobank(federation)
    federation.biobank("bb1").sample("S9", "D1", material="BLOOD_SPOT")
    assert federation.sync("bb1").rejected == 1
    federation.biobank("bb1").samples["S9"]["material_type"] = "SERUM"
    run = federation.sync("bb1")
    assert (run.rejected, run.indexed) == (0, 4)
    assert federation.runtime.state.quarantine("bb1") == []


def test_withdrawn_donors_are_never_indexed(federation: Federation) -> None:
    small_biobank(federation)
    federation.biobank("bb1").donor("D3", consent_withdrawn="true").sample("S4", "D3")
    run = federation.sync("bb1")
    assert run.withdrawn == 1
    assert counts(federation) == {"bb1": (2, 3)}
    assert "S4" not in {r["sample_id"] for r in all_records(federation)}


def test_running_twice_gives_the_same_index(federation: Federation) -> None:
    small_biobank(federation)
    first = federation.sync("bb1")
    before = (counts(federation), all_records(federation))
    second = federation.sync("bb1")
    assert second.generation != first.generation
    assert (second.indexed, second.deleted) == (first.indexed, 0)
    assert (counts(federation), all_records(federation)) == before


def test_rows_deleted_or_changed_at_the_source_follow_after_the_next_sync(
    federation: Federation,
) -> None:
    small_biobank(federation)
    federation.sync("bb1")
    bb = federation.biobank("bb1")
    del bb.samples["S3"]
    del bb.donors["D2"]
    bb.samples["S2"]["material_type"] = "SERUM"
    run = federation.sync("bb1")
    assert (run.deleted, run.indexed) == (1, 2)
    assert counts(federation) == {"bb1": (1, 2)}
    assert counts(federation, materials=["SERUM"]) == {"bb1": (1, 1)}
    assert counts(federation, diseases=["C61"]) == {}


def test_a_failing_source_fails_only_its_run(federation: Federation) -> None:
    small_biobank(federation, "bb1")
    small_biobank(federation, "bb2")
    federation.sync("bb1")
    federation.sync("bb2")
    (federation.biobank("bb2").folder / "samples.csv").unlink()
    source = federation.runtime.network().get("bb2")
    from federation.sync.run import sync_biobank

    with pytest.raises(SyncFailed) as err:
        sync_biobank(
            source,
            federation.runtime.backend,
            federation.runtime.state,
            locks_dir=federation.settings.locks_dir,
        )
    assert "samples.csv does not exist" in str(err.value)
    assert err.value.run.outcome == "failed"
    assert counts(federation) == {"bb1": (2, 3), "bb2": (2, 3)}


def test_one_sync_per_biobank_at_a_time(federation: Federation) -> None:
    small_biobank(federation)
    federation.write()
    with biobank_lock(federation.settings.locks_dir, "bb1"), pytest.raises(SyncAlreadyRunning):
        federation.sync("bb1")


def _slow_network(fed: Federation, samples: int, pause_after: int) -> Path:
    bb = fed.biobank("big")
    for n in range(samples // 2):
        bb.donor(f"D{n}", "FEMALE" if n % 2 else "MALE", 1940 + n % 50, diagnoses="C50.9")
        bb.sample(f"S{n}a", f"D{n}", "PLASMA").sample(f"S{n}b", f"D{n}", "DNA")
    fed.write()
    marker = fed.root / "paused"
    slow = fed.root / "slow-network.yaml"
    entry = bb.network_entry()
    entry["connector"] = {
        "type": "tests.support.slow_connector:SlowTabularConnector",
        "options": {"path": "sources/big", "pause_after": pause_after, "marker": str(marker)},
    }
    slow.write_text(yaml.safe_dump({"biobanks": [entry]}))  # only the sync process reads it
    return slow


def _sync_process(fed: Federation, network: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "federation.cli",
            "--data-dir",
            str(fed.settings.data_dir),
            "--network",
            str(network),
            "sync",
            "--biobank",
            "big",
            "--no-progress",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            _, errors = process.communicate()
            raise AssertionError(errors.decode() if errors else f"exited {process.returncode}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_sync_killed_mid_way_leaves_the_previous_generation_serving(
    federation: Federation,
) -> None:
    slow = _slow_network(federation, 400, pause_after=150)
    federation.sync("big")  # generation 1, through the ordinary connector
    before = counts(federation)
    published = federation.runtime.backend.published()["big"]
    federation.biobank("big").samples.pop("S0a")  # the next generation would differ
    federation.write()

    process = _sync_process(federation, slow)
    _wait_for(federation.root / "paused", process)
    tmp_files = list((federation.settings.index_dir / "tmp").glob("big--*.parquet"))
    assert tmp_files, "the new generation is being written"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()

    assert counts(federation) == before == {"big": (200, 400)}
    assert federation.runtime.backend.published()["big"] == published
    assert federation.runtime.state.runs("big")[0].outcome == "running"

    run = federation.sync("big")  # recovery: the next run cleans up and publishes
    assert run.outcome == "succeeded"
    assert federation.runtime.state.runs("big")[1].outcome == "interrupted"
    assert list((federation.settings.index_dir / "tmp").iterdir()) == []
    assert counts(federation) == {"big": (200, 399)}


def test_searches_from_other_processes_see_whole_generations_while_a_sync_runs(
    federation: Federation,
) -> None:
    slow = _slow_network(federation, 2000, pause_after=10**9)
    federation.sync("big")
    federation.biobank("big").samples.pop("S0a")
    federation.write()
    # Readers search in a loop from their own processes: they say when they have answered
    # once (so the sync starts while they run) and stop a few searches after being told.
    search_script = (
        "import sys, json, time, pathlib\n"
        "from federation.runtime import Runtime\n"
        "from federation.settings import load_settings\n"
        "from federation.search.query import SampleQuery\n"
        "data, network, ready, stop = sys.argv[1:5]\n"
        "rt = Runtime(load_settings(overrides={'data_dir': data, 'network': network},\n"
        "                           read_files=False, environ={}))\n"
        "seen, after_stop = set(), 0\n"
        "deadline = time.monotonic() + 120\n"
        "while after_stop < 5 and time.monotonic() < deadline:\n"
        "    r = rt.search.search(SampleQuery(diseases=('C50',)), facets=())\n"
        "    seen.add((r.donors.value, r.samples.value))\n"
        "    pathlib.Path(ready).touch()\n"
        "    after_stop += pathlib.Path(stop).exists()\n"
        "print(json.dumps(sorted(seen)))\n"
    )
    stop = federation.root / "stop-reading"
    ready = [federation.root / f"reader-{n}-ready" for n in range(2)]
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                search_script,
                str(federation.settings.data_dir),
                str(federation.root / "network.yaml"),
                str(marker),
                str(stop),
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
        )
        for marker in ready
    ]
    for marker, reader in zip(ready, readers, strict=True):
        _wait_for(marker, reader)
    writer = _sync_process(federation, slow)
    _, errors = writer.communicate(timeout=120)
    assert writer.returncode == 0, errors.decode()
    stop.touch()
    outputs = [reader.communicate(timeout=120)[0] for reader in readers]
    assert all(r.returncode == 0 for r in readers)
    for out in outputs:
        seen = {tuple(x) for x in json.loads(out)}
        # Every answer is one whole generation: the old one or the new one, and both
        # were seen, since the readers ran from before the sync until after it.
        assert seen == {(1000, 2000), (1000, 1999)}, seen
    assert counts(federation) == {"big": (1000, 1999)}
