"""Full disks: a small tmpfs filled up for real where this machine lets a test mount one,
and ENOSPC injected at one write (between a generation file and the manifest) that no
filler can hit on cue."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.faults import ENOSPC_VARIABLE
from federation.sync.state import FAILED, SUCCEEDED
from tests.faults.harness import FaultNetwork, probe, served

DISK_MB = 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB tmpfs, or a skip saying why one cannot be mounted here (not root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk is full; the filler."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 16)
    # Unbuffered: a buffered writer keeps the tail of a partly written chunk and raises
    # ENOSPC again when it is closed, depending on how much room was left.
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def test_a_full_data_disk_fails_the_run_with_the_reason_and_readyz_says_so(
    tmp_path: Path, small_disk: Path
) -> None:
    network = FaultNetwork(tmp_path)
    network.settings = network.settings.with_overrides(data_dir=str(small_disk / "data"))
    assert network.sync().returncode == 0
    before = network.content()
    network.banks["bb-a"].donor("bb-a-D9").sample("bb-a-S9-0", "bb-a-D9")
    network.write()
    with served(network, tmp_path / "gunicorn.log") as url:
        assert probe(url)[0] == 200
        filler = fill(small_disk)

        status, ready = probe(url)
        assert status == 503
        assert f"the audit log's folder {small_disk / 'data'} takes no writes" in ready["reason"]
        assert "No space left on device" in ready["reason"]

        failed = network.sync()
        assert failed.returncode == 1
        assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
        assert "bb-a: FAILED" in failed.stderr
        run = network.runs("bb-a")[-1]
        assert run.outcome == FAILED
        assert "No space left on device" in (run.error or "") or "full" in (run.error or "")
        assert str(small_disk / "data") in (run.error or "")  # the error names the path

        filler.unlink()
        assert probe(url)[0] == 200
        assert network.content() == before  # the previous generation served throughout
        again = network.sync()
        assert again.returncode == 0, again.stderr
    assert [r.outcome for r in network.runs("bb-a")] == [SUCCEEDED, FAILED, SUCCEEDED]
    assert network.content()["counts"]["bb-a"] == (7, 13)


def test_a_disk_full_at_the_manifest_leaves_no_stray_file_and_keeps_the_serving_one(
    tmp_path: Path,
) -> None:
    network = FaultNetwork(tmp_path)
    index = network.settings.index_dir
    folder = index / "generations" / "bb-a"
    assert network.sync().returncode == 0
    serving = json.loads((index / "manifest.json").read_text())["biobanks"]["bb-a"]["generation"]
    network.banks["bb-a"].donor("bb-a-D9").sample("bb-a-S9-0", "bb-a-D9")
    network.write()

    failed = network.sync(**{ENOSPC_VARIABLE: "manifest"})

    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    run = network.runs("bb-a")[-1]
    assert run.outcome == FAILED and run.generation is None
    assert "No space left on device" in (run.error or "")
    assert f"{index}/.manifest.json." in (run.error or "")  # names the file
    # Nothing stays behind to keep the disk full: no manifest temp, no unserved generation.
    assert not list(index.glob(".manifest.json.*"))
    assert {p.stem for p in folder.glob("*.parquet")} == {serving}
    assert not list((index / "tmp").glob("*"))

    assert network.sync().returncode == 0
    assert network.sync().returncode == 0
    manifest = json.loads((index / "manifest.json").read_text())["biobanks"]["bb-a"]
    # Cleanup keeps what the manifest names: the serving generation and the one it replaced.
    assert {p.stem for p in folder.glob("*.parquet")} == {
        manifest["generation"],
        manifest["previous"],
    }
    assert [r.outcome for r in network.runs("bb-a")] == [SUCCEEDED, FAILED, SUCCEEDED, SUCCEEDED]
