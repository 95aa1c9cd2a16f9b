"""`python -m bench run|suite|table`: one benchmark run (bench/runner.py), the whole suite
behind docs/performance.md (bench/suite.py), or a table of result files."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.runner import ENGINE_URL, RESULTS, Options, comparison_table, run


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the benchmark."""
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "run", help="generate, sync, measure; write bench/results/NAME.json"
    )
    bench.add_argument("--backend", choices=("embedded", "opensearch"), required=True)
    bench.add_argument("--samples", type=int, required=True, help="sample rows in the network")
    bench.add_argument("--biobanks", type=int, default=20)
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--name", default="", help="results file name (default BACKEND-SAMPLES)")
    bench.add_argument("--reps", type=int, default=30, help="timed repetitions per question")
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--load-seconds", type=float, default=30.0, help="0 skips the load run")
    bench.add_argument("--clients", type=int, default=4)
    bench.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    bench.add_argument(
        "--sync-jobs", type=int, default=0, help="biobanks synced at once (0: one per CPU)"
    )
    bench.add_argument("--engine-url", default=ENGINE_URL)
    bench.add_argument("--port", type=int, default=0, help="gateway port (0: a free one)")
    bench.add_argument("--results-dir", type=Path, default=RESULTS)
    bench.add_argument(
        "--phases",
        default="ingest,queries,gateway",
        help="comma-separated subset of ingest,queries,gateway (without ingest: on the data a "
        "--keep run of the same --name left)",
    )
    bench.add_argument("--keep", action="store_true", help="keep the synced data and indices")
    bench.add_argument(
        "--identity",
        choices=("operator", "registered"),
        default="operator",
        help="who asks the query mix: registered adds noise and the privacy ledger",
    )
    table = commands.add_parser("table", help="print a markdown table of result files")
    table.add_argument("results", nargs="+", type=Path)
    whole = commands.add_parser(
        "suite", help="every run behind docs/performance.md, then rewrite its table"
    )
    whole.add_argument("--only", action="append", default=[], help="run only NAME (repeatable)")
    whole.add_argument("--table-only", action="store_true", help="only rewrite the table")
    whole.add_argument("--engine-url", default=ENGINE_URL)
    whole.add_argument("--keep", action="store_true", help="keep each run's data and indices")
    args = parser.parse_args(args_list)
    if args.command == "table":
        print(comparison_table(args.results), end="")
        return 0
    if args.command == "suite":
        from bench.suite import suite

        failed = suite(
            tuple(args.only),
            table_only=args.table_only,
            engine_url=args.engine_url,
            keep=args.keep,
        )
        return 1 if failed else 0
    options = Options(
        backend=args.backend,
        samples=args.samples,
        biobanks=args.biobanks,
        seed=args.seed,
        name=args.name,
        reps=args.reps,
        warmup=args.warmup,
        load_seconds=args.load_seconds,
        clients=args.clients,
        workers=args.workers,
        sync_jobs=args.sync_jobs,
        engine_url=args.engine_url,
        keep=args.keep,
        results_dir=args.results_dir,
        command="python -m bench " + shlex.join(args_list),
        phases=tuple(p.strip() for p in args.phases.split(",") if p.strip()),
        identity=args.identity,
        port=args.port,
    )
    data = run(options)
    print((options.results_dir / f"{data['name']}.md").read_text(encoding="utf-8"))
    return 0 if data["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
