"""`biofed sync` SIGKILLed at every named fault point, on the embedded store and an engine.

For each point: what serves right after the kill is one whole generation (the old one, or
the new one with its own quarantine), the run history tells what happened (no run stays
`running`, a run killed after its publish is a success with its generation), and the next
sync's content equals that of a clean sync of the same sources.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.faults import KILL_POINTS
from federation.search.engine.writer import SPOOL_PREFIX
from federation.sync.state import FAILED, INTERRUPTED, RUNNING, SUCCEEDED
from tests.faults.harness import KILLED, FaultNetwork

pytest_plugins = ["tests.engine.fixtures"]

# Points reached before the new generation serves, and after.
BEFORE_PUBLISH = ("after_start", "after_pull", "before_publish")
BACKENDS = ("embedded", "engine")


def change_source(network: FaultNetwork) -> None:
    """A second export: one donor more, one sample gone, one more rejected row."""
    bank = network.banks["bb-a"]
    bank.donor("bb-a-D9").sample("bb-a-S9-0", "bb-a-D9", date="2021-03-01")
    del bank.samples["bb-a-S0-1"]
    bank.sample("bb-a-orphan-2", "another-missing-donor")
    network.write()


def clean_content(root: Path, engine_url: str | None) -> dict[str, object]:
    """The content of one uninterrupted sync of the changed sources, in its own folder."""
    clean = FaultNetwork(root, engine_url=engine_url)
    try:
        change_source(clean)
        done = clean.sync()
        assert done.returncode == 0, done.stderr
        return clean.content()
    finally:
        clean.close()


def spools(network: FaultNetwork) -> list[Path]:
    return list(network.tmp_dir.glob(f"{SPOOL_PREFIX}*"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_sync_killed_at_each_point_recovers_and_its_run_tells_the_truth(
    tmp_path: Path, point: str, backend: str, request: pytest.FixtureRequest
) -> None:
    engine_url = request.getfixturevalue("engine_url") if backend == "engine" else None
    network = FaultNetwork(tmp_path / "killed", engine_url=engine_url)
    try:
        first = network.sync()
        assert first.returncode == 0, first.stderr
        before = network.content()
        change_source(network)

        killed = network.sync(kill_at=point)
        assert killed.returncode == KILLED, (killed.stdout, killed.stderr)
        if backend == "engine" and point in ("after_pull", "before_publish"):
            assert spools(network)  # the killed run's spool is left behind...

        # Read time: `biofed runs` settles the dead run; nothing stays running.
        shown = network.cli("runs", "--biobank", "bb-a")
        assert shown.returncode == 0, shown.stderr
        assert f" {RUNNING} " not in shown.stdout
        runs = network.runs("bb-a")
        assert [r.outcome for r in runs] == [
            SUCCEEDED,
            INTERRUPTED if point in BEFORE_PUBLISH else SUCCEEDED,
        ]
        after_kill = network.content()
        expected = clean_content(tmp_path / "clean", engine_url)
        with network.runtime() as runtime:
            serving = runtime.backend.published()["bb-a"].generation
        if point in BEFORE_PUBLISH:
            # Nothing of the killed run is visible: the old generation and its quarantine.
            assert after_kill == before
            assert runs[1].generation is None
            assert "nothing it did was published" in (runs[1].error or "")
        else:
            # Published before it died: a success with its generation, and the quarantine
            # is the published generation's.
            assert runs[1].generation == serving
            assert after_kill == expected
            assert runs[1].indexed == 12 and runs[1].rejected == 2
            if point == "after_publish":
                assert "then the sync process" in (runs[1].error or "")

        again = network.sync()
        assert again.returncode == 0, again.stderr  # no lock left behind blocks it
        assert network.content() == expected
        history = network.runs("bb-a")
        assert [r.outcome for r in history][2:] == [SUCCEEDED]
        assert FAILED not in [r.outcome for r in history]
        with network.runtime() as runtime:
            assert history[-1].generation == runtime.backend.published()["bb-a"].generation
        if backend == "engine":
            # ...and removed when the next sync started.
            assert not spools(network)
        else:
            folder = network.settings.index_dir / "generations" / "bb-a"
            live = {p.stem for p in folder.glob("*.parquet")}
            assert history[-1].generation in live
            assert len(live) <= 2  # the serving generation and the one it replaced
            assert not list((network.settings.index_dir / "tmp").glob("*"))
    finally:
        network.close()
