"""`python -m bench.privacy_overhead`: what the fingerprints and the privacy ledger add to the
query mix, measured side by side in one run (issue 12: at most 10 % on the mix's p50).

    PYTHONPATH=. .venv/bin/python -m bench.privacy_overhead --backend embedded \
        --samples 100000 --biobanks 8 --reps 15

Syncs the bench network (bench/runner.py, cached per size and seed) unless `--reuse` finds
a kept run, then asks every question of the mix (bench/queries.py) as a registered
researcher, interleaved per repetition so that the machine's load hits all variants alike:

- `without`: no fingerprints in the backend query and no ledger (noise keyed on the count
  alone): what the release costs without this issue's machinery;
- `with`: fingerprints in the query, noise keyed on them, every noised figure charged to
  the ledger (a budget large enough that nothing falls back, so every figure takes the
  full path; repeats of a released row set are free, as in use);
- `fresh`: as `with`, but a new subject for every search, so every figure is a fresh
  charge written to the ledger (the worst case: nobody ever repeats a question).

Reports each question's p50 per variant and the median over the mix of the p50s, with the
ratios to `without`; the same for the CPU time of this process per search (the service's
Python and, on the embedded backend, DuckDB's threads; not the engine's), which a loaded
machine disturbs far less than the wall time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.measure import machine_facts, percentiles
from bench.queries import QUESTIONS
from bench.runner import (
    CACHE,
    ENGINE_URL,
    Options,
    _runtime,
    clear_engine_cache,
    environment,
    ingest,
    loadavg,
    network_for,
    timed,
)

VARIANTS = ("without", "with", "fresh")
# Large enough that the mix never runs out: the measurement is of the full path.
UNSPENDABLE_EPSILON = 1e12


class FingerprintsOff:
    """The backend asked without fingerprints, whatever the service wants (the baseline)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def answer(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["fingerprints"] = False
        return self.backend.answer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def services(runtime: Any) -> dict[str, Any]:
    """The search service per variant, over one runtime's backend and ledger."""
    import copy

    from federation.disclosure.budget import BudgetRule, PrivacyBudgets
    from federation.disclosure.roles import Role
    from federation.search.warm import PublishedAnswers

    budgets = PrivacyBudgets({Role.REGISTERED: BudgetRule(UNSPENDABLE_EPSILON)})
    publications = runtime.store.publications
    full = copy.copy(runtime.search)
    full.budgets = lambda: budgets
    # The service asks through `source` (search/warm.py): each variant asks its own backend,
    # and every question is the backend's work, none cut from the warm landing answer.
    full.source = PublishedAnswers(runtime.backend, publications, warm=False)
    base = copy.copy(full)
    base.backend = FingerprintsOff(runtime.backend)
    base.source = PublishedAnswers(base.backend, publications, warm=False)
    base.ledger = None
    return {"without": base, "with": full, "fresh": full}


def measure(options: Options, env: dict[str, str]) -> dict[str, Any]:
    """Time every question under every variant, interleaved; return the report."""
    from federation.disclosure.roles import Identity

    runtime = _runtime(env)
    by_variant = services(runtime)
    today = dt.date.today()
    purposes = {q.name: q.research_purpose(today) for q in QUESTIONS}
    regular = Identity(subject="bench-researcher", authenticated=True, via="api_key")
    counter = itertools.count()

    def ask(variant: str, question: Any) -> Any:
        who = regular
        if variant == "fresh":
            who = Identity(f"bench-fresh-{next(counter)}", authenticated=True, via="api_key")
        service = by_variant[variant]
        return service.search(question.query, identity=who, purpose=purposes[question.name])

    times: dict[str, dict[str, list[float]]] = {
        v: {q.name: [] for q in QUESTIONS} for v in VARIANTS
    }
    cpu: dict[str, dict[str, list[float]]] = {v: {q.name: [] for q in QUESTIONS} for v in VARIANTS}
    for _ in range(options.warmup):
        for q in QUESTIONS:
            for v in VARIANTS:
                ask(v, q)
    before = loadavg()
    for rep in range(options.reps):
        for q in QUESTIONS:
            # Rotate the order so no variant always runs first (warm caches, load spikes).
            order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
            for v in order:
                clear_engine_cache(options)
                call: Callable[[], Any] = partial(ask, v, q)
                started = time.process_time()
                times[v][q.name].append(timed(call))
                cpu[v][q.name].append((time.process_time() - started) * 1000)
    runtime.backend.close()
    out: dict[str, Any] = {"loadavg_before": before, "loadavg_after": loadavg(), "questions": {}}
    for q in QUESTIONS:
        out["questions"][q.name] = {v: percentiles(times[v][q.name]) for v in VARIANTS}
    mix = {
        v: round(statistics.median(out["questions"][q.name][v]["p50_ms"] for q in QUESTIONS), 2)
        for v in VARIANTS
    }
    out["mix_median_p50_ms"] = mix
    out["ratio_to_without"] = {v: round(mix[v] / mix["without"], 3) for v in VARIANTS}
    cpu_p50 = {v: {q.name: statistics.median(cpu[v][q.name]) for q in QUESTIONS} for v in VARIANTS}
    out["cpu_p50_ms"] = {
        q.name: {v: round(cpu_p50[v][q.name], 2) for v in VARIANTS} for q in QUESTIONS
    }
    cpu_mix = {v: round(statistics.median(cpu_p50[v].values()), 2) for v in VARIANTS}
    out["cpu_mix_median_p50_ms"] = cpu_mix
    out["cpu_ratio_to_without"] = {v: round(cpu_mix[v] / cpu_mix["without"], 3) for v in VARIANTS}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Sync (or reuse) the bench network, measure the variants, print and save the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.privacy_overhead", description=__doc__)
    parser.add_argument("--backend", choices=("embedded", "opensearch"), required=True)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--biobanks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--engine-url", default=ENGINE_URL)
    parser.add_argument("--name", default="", help="run folder (default privacy-BACKEND-SAMPLES)")
    parser.add_argument("--reuse", action="store_true", help="reuse the run folder's synced data")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args(argv)
    name = args.name or f"privacy-{args.backend}-{args.samples}"
    options = Options(
        backend=args.backend,
        samples=args.samples,
        biobanks=args.biobanks,
        seed=args.seed,
        name=name,
        reps=args.reps,
        warmup=args.warmup,
        engine_url=args.engine_url,
    )
    workdir = CACHE / "runs" / name
    prefix_file = workdir / "engine-prefix"
    if not (args.reuse and (workdir / "data").exists()):
        workdir.mkdir(parents=True, exist_ok=True)
        prefix_file.write_text(f"privacy{args.seed}{args.samples}", encoding="utf-8")
    prefix = prefix_file.read_text(encoding="utf-8").strip() if prefix_file.exists() else name
    env = environment(options, workdir / "data", network_for(options), prefix)
    synced = None
    if not (args.reuse and (workdir / "data").exists()):
        synced = ingest(options, env, workdir)
    report = {
        "benchmark": "privacy_overhead",
        "command": "python -m bench.privacy_overhead " + " ".join(argv or sys.argv[1:]),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(()),
        "backend": args.backend,
        "samples": args.samples,
        "biobanks": args.biobanks,
        "reps": args.reps,
        "ingest_wall_s": synced.get("wall_s") if synced else "reused",
        **measure(options, env),
    }
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return report


if __name__ == "__main__":
    main()
