"""The benchmark runner: generate, sync, time the query mix, the gateway and a load run.

    python -m bench run --backend embedded --samples 1000000 --name embedded-1m

Phases, each written to `bench/results/<name>.json` as soon as it ends (a run cut short
keeps what it measured; `"complete": true` marks a finished one):

1. network: the demo generator's tables-only network of N sample rows, cached by its
   parameters under `bench/.cache/` (so ingest measures the pipeline, not HTTP);
2. ingest: `biofed sync --all` in a fresh data directory, as a subprocess: wall time,
   samples per second (sample rows of the network over wall time, end to end through the
   connector, validation and indexing), and the sync process's peak RSS;
3. queries: the fixed mix (`bench.queries`) through the search service and written by hand
   against the backend, interleaved, after a warm-up: p50/p95/p99 and ours/raw, with the
   embedded backend's answer cache off (as in every phase); then, on the embedded backend,
   the same questions answered from that cache (`cached`);
4. gateway: the same questions as POST /graphql through gunicorn (operator API key, rate
   limit off) against a direct call of the service; the Beacon count query (POST
   /beacon/biosamples, count granularity) against the same GraphQL search, for the
   questions a Beacon can ask; then a load run of C clients for T
   seconds, once idle and once with a sync of one biobank running alongside; and the peak
   memory of the server processes.

Issue 18's measurements (bench/serving.py) ride along: after `queries`, the mix as a
registered researcher and the Beacon count queries, each against the hand-written forms;
in `gateway`, a load run of mixed roles and the landing page right after a publish.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench.measure import machine_facts, percentiles, process_memory, process_shared_memory
from bench.queries import (
    BEACON_FILTERS,
    QUESTIONS,
    Question,
    beacon_count_body,
    dsl_searches,
    graphql_count_document,
    graphql_document,
    sql_statements,
)

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
ENGINE_URL = "http://127.0.0.1:9250"

# Targets of issue 7 (2 cores, 24 GB; medians). `size` is the size each is stated for.
TARGETS: dict[str, dict[str, Any]] = {
    "embedded": {
        "size": 1_000_000,
        "selective_p50_ms": 50,
        "landing_p50_ms": 250,
        "ingest_samples_per_s": 20_000,
    },
    "opensearch": {
        "size": 10_000_000,
        "selective_p50_ms": 100,
        "selective_p99_ms": 500,
        "ingest_samples_per_s": 10_000,
    },
}
RATIO_TARGET = 1.3
GATEWAY_OVERHEAD_TARGET_MS = 10.0
# The landing page after a publish, answered from the warm answer (issue 18).
LANDING_WARM_TARGET_MS = 20.0
# A Beacon count query costs at most this much of the same GraphQL search (issue 16).
BEACON_RATIO_TARGET = 1.10
# A search slower than this at 10M is slow, not stuck: the engine's default 3 s would fail it.
SEARCH_TIMEOUT_S = 60
# The load run stops after this many requests even if its time is not up.
MAX_LOAD_REQUESTS = 200_000


@dataclass
class Options:
    """The runner's arguments."""

    backend: str
    samples: int
    biobanks: int = 20
    seed: int = 7
    name: str = ""
    reps: int = 30
    warmup: int = 3
    load_seconds: float = 30.0
    clients: int = 4
    workers: int = 2
    engine_url: str = ENGINE_URL
    keep: bool = False
    results_dir: Path = RESULTS
    command: str = ""
    phases: tuple[str, ...] = ("ingest", "queries", "gateway")
    # Biobanks synced at once (`biofed sync --jobs`); 0: one per CPU.
    sync_jobs: int = 0
    # Who asks the query mix: `operator` (exact counts) or `registered` (noise keyed on
    # the rows' fingerprints, and each fresh figure charged to the privacy ledger).
    identity: str = "operator"
    # The gateway's port (`--port`); 0 picks a free one.
    port: int = 0


@dataclass
class Report:
    """The JSON document of one run, rewritten after every phase."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.path)


# --- measuring ----------------------------------------------------------------------------------


def timed(call: Callable[[], Any]) -> float:
    """Milliseconds one call takes."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def machine(engine_version: str | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    facts = machine_facts(
        ("duckdb", "pyarrow", "opensearch-py", "gunicorn", "graphene", "flask", "marshmallow")
    )
    if engine_version:
        facts["versions"]["engine"] = engine_version
    return {
        **facts,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return out.stdout.strip()


# --- the network and the data directory -------------------------------------------------------


def network_for(options: Options) -> Path:
    """The tables-only demo network for the options, generated once and cached."""
    folder = CACHE / f"network-n{options.samples}-b{options.biobanks}-s{options.seed}"
    if not (folder / "network.yaml").exists():
        from federation.demo.generator import generate_network

        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        generate_network(
            tmp,
            biobanks=options.biobanks,
            samples=options.samples,
            seed=options.seed,
            sources="tables",
        )
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder / "network.yaml"


def environment(options: Options, data_dir: Path, network: Path, prefix: str) -> dict[str, str]:
    """The BIOFED_* settings every process of the run shares."""
    env = {
        "BIOFED_DATA_DIR": str(data_dir),
        "BIOFED_NETWORK": str(network),
        "BIOFED_BACKEND": options.backend,
        "BIOFED_ENGINE_SEARCH_TIMEOUT": str(SEARCH_TIMEOUT_S),
        "BIOFED_SECRET_KEY": "bench-secret",
        # Every phase measures answers computed afresh: with the embedded backend's answer
        # cache on, repeating a question would time a lookup. `queries` times hits apart.
        "BIOFED_EMBEDDED_ANSWER_CACHE": "0",
    }
    if options.backend != "embedded":
        env["BIOFED_ENGINE_URLS"] = options.engine_url
        env["BIOFED_ENGINE_INDEX_PREFIX"] = prefix
    return env


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BIOFED_")}
    return {**base, **extra}


# --- ingest -------------------------------------------------------------------------------------


def sync_command(biobank: str | None = None, jobs: int = 1) -> list[str]:
    """`biofed sync` for every biobank (`jobs` at once), or for one."""
    which = ["--all", "--jobs", str(jobs)] if biobank is None else ["--biobank", biobank]
    return [sys.executable, "-m", "federation.cli", "sync", *which, "--no-progress"]


def run_measured(command: list[str], env: Mapping[str, str], log: Path) -> dict[str, Any]:
    """Run a command to its end: wall seconds, exit status and its own peak RSS."""
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=ROOT, env=_clean_env(env), stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": round(seconds, 2),
        "exit_code": process.returncode,
        # ru_maxrss in KiB: the largest of this child and the processes it waited for (a
        # sync with --jobs runs each biobank in a pool process), not their sum.
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_system_s": round(usage.ru_stime, 2),
    }


