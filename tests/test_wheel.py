"""The package works installed from a wheel: its contracts and defaults travel inside it.

Builds the wheel from a copy of the package sources alone (no checkout beside it),
installs it with its dependencies into a fresh venv, and runs `biofed sync` and
`biofed search` on a tiny tabular network from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from federation import PROJECT_ROOT
from tests.support.network import TabularBiobank, write_network

pytestmark = pytest.mark.slow

# Only what a wheel is built from: no schema/, config/, scripts/ or tests/ beside it.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "federation", "connectors")
INSTALL_TIMEOUT_S = 600


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_an_installed_wheel_syncs_and_searches_a_tiny_network(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (PROJECT_ROOT / name).is_dir():
            skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(PROJECT_ROOT / name, source / name, ignore=skip)
        else:
            shutil.copy2(PROJECT_ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIOFED_", "PYTHON"))}
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        tmp_path,
        env,
    )
    wheels = list(dist.glob("biobank_federation-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheels[0])], tmp_path, env)
    where = _run(
        [str(python), "-c", "import federation; print(federation.__file__)"], tmp_path, env
    )
    assert Path(where.strip()).is_relative_to(venv), where

    network_dir = tmp_path / "network"
    bb = TabularBiobank(network_dir, "bb1")
    bb.donor("D1", "FEMALE", 1970, diagnoses="C50.9")
    bb.donor("D2", "MALE", 1950, diagnoses="C61")
    bb.sample("S1", "D1", "PLASMA").sample("S2", "D1", "DNA").sample("S3", "D2", "SERUM")
    network = write_network(network_dir, [bb])
    biofed = [str(venv / "bin" / "biofed"), "--data-dir", str(tmp_path / "data")]
    biofed += ["--network", str(network)]
    synced = _run([*biofed, "sync", "--all", "--no-progress"], tmp_path, env)
    assert "bb1: succeeded" in synced and "indexed 3" in synced, synced
    answer = json.loads(
        _run([*biofed, "search", "--disease", "C50", "--sex", "female"], tmp_path, env)
    )
    assert answer == {"donors": 1, "samples": 2, "byBiobank": {"bb1": {"donors": 1, "samples": 2}}}
