"""What serving costs beyond the operator's query mix (issue 18), as phases of `bench run`:

- `registered_pass`: the mix asked as a registered researcher (noise keyed on the rows'
  fingerprints, every fresh figure charged to the privacy ledger) against the same
  hand-written queries, interleaved;
- `beacon_against_raw`: the Beacon v2 count query (the request body parsed as the gateway
  parses it, answered by the same `BeaconSearch.counts` the endpoint calls) against the
  hand-written count-only query, interleaved;
- `landing_after_publish`: a biobank re-synced (a new generation published), then the first
  landing search through the gateway right after it, and the steady landing p50 after it,
  per role;
- `stored_size`: what the synced data takes on disk (the data directory; the engine's
  indices as the node reports them), for docs/scale.md's extrapolation.

The runner calls these from `run` (bench/runner.py); they import its pieces.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import urllib.request
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from bench.measure import percentiles
from bench.queries import BEACON_FILTERS, QUESTIONS, Question, beacon_count_body, graphql_document
from bench.runner import (
    Gateway,
    GraphQLClient,
    Options,
    RawBackend,
    _runtime,
    clear_engine_cache,
    loadavg,
    operator_identity,
    parallel_sync_biobank,
    run_measured,
    sync_command,
    timed,
)

# The roles a visitor of the landing page comes as, each a release class of its own.
ROLES = ("anonymous", "registered", "operator")
# Publishes per landing-after-publish measurement: each role is the first visitor once.
PUBLISH_ROUNDS = len(ROLES)
# The registered pass's budget: large enough that no figure falls back, so every noised
# figure takes the full path (fingerprint, noise, ledger), as bench/privacy_overhead.py does.
UNSPENDABLE_EPSILON = 1e12


def registered_identity() -> Any:
    """A registered researcher (API key, no operator or biobank role): noised figures."""
    from federation.disclosure.roles import Identity

    return Identity(subject="bench-researcher", authenticated=True, via="api_key")


def _interleaved(
    options: Options,
    ours: Mapping[str, Any],
    raw: Mapping[str, Any],
) -> dict[str, Any]:
    """Time each named call of `ours` and `raw` alternately, reps times, after warm-ups."""
    for name in ours:
        for _ in range(options.warmup):
            ours[name]()
            raw[name]()
    mine: dict[str, list[float]] = {name: [] for name in ours}
    theirs: dict[str, list[float]] = {name: [] for name in ours}
    for _ in range(options.reps):
        for name in ours:
            clear_engine_cache(options)
            mine[name].append(timed(ours[name]))
            clear_engine_cache(options)
            theirs[name].append(timed(raw[name]))
    out: dict[str, Any] = {}
    for name in ours:
        a, b = percentiles(mine[name]), percentiles(theirs[name])
        out[name] = {
            "ours": a,
            "raw": b,
            "ratio_p50": round(a["p50_ms"] / b["p50_ms"], 2) if b["p50_ms"] else None,
        }
    return out


def backend_work(runtime: Any, service: Any) -> None:
    """Make `service` ask the backend every time, as the runner's mix does: a landing
    question is not cut from the warm answer of the publish (timed apart)."""
    from federation.search.warm import PublishedAnswers

    service.source = PublishedAnswers(runtime.backend, runtime.store.publications, warm=False)


def registered_pass(options: Options, env: Mapping[str, str]) -> dict[str, Any]:
    """The mix as a registered researcher through the service, against the raw forms."""
    from federation.disclosure.budget import BudgetRule, PrivacyBudgets
    from federation.disclosure.roles import Role

    runtime = _runtime(env)
    service = copy.copy(runtime.search)
    backend_work(runtime, service)
    budgets = PrivacyBudgets({Role.REGISTERED: BudgetRule(UNSPENDABLE_EPSILON)})
    service.budgets = lambda: budgets
    identity = registered_identity()
    today = dt.date.today()
    raw = RawBackend(options, runtime)
    codes = {
        q.name: service.names.codes_for_text(q.query.text) if q.query.text else ()
        for q in QUESTIONS
    }

    def ask(q: Question) -> Any:
        return service.search(q.query, identity=identity, purpose=q.research_purpose(today))

    noised = ask(QUESTIONS[0])
    before = loadavg()
    questions = _interleaved(
        options,
        {q.name: partial(ask, q) for q in QUESTIONS},
        {q.name: partial(raw.ask, q, codes[q.name], today) for q in QUESTIONS},
    )
    raw.close()
    runtime.backend.close()
    return {
        "identity": "registered",
        "budget": f"epsilon {UNSPENDABLE_EPSILON:g} per biobank per day: no figure falls back",
        "ledger": runtime.search.ledger is not None,
        "first_answer_precision": str(noised.samples.precision),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "questions": questions,
        "ratio_p50_max": max(v["ratio_p50"] for v in questions.values()),
    }


def count_only_search(search: dict[str, Any]) -> dict[str, Any]:
    """A hand-written counts search (`bench.queries.dsl_searches`' first) without facets."""
    out = copy.deepcopy(search)
    per_biobank = out["aggs"]["samples"]["aggs"]["matching"]["aggs"]["biobank"]
    per_biobank["aggs"] = {"donors": per_biobank["aggs"]["donors"]}
    return out


class RawCounts:
    """The Beacon questions' hand-written count-only form: per-biobank donors and samples."""

    def __init__(self, raw: RawBackend) -> None:
        self.raw = raw

    def ask(self, question: Question, today: dt.date) -> Any:
        """Run the count-only form of `question` (no text: Beacon questions have none)."""
        if self.raw.backend == "embedded":
            from bench.queries import sql_statements

            return self.raw.db.execute(sql_statements(question, (), today)[0]).fetchall()
        from bench.queries import dsl_searches

        search = count_only_search(dsl_searches(question, (), today)[0])
        return self.raw.client.search(index=self.raw.alias, body=search)


def beacon_against_raw(options: Options, env: Mapping[str, str]) -> dict[str, Any]:
    """Each Beacon count query in-process (parsed body, `BeaconSearch.counts`) against the
    hand-written count-only query, interleaved, as the operator (exact counts)."""
    from federation.beacon.answer import BeaconSearch
    from federation.beacon.request import from_body

    runtime = _runtime(env)
    service = runtime.search
    backend_work(runtime, service)
    identity = operator_identity()
    today = dt.date.today()
    raw = RawBackend(options, runtime)
    counts = RawCounts(raw)
    questions = {q.name: q for q in QUESTIONS if q.name in BEACON_FILTERS}

    def ours(name: str) -> Any:
        parsed = from_body(beacon_count_body(name))
        return BeaconSearch.counts(service, parsed.query, identity)

    checks = {}
    for name, q in questions.items():
        page = ours(name)
        answer = counts.ask(q, today)
        checks[name] = {"samples": page.result.samples.value, "raw_samples": _raw_total(answer)}
    before = loadavg()
    timed_questions = _interleaved(
        options,
        {name: partial(ours, name) for name in questions},
        {name: partial(counts.ask, q, today) for name, q in questions.items()},
    )
    raw.close()
    runtime.backend.close()
    for name, entry in timed_questions.items():
        entry["answer"] = checks[name]
        entry["beacon_filters"] = BEACON_FILTERS[name]
    return {
        "granularity": "count",
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "questions": timed_questions,
        "ratio_p50_max": max(v["ratio_p50"] for v in timed_questions.values()),
    }


def _raw_total(answer: Any) -> int:
    if isinstance(answer, list):
        return sum(int(row[2]) for row in answer)
    buckets = answer["aggregations"]["samples"]["matching"]["biobank"]["buckets"]
    return sum(int(b["doc_count"]) for b in buckets)


def role_keys(server: Gateway) -> dict[str, str]:
    """The API key each role asks with ("" is no key: anonymous)."""
    return {"anonymous": "", "registered": server.registered_key, "operator": server.key}


def landing_after_publish(
    options: Options, env: Mapping[str, str], server: Gateway, workdir: Path
) -> dict[str, Any]:
    """Re-sync one biobank PUBLISH_ROUNDS times; after each publish, time the first landing
    search (the round's role first, then every other role's first), then the steady
    landing search of every role, through the gateway."""
    landing = next(q for q in QUESTIONS if q.name == "landing")
    document = graphql_document(landing)
    keys = role_keys(server)
    biobank = parallel_sync_biobank(env)
    first: dict[str, list[float]] = {role: [] for role in ROLES}
    first_of_round: list[float] = []
    steady: dict[str, list[float]] = {role: [] for role in ROLES}
    syncs = []
    before = loadavg()
    for round_number in range(PUBLISH_ROUNDS):
        generation = _generation(env, biobank)
        measured = run_measured(sync_command(biobank), env, workdir / f"publish-{round_number}.log")
        if measured["exit_code"] != 0:
            raise RuntimeError(f"re-sync of {biobank} failed: see publish-{round_number}.log")
        published = _generation(env, biobank)
        syncs.append({**measured, "new_generation": published != generation})
        order = ROLES[round_number:] + ROLES[:round_number]
        for n, role in enumerate(order):
            # A new connection per first search: a worker may hold a keep-alive one.
            client = GraphQLClient(server.port, keys[role])
            took = timed(partial(client.post, document))
            client.close()
            first[role].append(took)
            if n == 0:
                first_of_round.append(took)
        clients = {role: GraphQLClient(server.port, keys[role]) for role in ROLES}
        for _ in range(options.reps):
            for role in ROLES:
                clear_engine_cache(options)
                steady[role].append(timed(partial(clients[role].post, document)))
        for client in clients.values():
            client.close()
    every_steady = [v for values in steady.values() for v in values]
    return {
        "biobank": biobank,
        "rounds": PUBLISH_ROUNDS,
        "syncs": syncs,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        # The very first landing search after each publish, whoever asked it.
        "first_after_publish": percentiles(first_of_round),
        "first_by_role": {role: percentiles(v) for role, v in first.items()},
        "steady_by_role": {role: percentiles(v) for role, v in steady.items()},
        "steady": percentiles(every_steady),
    }


def _generation(env: Mapping[str, str], biobank: str) -> str:
    runtime = _runtime(env)
    try:
        info = runtime.backend.published().get(biobank)
        return str(info.generation) if info else ""
    finally:
        runtime.backend.close()


def stored_size(
    options: Options, data_dir: Path, prefix: str, documents: int | None = None
) -> dict[str, Any]:
    """Bytes on disk after the sync: the data directory, and on the engine its indices."""
    files = [p for p in data_dir.rglob("*") if p.is_file()] if data_dir.exists() else []
    out: dict[str, Any] = {"data_dir_bytes": sum(p.stat().st_size for p in files)}
    if options.backend != "embedded":
        url = f"{options.engine_url}/_cat/indices/{prefix}-*?format=json&bytes=b"
        with urllib.request.urlopen(url, timeout=30) as response:
            indices = json.loads(response.read())
        out["engine_indices"] = len(indices)
        out["engine_store_bytes"] = sum(int(i.get("store.size") or 0) for i in indices)
        out["engine_primary_bytes"] = sum(int(i.get("pri.store.size") or 0) for i in indices)
        # Lucene documents: a donor and each of its nested samples are one each.
        out["engine_lucene_docs"] = sum(int(i.get("docs.count") or 0) for i in indices)
        out["engine_primary_shards"] = sum(int(i.get("pri") or 0) for i in indices)
    if documents:
        total = out.get("engine_primary_bytes") or out["data_dir_bytes"]
        out["bytes_per_sample"] = round(total / documents, 1)
    return out