def ingest(options: Options, env: Mapping[str, str], workdir: Path) -> dict[str, Any]:
    """A full sync of the network in a fresh data directory."""
    before = loadavg()
    jobs = options.sync_jobs or os.cpu_count() or 1
    measured = run_measured(sync_command(jobs=jobs), env, workdir / "sync.log")
    if measured["exit_code"] != 0:
        tail = (workdir / "sync.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"sync failed ({measured['exit_code']}):\n{tail}")
    runtime = _runtime(env)
    indexed = sum(info.documents for info in runtime.backend.published().values())
    runs = runtime.state.runs(limit=1000)
    runtime.backend.close()
    return {
        "sample_rows": options.samples,
        "indexed_samples": indexed,
        "sync_jobs": jobs,
        **measured,
        "samples_per_s": round(options.samples / measured["wall_s"]),
        "indexed_per_s": round(indexed / measured["wall_s"]),
        # Less sensitive to a busy machine than the wall rate: the sync's own CPU time.
        "samples_per_cpu_s": round(
            options.samples / (measured["cpu_user_s"] + measured["cpu_system_s"])
        ),
        "biobank_runs": len(runs),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }


def _runtime(env: Mapping[str, str]) -> Any:
    from federation.runtime import Runtime
    from federation.settings import load_settings

    # The service's own time, against hand-written backend queries: without the audit
    # log's write, which the gateway runs measure as part of every request.
    return Runtime(load_settings(read_files=False, environ=dict(env)), audited=False)


# --- the query mix ------------------------------------------------------------------------------


class RawBackend:
    """The same questions written by hand straight against the backend."""

    def __init__(self, options: Options, runtime: Any) -> None:
        self.backend = options.backend
        if options.backend == "embedded":
            import duckdb

            from federation.search.embedded.snapshot import reader_config

            store = runtime.backend.store
            # The same table the backend searches: the published snapshot file, read-only,
            # opened as a server process opens it (its threads too: one database per file).
            snapshot = store.root / "snapshots" / store.read_manifest()["snapshot"]["file"]
            config = reader_config(runtime.settings.embedded_reader_threads)
            self.db = duckdb.connect(str(snapshot), read_only=True, config=config)
        else:
            from opensearchpy import OpenSearch

            self.client = OpenSearch(options.engine_url, timeout=SEARCH_TIMEOUT_S)
            self.alias = f"{runtime.settings.engine.index_prefix}-samples"

    def ask(self, question: Question, text_codes: tuple[str, ...], today: dt.date) -> Any:
        """Run the hand-written form; return the rows or responses."""
        if self.backend == "embedded":
            return [
                self.db.execute(sql).fetchall()
                for sql in sql_statements(question, text_codes, today)
            ]
        body: list[dict[str, Any]] = []
        for search in dsl_searches(question, text_codes, today):
            body += [{"index": self.alias}, search]
        response = self.client.msearch(body=body)
        for item in response["responses"]:
            if "error" in item:
                raise RuntimeError(f"raw search failed: {item['error']}")
        return response

    def total_samples(self, answer: Any) -> int:
        """The matching samples in a hand-written answer, over all biobanks."""
        if self.backend == "embedded":
            return sum(int(row[2]) for row in answer[0])
        aggregations = answer["responses"][0].get("aggregations")
        if not aggregations:
            return 0
        buckets = aggregations["samples"]["matching"]["biobank"]["buckets"]
        return sum(int(b["doc_count"]) for b in buckets)

    def close(self) -> None:
        if self.backend == "embedded":
            self.db.close()
        else:
            self.client.close()


def asking_identity(options: Options) -> Any:
    """The identity the query mix is asked as (`Options.identity`)."""
    from federation.disclosure.roles import Identity

    if options.identity == "registered":
        return Identity(subject="bench-researcher", authenticated=True, via="api_key")
    return operator_identity()


def operator_identity() -> Any:
    """The network operator: every biobank answers it, with exact counts where allowed."""
    from federation.disclosure.roles import Identity

    return Identity(subject="bench", authenticated=True, operator=True, via="api_key")


def clear_engine_cache(options: Options) -> None:
    """Empty the node's request cache, which would answer a repeated aggregation itself."""
    if options.backend != "embedded":
        clear_request_cache(options.engine_url)


def clear_request_cache(url: str) -> None:
    """Empty the request cache of the engine at `url` (also used by bench.engine_load)."""
    request = urllib.request.Request(f"{url}/_cache/clear?request=true", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass  # the request is the point; its body says nothing we need


def queries(options: Options, env: Mapping[str, str]) -> dict[str, Any]:
    """Each question through the service and by hand, interleaved, after a warm-up."""
    from federation.search.warm import PublishedAnswers

    runtime = _runtime(env)
    service = runtime.search
    # The mix is the backend's work: the landing page asked, not cut from the warm answer
    # the sync kept (timed apart in `landing_warm`).
    service.source = PublishedAnswers(runtime.backend, runtime.store.publications, warm=False)
    identity = asking_identity(options)
    today = dt.date.today()
    raw = RawBackend(options, runtime)
    before = loadavg()
    ours: dict[str, list[float]] = {q.name: [] for q in QUESTIONS}
    hand: dict[str, list[float]] = {q.name: [] for q in QUESTIONS}
    codes = {
        q.name: service.names.codes_for_text(q.query.text) if q.query.text else ()
        for q in QUESTIONS
    }
    purposes = {q.name: q.research_purpose(today) for q in QUESTIONS}

    def ask_ours(q: Question) -> Any:
        return service.search(q.query, identity=identity, purpose=purposes[q.name])

    checks: dict[str, Any] = {}
    for q in QUESTIONS:
        for _ in range(options.warmup):
            result = ask_ours(q)
            by_hand = raw.ask(q, codes[q.name], today)
        checks[q.name] = {
            "samples": result.samples.value,
            "donors": result.donors.value,
            "raw_samples": raw.total_samples(by_hand),
        }
    for _ in range(options.reps):
        for q in QUESTIONS:
            clear_engine_cache(options)
            ours[q.name].append(timed(partial(ask_ours, q)))
            clear_engine_cache(options)
            hand[q.name].append(timed(partial(raw.ask, q, codes[q.name], today)))
    raw.close()
    runtime.backend.close()
    out: dict[str, Any] = {
        "reps": options.reps,
        "warmup": options.warmup,
        "engine_request_cache": "cleared before every timed search"
        if options.backend != "embedded"
        else None,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "questions": {},
    }
    for q in QUESTIONS:
        mine, theirs = percentiles(ours[q.name]), percentiles(hand[q.name])
        out["questions"][q.name] = {
            "ours": mine,
            "raw": theirs,
            "ratio_p50": round(mine["p50_ms"] / theirs["p50_ms"], 2) if theirs["p50_ms"] else None,
            "answer": checks[q.name],
        }
    if options.backend == "embedded":
        out["cached"] = cached_queries(options, env)
    out["landing_warm"] = landing_warm(options, env)
    return out


def landing_warm(options: Options, env: Mapping[str, str]) -> dict[str, Any]:
    """The landing page in a fresh server process after the publish, from the warm answer
    the sync computed (federation/search/warm.py): released, charged and timed as usual."""
    from federation.search.query import SampleQuery

    runtime = _runtime(env)
    service = runtime.search
    identity = asking_identity(options)
    times = []
    first = timed(partial(service.search, SampleQuery(), identity=identity))
    for _ in range(options.warmup):
        service.search(SampleQuery(), identity=identity)
    for _ in range(options.reps):
        times.append(timed(partial(service.search, SampleQuery(), identity=identity)))
    hits = service.source.warm_hits
    runtime.backend.close()
    return {
        **percentiles(times),
        "first_ms": round(first, 1),
        # Every landing search answered from the warm answer (none asked of the backend).
        "warm_hits": hits,
        "searches": 1 + options.warmup + options.reps,
        "loadavg": loadavg(),
    }


def cached_queries(options: Options, env: Mapping[str, str]) -> dict[str, Any]:
    """Each question answered from the embedded backend's answer cache (after one miss)."""
    from federation.search.warm import PublishedAnswers

    runtime = _runtime({**env, "BIOFED_EMBEDDED_ANSWER_CACHE": str(len(QUESTIONS))})
    service = runtime.search
    # The answer cache's hits, the landing page's too (not the warm answer's).
    service.source = PublishedAnswers(runtime.backend, runtime.store.publications, warm=False)
    identity = operator_identity()
    today = dt.date.today()
    purposes = {q.name: q.research_purpose(today) for q in QUESTIONS}
    hits: dict[str, list[float]] = {q.name: [] for q in QUESTIONS}

    def ask(q: Question) -> Any:
        return service.search(q.query, identity=identity, purpose=purposes[q.name])

    for q in QUESTIONS:
        ask(q)
    for _ in range(options.reps):
        for q in QUESTIONS:
            hits[q.name].append(timed(partial(ask, q)))
    served = runtime.backend.answers.hits
    runtime.backend.close()
    return {
        "answers_from_cache": served,
        "questions": {q.name: percentiles(hits[q.name]) for q in QUESTIONS},
    }


# --- the gateway --------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    """gunicorn serving the GraphQL gateway on loopback."""

    process: subprocess.Popen[bytes]
    port: int
    key: str
    # A registered researcher's key (noised figures, the privacy ledger); "" for none.
    registered_key: str = ""

    def processes(self) -> list[int]:
        """The master and its workers."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        return pids

    def memory(self) -> dict[str, Any]:
        """Peak and current RSS of every server process (VmHWM, VmRSS)."""
        out: dict[str, Any] = {}
        for n, pid in enumerate(self.processes()):
            status = process_memory(pid)
            shared = process_shared_memory(pid)
            role = "master" if n == 0 else f"worker{n}"
            out[role] = {
                "peak_rss_mb": round(status.get("VmHWM", 0) / 1024, 1),
                "rss_mb": round(status.get("VmRSS", 0) / 1024, 1),
                # A shared snapshot's pages count once in the Pss sum, in every VmRSS.
                "pss_mb": round(shared.get("Pss", 0) / 1024, 1),
                "rss_anon_mb": round(status.get("RssAnon", 0) / 1024, 1),
                "rss_file_mb": round(status.get("RssFile", 0) / 1024, 1),
            }
        processes = list(out.values())
        out["processes"] = len(processes)
        out["peak_rss_mb_sum"] = round(sum(v["peak_rss_mb"] for v in processes), 1)
        out["rss_mb_sum"] = round(sum(v["rss_mb"] for v in processes), 1)
        out["pss_mb_sum"] = round(sum(v["pss_mb"] for v in processes), 1)
        return out


@contextmanager
def gateway(options: Options, env: Mapping[str, str], log: Path) -> Iterator[Gateway]:
    """Start gunicorn with an operator API key and no rate limit; stop it afterwards."""
    from federation.gateway.auth import issue_api_key

    issued = issue_api_key("bench-operator", operator=True)
    researcher = issue_api_key("bench-researcher")
    port = options.port or free_port()
    server_env = {
        **env,
        "BIOFED_HOST": "127.0.0.1",
        "BIOFED_PORT": str(port),
        "BIOFED_WORKERS": str(options.workers),
        "BIOFED_AUTH": json.dumps({"api_keys": [issued.entry, researcher.entry]}),
        # The request deadline as long as the engine's search timeout: a worker's first
        # search on a loaded machine must not fail the run as TIMEOUT.
        "BIOFED_LIMITS": json.dumps(
            {"rate_limit": {"enabled": False}, "timeout_seconds": SEARCH_TIMEOUT_S}
        ),
    }
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_clean_env(server_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Gateway(process, port, issued.key, researcher.key)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class GraphQLClient:
    """One keep-alive loopback connection posting GraphQL documents."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json"}
        if key:  # no key: an anonymous visitor
            self.headers["X-API-Key"] = key
        self.last_response_bytes = 0
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SEARCH_TIMEOUT_S)

    def post(self, document: str) -> dict[str, Any]:
        """POST /graphql; raise on an HTTP or GraphQL error."""
        return self.post_json("/graphql", {"query": document})

    def post_json(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON body to `path`; raise on an HTTP error or an `errors`/`error` body."""
        body = json.dumps(payload)
        for attempt in (1, 2):
            try:
                self.connection.request("POST", path, body, self.headers)
                response = self.connection.getresponse()
                payload = response.read()
                self.last_response_bytes = len(payload)
                break
            except (http.client.HTTPException, ConnectionError):
                # The server closed an idle keep-alive connection: open a new one once.
                self.connection.close()
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=SEARCH_TIMEOUT_S
                )
                if attempt == 2:
                    raise
        result: dict[str, Any] = json.loads(payload)
        if response.status != 200 or result.get("errors") or result.get("error"):
            raise RuntimeError(f"{path} {response.status}: {str(result)[:500]}")
        return result

    def close(self) -> None:
        self.connection.close()


def gateway_overhead(options: Options, env: Mapping[str, str], server: Gateway) -> dict[str, Any]:
    """Each question through POST /graphql and as a direct call of the service, interleaved."""
    runtime = _runtime(env)
    service = runtime.search
    identity = operator_identity()
    today = dt.date.today()
    client = GraphQLClient(server.port, server.key)
    purposes = {q.name: q.research_purpose(today) for q in QUESTIONS}
    documents = {q.name: graphql_document(q) for q in QUESTIONS}
    http_ms: dict[str, list[float]] = {q.name: [] for q in QUESTIONS}
    direct_ms: dict[str, list[float]] = {q.name: [] for q in QUESTIONS}
    response_bytes: dict[str, int] = {}
    before = loadavg()
    for q in QUESTIONS:
        for _ in range(options.warmup + options.workers):  # warm every worker
            client.post(documents[q.name])
            service.search(q.query, identity=identity, purpose=purposes[q.name])
        response_bytes[q.name] = client.last_response_bytes
    for _ in range(options.reps):
        for q in QUESTIONS:
            clear_engine_cache(options)
            http_ms[q.name].append(timed(partial(client.post, documents[q.name])))
            clear_engine_cache(options)
            direct_ms[q.name].append(
                timed(partial(service.search, q.query, identity=identity, purpose=purposes[q.name]))
            )
    client.close()
    runtime.backend.close()
    out: dict[str, Any] = {"loadavg_before": before, "loadavg_after": loadavg(), "questions": {}}
    for q in QUESTIONS:
        over_http, direct = percentiles(http_ms[q.name]), percentiles(direct_ms[q.name])
        out["questions"][q.name] = {
            "graphql_http": over_http,
            "service_direct": direct,
            "overhead_p50_ms": round(over_http["p50_ms"] - direct["p50_ms"], 2),
            "response_bytes": response_bytes[q.name],
        }
    overheads = [v["overhead_p50_ms"] for v in out["questions"].values()]
    out["overhead_p50_ms_median"] = round(statistics.median(overheads), 2)
    out["overhead_p50_ms_max"] = round(max(overheads), 2)
    # The largest question: the one with the largest GraphQL response (most to serialise).
    largest = max(response_bytes, key=lambda name: response_bytes[name])
    out["largest_question"] = largest
    out["overhead_p50_ms_largest"] = out["questions"][largest]["overhead_p50_ms"]
    return out


def beacon_overhead(options: Options, server: Gateway) -> dict[str, Any]:
    """Each Beacon-expressible question as a Beacon count query and as the same GraphQL
    search (the figures a count answer carries, no facets), interleaved, through gunicorn."""
    client = GraphQLClient(server.port, server.key)
    questions = [q for q in QUESTIONS if q.name in BEACON_FILTERS]
    documents = {q.name: graphql_count_document(q) for q in questions}
    bodies = {q.name: beacon_count_body(q.name) for q in questions}
    beacon_ms: dict[str, list[float]] = {q.name: [] for q in questions}
    graphql_ms: dict[str, list[float]] = {q.name: [] for q in questions}
    for q in questions:
        # Both APIs release the same figure for the question (it is one release path).
        answer = client.post(documents[q.name])["data"]["search"]["samples"]["value"]
        counted = client.post_json("/beacon/biosamples", bodies[q.name])
        if counted["responseSummary"].get("numTotalResults") != answer:
            raise RuntimeError(f"{q.name}: Beacon {counted['responseSummary']} vs GraphQL {answer}")
        for _ in range(options.warmup + options.workers):
            client.post(documents[q.name])
            client.post_json("/beacon/biosamples", bodies[q.name])
    before = loadavg()
    for _ in range(options.reps):
        for q in questions:
            clear_engine_cache(options)
            graphql_ms[q.name].append(timed(partial(client.post, documents[q.name])))
            clear_engine_cache(options)
            beacon_ms[q.name].append(
                timed(partial(client.post_json, "/beacon/biosamples", bodies[q.name]))
            )
    client.close()
    out: dict[str, Any] = {"loadavg_before": before, "loadavg_after": loadavg(), "questions": {}}
    for q in questions:
        beacon, graphql = percentiles(beacon_ms[q.name]), percentiles(graphql_ms[q.name])
        out["questions"][q.name] = {
            "beacon_filters": BEACON_FILTERS[q.name],
            "beacon_http": beacon,
            "graphql_http": graphql,
            "ratio_p50": round(beacon["p50_ms"] / graphql["p50_ms"], 3),
        }
    out["ratio_p50_max"] = max(v["ratio_p50"] for v in out["questions"].values())
    return out


def load_run(
    options: Options, server: Gateway, roles: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """C clients posting the mix back to back for T seconds (or MAX_LOAD_REQUESTS); with
    `roles` (role name -> API key), client n asks as the n-th role, round robin."""
    deadline = time.monotonic() + options.load_seconds
    documents = [graphql_document(q) for q in QUESTIONS]
    latencies: list[list[float]] = [[] for _ in range(options.clients)]
    errors: list[str] = []
    issued = [0]
    lock = threading.Lock()
    role_names = list(roles or {"operator": server.key})
    keys = dict(roles or {"operator": server.key})

    def client_loop(n: int) -> None:
        client = GraphQLClient(server.port, keys[role_names[n % len(role_names)]])
        order = random.Random(n)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= MAX_LOAD_REQUESTS:
                        return
                    issued[0] += 1
                document = order.choice(documents)
                try:
                    latencies[n].append(timed(partial(client.post, document)))
                except Exception as err:
                    errors.append(str(err)[:200])
        finally:
            client.close()

    before = loadavg()
    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(options.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    done = [v for per_client in latencies for v in per_client]
    out: dict[str, Any] = {
        "clients": options.clients,
        "seconds": round(elapsed, 2),
        "requests": len(done),
        "errors": len(errors),
        "first_errors": errors[:3],
        "throughput_rps": round(len(done) / elapsed, 2) if elapsed else None,
        "latency": percentiles(done),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }
    if roles:
        out["by_role"] = {
            role: percentiles(
                [v for n, per in enumerate(latencies) if n % len(role_names) == i for v in per]
            )
            for i, role in enumerate(role_names)
        }
    return out


def sync_slowdown(load: Mapping[str, Any]) -> float | None:
    """The load run's p99 with a sync running over the idle p99 of the same run."""
    idle = load.get("idle", {}).get("latency", {}).get("p99_ms")
    busy = load.get("with_sync", {}).get("latency", {}).get("p99_ms")
    return round(busy / idle, 2) if idle and busy else None


def parallel_sync_biobank(env: Mapping[str, str]) -> str:
    """The biobank re-synced during the load run: the median-sized one."""
    runtime = _runtime(env)
    sizes = sorted((info.documents, bb) for bb, info in runtime.backend.published().items())
    runtime.backend.close()
    return str(sizes[len(sizes) // 2][1])


def load_with_sync(
    options: Options, env: Mapping[str, str], server: Gateway, workdir: Path
) -> dict[str, Any]:
    """The load run while a full sync of one biobank runs alongside (stopped at the end)."""
    biobank = parallel_sync_biobank(env)
    log = (workdir / "parallel-sync.log").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        sync_command(biobank),
        cwd=ROOT,
        env=_clean_env({**env, "BIOFED_ENGINE_LOCK_TTL": "30"}),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    result = load_run(options, server)
    finished = process.poll() is not None
    if not finished:
        os.killpg(process.pid, signal.SIGTERM)
    process.wait()
    log.close()
    result["sync"] = {
        "biobank": biobank,
        "finished_during_load": finished,
        "exit_code": process.returncode,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return result


# --- the run ------------------------------------------------------------------------------------


def engine_version(options: Options) -> str | None:
    """The node's distribution and version, or None for the embedded backend."""
    if options.backend == "embedded":
        return None
    with urllib.request.urlopen(options.engine_url, timeout=10) as response:
        info = json.loads(response.read())
    version = info.get("version", {})
    return f"{version.get('distribution', 'elasticsearch')} {version.get('number')}"


def drop_engine_indices(options: Options, prefix: str) -> None:
    """Delete every index the run made (by name: wildcard deletes may be refused)."""
    from opensearchpy import OpenSearch

    client = OpenSearch(options.engine_url, timeout=120)
    try:
        found = client.indices.get(index=f"{prefix}-*", expand_wildcards="all")
        for index in found:
            client.indices.delete(index=index)
    finally:
        client.close()


def run(options: Options) -> dict[str, Any]:
    """Run every phase and write the results; return the JSON document."""
    name = options.name or f"{options.backend}-{options.samples}"
    report = Report(options.results_dir / f"{name}.json")
    workdir = CACHE / "runs" / name
    if "ingest" in options.phases:
        shutil.rmtree(workdir, ignore_errors=True)
    # Without `ingest` the phases run on the data a `--keep` run of the same name left.
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    report.data = {
        "name": name,
        "complete": False,
        "command": options.command,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "backend": options.backend,
        "samples": options.samples,
        "biobanks": options.biobanks,
        "seed": options.seed,
        "machine": machine(engine_version(options)),
        "loadavg_start": loadavg(),
        "query_mix": {
            q.name: {"query": q.graphql_query, "purpose": q.purpose, "facets": "all"}
            for q in QUESTIONS
        },
    }
    report.save()
    network = network_for(options)
    env = environment(options, workdir / "data", network, prefix)
    try:
        if "ingest" in options.phases:
            report.data["ingest"] = ingest(options, env, workdir)
            report.data["ingest"]["stored"] = stored(options, workdir / "data", prefix)
            report.save()
        if "queries" in options.phases:
            report.data["queries"] = queries(options, env)
            report.save()
            serving_queries(options, env, report)
        if "gateway" in options.phases:
            with gateway(options, env, workdir / "gunicorn.log") as server:
                report.data["gateway"] = gateway_overhead(options, env, server)
                report.save()
                report.data["beacon"] = beacon_overhead(options, server)
                report.save()
                if options.load_seconds > 0:
                    report.data["load"] = {"idle": load_run(options, server)}
                    report.save()
                    report.data["load"]["with_sync"] = load_with_sync(options, env, server, workdir)
                    report.data["load"]["with_sync_p99_over_idle"] = sync_slowdown(
                        report.data["load"]
                    )
                    report.save()
                    report.data["load"]["mixed_roles"] = mixed_roles_load(options, server)
                    report.save()
                # Before the memory reading: the publishes' reloads are part of the peak.
                report.data["landing_after_publish"] = publish_landing(
                    options, env, server, workdir
                )
                report.save()
                report.data["server_memory"] = server.memory()
                report.save()
        report.data["targets"] = check_targets(report.data)
        report.data["loadavg_end"] = loadavg()
        report.data["complete"] = True
        report.save()
    finally:
        if options.backend != "embedded" and not options.keep:
            drop_engine_indices(options, prefix)
        if not options.keep:
            shutil.rmtree(workdir / "data", ignore_errors=True)
    summary = markdown(report.data)
    report.path.with_suffix(".md").write_text(summary, encoding="utf-8")
    return report.data


# The measurements of issue 18 live in bench/serving.py, which imports this module's pieces.


def serving_queries(options: Options, env: Mapping[str, str], report: Report) -> None:
    """The registered pass of the mix and the Beacon count queries against raw."""
    from bench.serving import beacon_against_raw, registered_pass

    report.data["registered"] = registered_pass(options, env)
    report.save()
    report.data["beacon_raw"] = beacon_against_raw(options, env)
    report.save()


def mixed_roles_load(options: Options, server: Gateway) -> dict[str, Any]:
    """The load run with the clients asking as anonymous, registered and operator in turn."""
    from bench.serving import role_keys

    return load_run(options, server, role_keys(server))


def publish_landing(
    options: Options, env: Mapping[str, str], server: Gateway, workdir: Path
) -> dict[str, Any]:
    """The landing page right after a publish and steadily after it (bench/serving.py)."""
    from bench.serving import landing_after_publish

    return landing_after_publish(options, env, server, workdir)


def stored(options: Options, data_dir: Path, prefix: str) -> dict[str, Any]:
    """Bytes on disk after the sync (bench/serving.py)."""
    from bench.serving import stored_size

    return stored_size(options, data_dir, prefix, options.samples)


# --- targets and the summary ------------------------------------------------------------------


def check_targets(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue against this run's figure."""
    targets = TARGETS[data["backend"] if data["backend"] == "embedded" else "opensearch"]
    at_size = data["samples"] == targets["size"]
    out: list[dict[str, Any]] = []

    def add(what: str, value: Any, limit: float, *, at_least: bool = False) -> None:
        if value is None:
            return
        met = value >= limit if at_least else value <= limit
        out.append(
            {
                "target": what,
                "value": value,
                "limit": (">= " if at_least else "<= ") + str(limit),
                "met": met,
                "stated_for_this_size": at_size,
            }
        )

    questions = data.get("queries", {}).get("questions", {})
    if "ingest" in data:
        add(
            "ingest samples/s",
            data["ingest"]["samples_per_s"],
            targets["ingest_samples_per_s"],
            at_least=True,
        )
    if questions:
        add(
            "selective p50 ms",
            questions["selective"]["ours"]["p50_ms"],
            targets["selective_p50_ms"],
        )
        if "selective_p99_ms" in targets:
            add(
                "selective p99 ms",
                questions["selective"]["ours"]["p99_ms"],
                targets["selective_p99_ms"],
            )
        if "landing_p50_ms" in targets:
            add("landing p50 ms", questions["landing"]["ours"]["p50_ms"], targets["landing_p50_ms"])
        warm = data.get("queries", {}).get("landing_warm")
        if warm:
            add("landing after publish (warm) p50 ms", warm["p50_ms"], LANDING_WARM_TARGET_MS)
        for name, entry in questions.items():
            add(f"ours/raw p50 {name}", entry["ratio_p50"], RATIO_TARGET)
    if "gateway" in data:
        add(
            "GraphQL overhead p50 ms (median over the mix)",
            data["gateway"]["overhead_p50_ms_median"],
            GATEWAY_OVERHEAD_TARGET_MS,
        )
    for name, entry in data.get("beacon", {}).get("questions", {}).items():
        add(f"Beacon count / GraphQL p50 {name}", entry["ratio_p50"], BEACON_RATIO_TARGET)
    for entry in out:
        entry["stated_for_this_size"] = at_size or any(
            word in entry["target"] for word in ("ours/raw", "GraphQL")
        )
    return out


def markdown(data: Mapping[str, Any]) -> str:
    """A short summary of one run."""
    m = data["machine"]
    lines = [
        f"# {data['name']}: {data['backend']}, {data['samples']:,} samples, "
        f"{data['biobanks']} biobanks",
        "",
        f"`{data['command']}`  ",
        f"{data['date']} · {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB · "
        f"commit {m['git_commit'][:10]}{' (dirty)' if m['git_dirty'] else ''} · "
        f"load average at start {data['loadavg_start']}",
        "",
    ]
    if not data.get("complete"):
        lines += ["**Incomplete run**: the phases below are the ones that finished.", ""]
    if "ingest" in data:
        i = data["ingest"]
        lines += [
            f"**Ingest**: {i['sample_rows']:,} sample rows ({i['indexed_samples']:,} indexed) in "
            f"{i['wall_s']} s = **{i['samples_per_s']:,} samples/s**; sync peak RSS "
            f"{i['peak_rss_mb']} MB.",
            "",
        ]
    if "queries" in data:
        lines += [
            "| question | ours p50 | p95 | p99 | raw p50 | p95 | p99 | ours/raw |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for qname, e in data["queries"]["questions"].items():
            o, r = e["ours"], e["raw"]
            lines.append(
                f"| {qname} | {o['p50_ms']} | {o['p95_ms']} | {o['p99_ms']} | "
                f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {e['ratio_p50']} |"
            )
        lines += [
            "",
            f"ms, {data['queries']['reps']} repetitions after "
            f"{data['queries']['warmup']} warm-ups, every answer computed afresh.",
            "",
        ]
        cached = data["queries"].get("cached")
        if cached:
            hits = ", ".join(f"{qname} {e['p50_ms']}" for qname, e in cached["questions"].items())
            lines += [f"**From the answer cache** (p50 ms): {hits}.", ""]
    if "gateway" in data:
        g = data["gateway"]
        lines += [
            f"**GraphQL overhead** (POST /graphql through gunicorn minus a direct service call, "
            f"p50): median over the mix {g['overhead_p50_ms_median']} ms, max "
            f"{g['overhead_p50_ms_max']} ms.",
            "",
        ]
    if "beacon" in data:
        cells = ", ".join(
            f"{qname} {e['beacon_http']['p50_ms']} vs {e['graphql_http']['p50_ms']} ms "
            f"({e['ratio_p50']}x)"
            for qname, e in data["beacon"]["questions"].items()
        )
        lines += [
            f"**Beacon count query** (POST /beacon/biosamples vs the same GraphQL search, p50): "
            f"{cells}.",
            "",
        ]
    for label, key in (("idle", "idle"), ("with a sync running", "with_sync")):
        entry = data.get("load", {}).get(key)
        if entry:
            lat = entry["latency"]
            lines.append(
                f"**Load, {label}**: {entry['clients']} clients, {entry['seconds']} s: "
                f"{entry['throughput_rps']} req/s, p50 {lat.get('p50_ms')} / p95 "
                f"{lat.get('p95_ms')} / p99 {lat.get('p99_ms')} ms, {entry['errors']} errors."
            )
    lines += serving_summary(data)
    if "server_memory" in data:
        lines += [
            "",
            "**Server peak RSS** (master + workers): "
            f"{data['server_memory']['peak_rss_mb_sum']} MB.",
        ]
    if data.get("targets"):
        lines += ["", "| target | value | limit | met |", "|---|---:|---|---|"]
        for t in data["targets"]:
            note = "" if t["stated_for_this_size"] else " (stated for another size)"
            met = "yes" if t["met"] else "NO"
            lines.append(f"| {t['target']} | {t['value']} | {t['limit']} | {met}{note} |")
    return "\n".join(lines) + "\n"


def serving_summary(data: Mapping[str, Any]) -> list[str]:
    """The summary lines of bench/serving.py's measurements (none when not measured)."""
    lines: list[str] = []
    for key, label in (("registered", "Registered researcher"), ("beacon_raw", "Beacon count")):
        if key in data:
            cells = ", ".join(
                f"{q} {e['ours']['p50_ms']} vs {e['raw']['p50_ms']} ms ({e['ratio_p50']}x)"
                for q, e in data[key]["questions"].items()
            )
            lines += ["", f"**{label}, in-process vs raw** (p50): {cells}."]
    mixed = data.get("load", {}).get("mixed_roles")
    if mixed:
        roles = ", ".join(f"{r} p50 {v.get('p50_ms')}" for r, v in mixed["by_role"].items())
        lines += [
            "",
            f"**Load, mixed roles**: {mixed['throughput_rps']} req/s, p99 "
            f"{mixed['latency'].get('p99_ms')} ms ({roles} ms).",
        ]
    after = data.get("landing_after_publish")
    if after:
        lines += [
            "",
            f"**Landing after a publish** ({after['rounds']} publishes of {after['biobank']}): "
            f"first search p50 {after['first_after_publish']['p50_ms']} ms, steady p50 "
            f"{after['steady']['p50_ms']} ms.",
        ]
    return lines


def _question_cell(name: str, run: dict[str, Any]) -> str:
    entry = run["queries"]["questions"][name]
    return (
        f"{entry['ours']['p50_ms']} / {entry['ours']['p99_ms']} "
        f"({entry['raw']['p50_ms']}; {entry['ratio_p50']}x)"
    )


def comparison_table(paths: list[Path]) -> str:
    """One markdown table of several runs side by side (for docs/performance.md)."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    header = "| | " + " | ".join(f"{r['name']}" for r in runs) + " |"
    lines = [header, "|---|" + "---:|" * len(runs)]

    def row(label: str, value: Callable[[dict[str, Any]], Any]) -> None:
        cells = []
        for r in runs:
            try:
                cells.append(str(value(r)))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("backend, samples", lambda r: f"{r['backend']}, {r['samples']:,}")
    row("complete", lambda r: "yes" if r["complete"] else "no")
    row(
        "ingest samples/s (sync jobs; per CPU-second)",
        lambda r: "{:,} ({}; {:,})".format(
            r["ingest"]["samples_per_s"],
            r["ingest"].get("sync_jobs", 1),
            r["ingest"]["samples_per_cpu_s"],
        ),
    )
    row("sync peak RSS MB (largest process)", lambda r: r["ingest"]["peak_rss_mb"])
    for q in QUESTIONS:
        row(f"{q.name} p50 / p99 ms (raw p50; ratio)", partial(_question_cell, q.name))
    row(
        "answer cache hit p50 ms, selective / landing",
        lambda r: "{} / {}".format(
            r["queries"]["cached"]["questions"]["selective"]["p50_ms"],
            r["queries"]["cached"]["questions"]["landing"]["p50_ms"],
        ),
    )
    row(
        "GraphQL overhead p50 ms (median / max)",
        lambda r: "{} / {}".format(
            r["gateway"]["overhead_p50_ms_median"], r["gateway"]["overhead_p50_ms_max"]
        ),
    )
    row(
        "Beacon count / same GraphQL search, p50 ratio (max over the mix)",
        lambda r: r["beacon"]["ratio_p50_max"],
    )
    row(
        "load idle: req/s, p50/p99 ms",
        lambda r: "{}, {}/{}".format(
            r["load"]["idle"]["throughput_rps"],
            r["load"]["idle"]["latency"]["p50_ms"],
            r["load"]["idle"]["latency"]["p99_ms"],
        ),
    )
    row(
        "load + sync: req/s, p50/p99 ms",
        lambda r: "{}, {}/{}".format(
            r["load"]["with_sync"]["throughput_rps"],
            r["load"]["with_sync"]["latency"]["p50_ms"],
            r["load"]["with_sync"]["latency"]["p99_ms"],
        ),
    )
    row(
        "load + sync p99 / idle p99",
        lambda r: sync_slowdown(r["load"]) or "-",
    )
    row(
        "load, mixed roles (anonymous, registered, operator): req/s, p50/p99 ms",
        lambda r: "{}, {}/{}".format(
            r["load"]["mixed_roles"]["throughput_rps"],
            r["load"]["mixed_roles"]["latency"]["p50_ms"],
            r["load"]["mixed_roles"]["latency"]["p99_ms"],
        ),
    )
    row(
        "registered mix: ours/raw p50 ratio (max over the mix)",
        lambda r: r["registered"]["ratio_p50_max"],
    )
    row(
        "Beacon count in-process / raw count, p50 ratio (max)",
        lambda r: r["beacon_raw"]["ratio_p50_max"],
    )
    row(
        "GraphQL overhead p50 ms on the largest answer",
        lambda r: "{} ({})".format(
            r["gateway"]["overhead_p50_ms_largest"], r["gateway"]["largest_question"]
        ),
    )
    row(
        "landing after a publish: first / steady p50 ms",
        lambda r: "{} / {}".format(
            r["landing_after_publish"]["first_after_publish"]["p50_ms"],
            r["landing_after_publish"]["steady"]["p50_ms"],
        ),
    )
    row("server peak RSS MB (all processes)", lambda r: r["server_memory"]["peak_rss_mb_sum"])
    row(
        "server Pss MB (all processes; shared pages once)",
        lambda r: r["server_memory"]["pss_mb_sum"],
    )
    row(
        "stored bytes per sample (engine: primaries)",
        lambda r: r["ingest"]["stored"]["bytes_per_sample"],
    )
    row("load average at start", lambda r: r["loadavg_start"])
    return "\n".join(lines) + "\n"
