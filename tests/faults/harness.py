"""A small network of tabular biobanks synced by real `biofed sync` processes, which a test
may kill at a named fault point (`federation.faults`), on the embedded store or an engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from federation import PROJECT_ROOT
from federation.faults import KILL_VARIABLE
from federation.runtime import Runtime
from federation.search.query import PageRequest, SampleQuery
from federation.settings import Settings
from federation.sync.state import SyncRun
from tests.conftest import make_settings
from tests.engine.node import (
    OPENSEARCH,
    RunningNode,
    drop_prefix,
    engine_settings,
    unique_prefix,
)
from tests.support.network import TabularBiobank, write_network
from tests.support.server import free_port, running

# Killed by SIGKILL: what the parent sees as the child's return code.
KILLED = -9


def biobank(root: Path, biobank_id: str, donors: int = 6, per_donor: int = 2) -> TabularBiobank:
    """A biobank with `donors` donors of `per_donor` samples each and one bad sample row."""
    bank = TabularBiobank(root, biobank_id)
    for d in range(donors):
        bank.donor(f"{biobank_id}-D{d}", sex="MALE" if d % 2 else "FEMALE")
        for s in range(per_donor):
            bank.sample(f"{biobank_id}-S{d}-{s}", f"{biobank_id}-D{d}", date=f"2020-0{s + 1}-01")
    # Rejected every run (no such donor): the quarantine has a row to keep or lose.
    bank.sample(f"{biobank_id}-orphan", "no-such-donor")
    return bank


class FaultNetwork:
    """Biobanks in `root`, their data in `root/data`, on the embedded store or an engine."""

    def __init__(
        self, root: Path, biobank_ids: tuple[str, ...] = ("bb-a",), engine_url: str | None = None
    ) -> None:
        self.root = root
        self.banks = {b: biobank(root, b) for b in biobank_ids}
        self.path = write_network(root, self.banks.values())
        base = make_settings(root, self.path)
        self.engine_url = engine_url
        self.tmp_dir = root / "tmp"
        self.prefix = unique_prefix() if engine_url else None
        self.settings: Settings = (
            engine_settings(base, RunningNode(OPENSEARCH, engine_url), self.prefix)
            if engine_url and self.prefix
            else base
        )

    def write(self) -> None:
        self.path = write_network(self.root, self.banks.values())

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIOFED_")}
        # A temporary folder of its own: spool leftovers are this network's alone.
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(self.tmp_dir)
        env["BIOFED_DATA_DIR"] = str(self.settings.data_dir)
        env["BIOFED_NETWORK"] = str(self.path)
        if self.engine_url and self.prefix:
            env |= {
                "BIOFED_BACKEND": "opensearch",
                "BIOFED_ENGINE_URLS": self.engine_url,
                "BIOFED_ENGINE_INDEX_PREFIX": self.prefix,
                "BIOFED_ENGINE_BULK_RETRIES": "2",
                "BIOFED_ENGINE_SEARCH_TIMEOUT": "5",
            }
        return env | extra

    def cli(
        self, *args: str, kill_at: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `biofed ARGS` in its own process, SIGKILLed at `kill_at` when given."""
        extra = dict(env or {})
        if kill_at:
            extra[KILL_VARIABLE] = kill_at
        return subprocess.run(
            [sys.executable, "-m", "federation.cli", *args],
            cwd=PROJECT_ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def sync(self, *biobank_ids: str, kill_at: str | None = None, **env: str) -> Any:
        ids = biobank_ids or tuple(self.banks)
        args = [arg for b in ids for arg in ("--biobank", b)]
        return self.cli("sync", *args, "--no-progress", kill_at=kill_at, env=env)

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        """A fresh runtime over the data (what a server started now would see)."""
        runtime = Runtime(self.settings)
        try:
            yield runtime
        finally:
            if "backend" in runtime.__dict__:
                runtime.backend.close()

    def runs(self, biobank_id: str) -> list[SyncRun]:
        """The biobank's runs, oldest first."""
        with self.runtime() as runtime:
            return list(reversed(runtime.state.runs(biobank_id)))

    def content(self) -> dict[str, Any]:
        """What searches see and admins see: rows per biobank, and each quarantine."""
        with self.runtime() as runtime:
            rows: list[tuple[str, str, str, str]] = []
            after = None
            while True:
                result = runtime.search.search(
                    SampleQuery(), facets=(), page=PageRequest(100, after)
                )
                assert result.records is not None
                rows += [
                    (
                        str(r["biobank_id"]),
                        str(r["sample_id"]),
                        str(r["donor_id"]),
                        str(r["collection_date"]),
                    )
                    for r in result.records.records
                ]
                if not result.records.has_next_page:
                    break
                after = result.records.end_cursor
            quarantine = {
                b: sorted(
                    (q.source_id or "", q.field or "", q.reason)
                    for q in runtime.state.quarantine(b, limit=1000)
                )
                for b in self.banks
            }
            counts = {b.biobank_id: (b.donors.value, b.samples.value) for b in result.by_biobank}
        return {"rows": sorted(rows), "quarantine": quarantine, "counts": counts}

    def close(self) -> None:
        if self.engine_url and self.prefix:
            drop_prefix(self.engine_url, self.prefix)


SEARCH = """
query($q: SampleQuery!) {
  search(query: $q) {
    samples { value }
    byBiobank { biobank { id } donors { value } samples { value } }
  }
}"""


def post_search(url: str, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A GraphQL search against a served gateway; the decoded body, whatever the status."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": SEARCH, "variables": {"q": dict(query or {})}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as err:
        body = json.loads(err.read() or b"{}")
    return body


def probe(url: str) -> tuple[int, dict[str, Any]]:
    """`/readyz`: its status and body."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextmanager
def served(network: FaultNetwork, log: Path) -> Iterator[str]:
    """The gateway under gunicorn over the network's data; its base URL."""
    port = free_port()
    env = network.env(BIOFED_HOST="127.0.0.1", BIOFED_PORT=str(port), BIOFED_WORKERS="2")
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    with running(command, env, port, log) as url:
        yield url
