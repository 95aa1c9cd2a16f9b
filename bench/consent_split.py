"""The landing page asked with a purpose, split row by row or per donor and consent, on a kept
snapshot (docs/performance.md, "The landing page with a purpose").

    python -m bench.consent_split --snapshot FILE --out bench/results/consent-split-10m.json

Copies the snapshot, adds the table of rows per donor and consent when it lacks one (as a
build now writes it; the time it takes is reported), then times the backend's statement
(`summary_sql`, every facet, the bench's purpose split into its three outcomes) both ways,
interleaved, with the server's reader settings, and checks that both give the same rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from bench.measure import machine_facts, percentiles
from bench.queries import PURPOSE_RAW
from federation.consent.matching import compile_purpose
from federation.consent.purpose import ResearchPurpose
from federation.search.embedded.snapshot import TABLE, has_table, reader_config
from federation.search.embedded.sql import (
    PER_DONOR_FACETS,
    Holds,
    consent_table,
    donor_tables_sql,
    summary_sql,
)
from federation.search.query import Criteria


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)

    segments = list(compile_purpose(ResearchPurpose.parse(PURPOSE_RAW)).outcome_filters().values())
    facets = list(PER_DONOR_FACETS)
    result: dict[str, Any] = {
        "command": "python -m bench.consent_split "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_facts(["duckdb"]),
        "snapshot_bytes": args.snapshot.stat().st_size,
    }
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "snapshot.duckdb"
        shutil.copyfile(args.snapshot, copy)
        with duckdb.connect(str(copy)) as db:
            if not has_table(db, consent_table(TABLE)):
                [(statement, params)] = [
                    (sql, p) for sql, p in donor_tables_sql(TABLE) if consent_table(TABLE) in sql
                ]
                started = time.perf_counter()
                db.execute(statement, params)
                result["consent_table_build_s"] = round(time.perf_counter() - started, 2)
            rows = db.execute(f"SELECT count(*) FROM {consent_table(TABLE)}").fetchone()
            result["consent_table_rows"] = rows[0] if rows else None
        db = duckdb.connect(str(copy), read_only=True, config=reader_config())
        ways = {
            "row_by_row": Holds(donor_keys=True, donor_tables=True),
            "per_donor_and_consent": Holds(donor_keys=True, donor_tables=True, consent_table=True),
        }
        statements = {
            name: summary_sql(TABLE, Criteria(), facets, segments, holds=holds)
            for name, holds in ways.items()
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        answers: dict[str, list[Any]] = {}
        for _ in range(args.reps + 1):  # the first round warms the file's pages
            for name, (sql, params) in statements.items():
                started = time.perf_counter()
                answers[name] = sorted(db.execute(sql, params).fetchall(), key=repr)
                times[name].append((time.perf_counter() - started) * 1000)
        db.close()
    result["same_rows"] = answers["row_by_row"] == answers["per_donor_and_consent"]
    result["rows"] = len(answers["row_by_row"])
    result["statement_ms"] = {name: percentiles(values[1:]) for name, values in times.items()}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("same_rows", "statement_ms")}, indent=1))
    return 0 if result["same_rows"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
