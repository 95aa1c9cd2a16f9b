"""Shared fixtures: a runtime over a temporary data folder and network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.runtime import Runtime
from federation.settings import Settings, load_settings
from federation.sync.run import sync_biobank
from federation.sync.state import SyncRun
from tests.support.network import TabularBiobank, write_network


def make_settings(root: Path, network: Path | None = None) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(root / "data"),
            "network": str(network or root / "network.yaml"),
        },
        read_files=False,
        environ={},
    )


class Federation:
    """A network of tabular biobanks in a temp folder, with a runtime to sync and search."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.biobanks: dict[str, TabularBiobank] = {}
        self.settings = make_settings(root)
        self.runtime = Runtime(self.settings)

    def biobank(self, biobank_id: str, country: str = "JP") -> TabularBiobank:
        if biobank_id not in self.biobanks:
            self.biobanks[biobank_id] = TabularBiobank(self.root, biobank_id, country)
        return self.biobanks[biobank_id]

    def write(self) -> Path:
        return write_network(self.root, self.biobanks.values())

    def sync(self, biobank_id: str) -> SyncRun:
        self.write()
        source = self.runtime.network().get(biobank_id)
        return sync_biobank(
            source, self.runtime.backend, self.runtime.state, locks_dir=self.settings.locks_dir
        )


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path)
    yield fed
    fed.runtime.backend.close()
