"""Network files whose biobanks are pulled over HTTP from loopback servers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from federation.runtime import Runtime
from federation.search.query import PageRequest, SampleQuery
from federation.sync.run import RunRequest, sync_biobank
from federation.sync.state import SyncRun
from tests.conftest import make_settings
from tests.support.network import OPEN_DISCLOSURE

# Tests must not wait: a retried request pauses about this long.
FAST_RETRIES = {"retries": 2, "backoff": 0.01, "max_backoff": 0.05, "read_timeout": 10}


def entry(biobank_id: str, connector: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": biobank_id,
        "name": f"Biobank {biobank_id}",
        "country": "DE",
        "connector": {"type": connector, "options": dict(options)},
    }


class HttpNetwork:
    """A network file in `root` and a runtime over `root/data` to sync and search it."""

    def __init__(self, root: Path, entries: Iterable[Mapping[str, Any]] = ()) -> None:
        self.root = root
        self.entries = [dict(e) for e in entries]
        self.path = root / "network.yaml"
        self.write()
        self.settings = make_settings(root, self.path)
        self.runtime = Runtime(self.settings)

    def write(self) -> Path:
        document = {"default_disclosure": OPEN_DISCLOSURE, "biobanks": self.entries}
        self.path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return self.path

    def sync(self, biobank_id: str, mode: str = "auto") -> SyncRun:
        source = self.runtime.network().get(biobank_id)
        return sync_biobank(
            source,
            self.runtime.backend,
            self.runtime.state,
            locks_dir=self.settings.locks_dir,
            request=RunRequest(mode),
        )

    def counts(self, **query: Any) -> dict[str, tuple[int | None, int | None]]:
        result = self.runtime.search.search(SampleQuery.parse(query), facets=())
        return {b.biobank_id: (b.donors.value, b.samples.value) for b in result.by_biobank}

    def sample_ids(self, biobank_id: str | None = None) -> list[str]:
        ids: list[str] = []
        after = None
        while True:
            page = self.runtime.search.search(
                SampleQuery(), facets=(), page=PageRequest(100, after)
            )
            assert page.records is not None
            ids += [
                str(r["sample_id"])
                for r in page.records.records
                if biobank_id is None or r["biobank_id"] == biobank_id
            ]
            if not page.records.has_next_page:
                return ids
            after = page.records.end_cursor

    def quarantine(self, biobank_id: str) -> dict[str, tuple[str | None, str]]:
        return {
            q.source_id or q.position or "": (q.field, q.reason)
            for q in self.runtime.state.quarantine(biobank_id, limit=1000)
        }

    def close(self) -> None:
        self.runtime.backend.close()
