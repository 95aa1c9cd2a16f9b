"""What the data folder holds about donors and researchers is readable by its owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from federation.disclosure.roles import Identity
from federation.runtime import Runtime
from federation.search.query import SampleQuery
from tests.conftest import make_settings
from tests.privacy.attack_network import build


def test_stores_and_index_files_are_private(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path, build(tmp_path)))
    try:
        researcher = Identity("r@example.org", authenticated=True, via="api_key")
        runtime.search.search(SampleQuery.parse({"diseases": ["E11"]}), identity=researcher)
    finally:
        runtime.backend.close()
    data = tmp_path / "data"
    # The audit log and the privacy ledger are in the state store (state.db), which the
    # search above wrote to; no other database file is left in the data folder.
    assert sorted(p.name for p in data.glob("*.db")) == ["state.db"]
    files = [runtime.settings.state_path]
    index = runtime.settings.index_dir
    files += [p for p in index.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert len(files) > 2
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in [index, *(p for p in index.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, folder
