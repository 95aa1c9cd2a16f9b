"""Launching the demo: the port checked first, the demo network made again when asked for
other parameters, its API keys with what each may do, and the local engine node it may
start (and then stops)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from federation import PROJECT_ROOT
from federation.errors import FederationError
from federation.settings import Settings, load_network

# Per engine: its script under scripts/, and the variables and default port that script
# reads (scripts/search-node for OpenSearch, scripts/es-node for Elasticsearch).
NODE_SCRIPTS: dict[str, tuple[str, str, str, int]] = {
    "opensearch": ("search-node", "BIOFED_NODE_PORT", "BIOFED_NODE_STATE", 9250),
    "elasticsearch": ("es-node", "BIOFED_ES_NODE_PORT", "BIOFED_ES_NODE_STATE", 9260),
}
KEYS_FILE = "demo-keys.yaml"
# Seconds the server gets to finish after Ctrl-C before it is killed.
SERVER_STOP_GRACE = 30

Say = Callable[[str], None]


class PortBusy(FederationError, OSError):
    """The port to serve on is taken; found before any work is done."""

    code = "PORT_BUSY"


class LocalNodeFailed(FederationError, RuntimeError):
    """The local engine node (scripts/search-node or scripts/es-node) could not be started."""

    code = "LOCAL_NODE_FAILED"


def check_port_free(host: str, port: int) -> None:
    """Raise PortBusy when `host:port` cannot be bound, as the server would find too late."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As gunicorn binds: a port left in TIME_WAIT by a stopped server is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise PortBusy(
                f"port {port} on {host} is already in use ({err.strerror}): another server "
                f"listens there. Stop it, or serve on another port, e.g. --port {port + 1}"
            ) from None


@dataclass(frozen=True)
class DemoParameters:
    """What the demo network is generated from; recorded in its network.yaml."""

    biobanks: int
    samples: int
    seed: int
    sources: str = "mixed"

    def describe(self) -> str:
        return (
            f"--biobanks {self.biobanks} --samples {self.samples} --seed {self.seed} "
            f"--sources {self.sources}"
        )


def recorded_parameters(network: Path) -> DemoParameters | None:
    """The parameters a generated network.yaml records, or None when it records none."""
    try:
        loaded = yaml.safe_load(network.read_text(encoding="utf-8")) or {}
        generated = loaded.get("generated") or {}
        return DemoParameters(
            int(generated["biobanks"]),
            int(generated["samples"]),
            int(generated["seed"]),
            str(generated["sources"]),
        )
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError):
        return None


def prepare_demo_network(out: Path, wanted: DemoParameters, *, fresh: bool, say: Say) -> bool:
    """Generate the demo network into `out` unless the one there has `wanted`'s parameters.

    True when it was (re)generated, so keys and the index follow the new biobanks.
    """
    from federation.demo.generator import generate_network

    network = out / "network.yaml"
    if network.exists() and not fresh:
        recorded = recorded_parameters(network)
        if recorded == wanted:
            say(f"using the demo network in {out} ({wanted.describe()}; --fresh makes it anew)")
            return False
        was = recorded.describe() if recorded else "unknown parameters"
        say(f"the demo network in {out} was made with {was}; making it again with:")
        say(f"  {wanted.describe()}")
    say(f"generating {wanted.biobanks} biobanks, {wanted.samples} samples into {out} ...")
    # Folders of biobanks the new network no longer has must not linger beside it.
    shutil.rmtree(out / "sources", ignore_errors=True)

    def progress(summary: Any, done: int, total: int) -> None:
        say(f"  [{done}/{total}] {summary.id}: {summary.samples:,} samples ({summary.format})")

    generate_network(
        out,
        biobanks=wanted.biobanks,
        samples=wanted.samples,
        seed=wanted.seed,
        sources=wanted.sources,
        progress=progress,
    )
    return True


@dataclass(frozen=True)
class DemoKey:
    """An API key of the demo, the `auth.api_keys` entry for it, and what it may do."""

    role: str
    key: str
    entry: dict[str, Any]

    @property
    def holder(self) -> str:
        """Who the key is, in words: which biobanks it administers or is approved at."""
        if self.entry.get("operator"):
            return "network operator: the audit log and every biobank's syncs"
        admin_of = self.entry.get("admin_of") or []
        if admin_of:
            return f"administers biobank {', '.join(admin_of)} (its syncs and quarantine)"
        approved = self.entry.get("approved_for") or []
        if approved:
            return f"researcher approved at {len(approved)} biobank(s): exact counts, records"
        return "registered researcher"


def demo_keys(out: Path, biobank_ids: Sequence[str], *, reissue: bool) -> list[DemoKey]:
    """API keys for each demo role, made once and kept beside the demo network (0600).

    They let a visitor compare what an anonymous caller, a registered researcher, an
    approved researcher, a biobank admin and an operator see for the same search.
    """
    from federation.gateway.auth import issue_api_key

    path = out / KEYS_FILE
    if path.exists() and not reissue:
        loaded: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))
        return [DemoKey(role, k["key"], k["entry"]) for role, k in loaded.items()]
    issued = {
        "registered": issue_api_key("researcher@demo.example"),
        "approved": issue_api_key("approved@demo.example", approved_for=biobank_ids),
        "admin": issue_api_key(f"admin@{biobank_ids[0]}.example", admin_of=biobank_ids[:1]),
        "network_operator": issue_api_key("operator@demo.example", operator=True),
    }
    keys = [DemoKey(role, i.key, i.entry) for role, i in issued.items()]
    stored = {k.role: {"key": k.key, "entry": k.entry} for k in keys}
    path.write_text(yaml.safe_dump(stored, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return keys


class LocalSearchNode:
    """The engine node scripts/search-node (or scripts/es-node) runs for the demo.

    It is stopped at the end only if this demo started it; one that was already running
    (another session's) is left alone, and the command to stop it is printed.
    """

    def __init__(
        self, backend: str = "opensearch", environ: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        script, self.port_variable, self.state_variable, default_port = NODE_SCRIPTS[backend]
        self.script = PROJECT_ROOT / "scripts" / script
        self.product = "Elasticsearch" if backend == "elasticsearch" else "OpenSearch"
        self.port = int(env.get(self.port_variable) or default_port)
        # A state folder other than the script's default must be named to stop the node.
        self.state_dir = env.get(self.state_variable) or ""
        self.started = False

    @property
    def stop_command(self) -> str:
        """The exact shell command that stops this node."""
        try:
            script = str(self.script.relative_to(Path.cwd()))
        except ValueError:
            script = str(self.script)
        state = f"{self.state_variable}={shlex.quote(self.state_dir)} " if self.state_dir else ""
        return f"{self.port_variable}={self.port} {state}{script} stop"

    def _run(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, self.port_variable: str(self.port)}
        return subprocess.run([str(self.script), command], env=env, capture_output=True, text=True)

    def start(self) -> str:
        """Start the node (or find it running); its URL."""
        if not self.script.exists():
            raise LocalNodeFailed(
                f"no {self.script}: the local {self.product} node is started by that script, "
                "which only a source checkout has; with an installed package, run a node "
                "yourself and set engine_urls (BIOFED_ENGINE_URLS)"
            )
        already = self._run("status").returncode == 0
        done = self._run("start")
        if done.returncode != 0:
            raise LocalNodeFailed(f"the local {self.product} node did not start:\n{done.stderr}")
        self.started = not already
        return done.stdout.strip()

    def stop(self) -> bool:
        """Stop the node if this demo started it; whether it did."""
        if not self.started:
            return False
        self._run("stop")
        self.started = False
        return True


def prepare_demo(
    settings: Settings,
    wanted: DemoParameters,
    serve_at: tuple[str, int],
    fresh: bool,
    say: Say,
) -> tuple[Settings, list[DemoKey]]:
    """Everything before the sync: the port, the demo network, its keys; settings to use."""
    # Before anything slow: a busy port would otherwise show only after the whole sync.
    check_port_free(*serve_at)
    out = Path(settings.data_dir) / "demo"
    regenerated = prepare_demo_network(out, wanted, fresh=fresh, say=say)
    network = out / "network.yaml"
    biobank_ids = [s.biobank.id for s in load_network(network).biobanks]
    keys = demo_keys(out, biobank_ids, reissue=fresh or regenerated)
    auth = dict(settings.auth)
    auth["api_keys"] = [*auth.get("api_keys", []), *(k.entry for k in keys)]
    return settings.with_overrides(network=network, auth=auth), keys


def start_local_node(settings: Settings, say: Say) -> tuple[Settings, LocalSearchNode]:
    """Start (or find) the backend's local engine node and point `settings` at it."""
    node = LocalSearchNode(settings.backend)
    say(f"starting the local {node.product} node on port {node.port} ...")
    url = node.start()
    say(f"{node.product} at {url}")
    os.environ["BIOFED_ENGINE_URLS"] = url  # for the gunicorn workers
    engine = dataclasses.replace(settings.engine, urls=(url,))
    return dataclasses.replace(settings, engine=engine), node


def forget_biobanks_not_in(settings: Settings, say: Say) -> None:
    """Unpublish biobanks of an earlier demo network that the current one does not have."""
    from federation.runtime import Runtime
    from federation.search.warm import record_publish

    runtime = Runtime(settings)
    biobank_ids = {s.biobank.id for s in runtime.network().biobanks}
    try:
        for stale in sorted(set(runtime.backend.published()) - biobank_ids):
            runtime.backend.remove_biobank(stale)
            record_publish(runtime.backend, runtime.store.publications)
            say(f"removed {stale} (not in this demo network) from the index")
    finally:
        runtime.backend.close()


def announce(keys: Sequence[DemoKey], node: LocalSearchNode | None, say: Say) -> None:
    """Print the demo's keys with what each may do, and what becomes of the local node."""
    say("demo API keys (send as `Authorization: Bearer KEY`; the web UI has a sign-in field):")
    for issued in keys:
        say(f"  {issued.role:<17} {issued.key}  {issued.holder}")
    say("a sync worker runs beside the server: Start sync in /admin runs within seconds")
    if node is not None and not node.started:
        say(f"the {node.product} node was already running; it stays up: {node.stop_command}")
    elif node is not None:
        say(f"the local {node.product} node stops with the demo (Ctrl-C)")


def serve_until_stopped(args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the server as a child until it exits, Ctrl-C or SIGTERM; its exit status.

    The demo keeps running beside the server (instead of becoming it) only when it has
    something to clean up afterwards: the local node it started.
    """
    server = subprocess.Popen(list(args), env=dict(env))

    def forward(signum: int, _frame: FrameType | None) -> None:
        server.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        try:
            return server.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the server too (one process group); let it finish its requests.
            try:
                return server.wait(timeout=SERVER_STOP_GRACE)
            except subprocess.TimeoutExpired:
                server.kill()
                return server.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


# How often the demo's sync worker looks for requested syncs: a click on "Start sync" shows
# a running, then a finished run within seconds, not at the next 30 s poll.
DEMO_WORKER_POLL_SECONDS = 2.0
WORKER_STOP_GRACE = 30


@dataclass
class Beside:
    """What the demo runs beside the server and stops with it: the local search node it
    started, and a sync worker so that a requested sync runs."""

    node: LocalSearchNode | None = None
    worker: bool = False

    @property
    def needed(self) -> bool:
        """Whether anything runs beside the server (else the server replaces this process)."""
        return self.worker or (self.node is not None and self.node.started)


def start_sync_worker(env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """`biofed worker` with the server's settings (the same environment), polling often."""
    command = [sys.executable, "-m", "federation.cli", "worker"]
    return subprocess.Popen([*command, "--poll", str(DEMO_WORKER_POLL_SECONDS)], env=dict(env))


def stop_sync_worker(worker: subprocess.Popen[bytes]) -> None:
    """Stop the worker as Ctrl-C would (it lets its running syncs end), then for good."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=WORKER_STOP_GRACE)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
