"""Snapshot layouts for the embedded backend, measured on a synced store (docs/embedded-backend.md).

    python -m bench.embedded_snapshot --index DIR --out bench/results/embedded-snapshot-1m.json

For the published Parquet generations under DIR, builds and times three layouts in a
temporary folder, then times the backend's own statement (`summary_sql`, all facets) for the
selective and landing questions on each, one subprocess per layout so memory is its own:

- `whole`: one snapshot file of every generation (what `snapshot.publish_snapshot` builds);
- `per_biobank`: one file per biobank generation (each sync would build its own), ATTACHed
  read-only behind one UNION ALL view; its ENUM key columns differ per file, so the view's
  are VARCHAR;
- `memory`: the previous design, every row copied into each process's compressed in-memory
  database (the load is what each server process paid per publish).

`--replicate N --into DIR` first writes a store of N copies of every generation under DIR
(sample, donor ids and keys made distinct per copy): the 1M network's rows as 10M, with the
same distributions, without generating and syncing the 10M network.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from federation.search.embedded.snapshot import create_samples, reader_config
from federation.search.embedded.sql import summary_sql
from federation.search.embedded.store import EmbeddedStore
from federation.search.facets import FACETS
from federation.search.query import Criteria

QUESTIONS = {
    "selective": Criteria(disease_terms=(("C50-C50",),), sex=("FEMALE",), age_min=40, age_max=69),
    "landing": Criteria(),
}
LAYOUTS = ("whole", "per_biobank", "memory")


def replicate(index: Path, into: Path, copies: int) -> dict[str, Any]:
    """A store under `into` holding `copies` distinct copies of every generation of `index`."""
    source, target = EmbeddedStore(index), EmbeddedStore(into)
    target.ensure()
    manifest = source.read_manifest()
    started = time.perf_counter()
    db = duckdb.connect(":memory:")
    rows = 0
    for biobank_id, entry in manifest["biobanks"].items():
        path = source.generation_path(biobank_id, entry["generation"])
        out = target.generation_path(biobank_id, entry["generation"])
        out.parent.mkdir(parents=True, exist_ok=True)
        ((span,),) = db.execute(f"SELECT max(donor_ord) + 1 FROM read_parquet('{path}')").fetchall()
        db.execute(
            "COPY (SELECT * REPLACE ("
            "sample_id || '~' || k AS sample_id, donor_id || '~' || k AS donor_id, "
            f"CAST(donor_ord + k * {int(span or 1)} AS INTEGER) AS donor_ord, "
            "CAST(xor(donor_k0, k) AS INTEGER) AS donor_k0, "
            "CAST(xor(sample_k0, k) AS INTEGER) AS sample_k0) "
            f"FROM read_parquet('{path}'), range({copies}) AS copies(k)) "
            f"TO '{out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 50000)"
        )
        entry["documents"] = int(entry["documents"]) * copies
        rows += entry["documents"]
    manifest.pop("snapshot", None)
    target.write_manifest(manifest)
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 1)}


def build(layout: str, index: Path, folder: Path) -> dict[str, Any]:
    """Build the layout's files under `folder`; seconds and bytes."""
    store = EmbeddedStore(index)
    files = store.live_files(store.read_manifest())
    started = time.perf_counter()
    if layout == "whole":
        db = duckdb.connect(str(folder / "whole.duckdb"))
        create_samples(db, "samples", files)
        db.execute("CHECKPOINT")
        db.close()
        built = [folder / "whole.duckdb"]
    elif layout == "per_biobank":
        built = []
        for n, path in enumerate(files):
            target = folder / f"bb{n}.duckdb"
            db = duckdb.connect(str(target))
            create_samples(db, "samples", [path])
            db.execute("CHECKPOINT")
            db.close()
            built.append(target)
    else:
        return {"build_s": 0.0, "size_mb": 0.0}
    return {
        "build_s": round(time.perf_counter() - started, 2),
        "size_mb": round(sum(p.stat().st_size for p in built) / 1e6, 1),
    }


def serve(layout: str, index: Path, folder: Path, reps: int) -> dict[str, Any]:
    """Open (or load) the layout and time each question; in its own process."""
    started = time.perf_counter()
    if layout == "whole":
        # As a server process opens it: memory_limit and allocator settings of the backend.
        db = duckdb.connect(str(folder / "whole.duckdb"), read_only=True, config=reader_config())
        table, unique = "samples", True
    elif layout == "per_biobank":
        db = duckdb.connect(":memory:")
        parts = sorted(folder.glob("bb*.duckdb"))
        for n, path in enumerate(parts):
            db.execute(f"ATTACH '{path}' AS b{n} (READ_ONLY)")
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM b{n}.samples" for n in range(len(parts)))
        db.execute(f"CREATE VIEW samples AS {union}")
        table, unique = "samples", True
    else:
        store = EmbeddedStore(index)
        db = duckdb.connect(":memory:")
        db.execute("ATTACH ':memory:' AS mem (COMPRESS)")
        unique = create_samples(db, "mem.samples", store.live_files(store.read_manifest()))
        db.execute("CHECKPOINT mem")
        table = "mem.samples"
    opened = time.perf_counter() - started
    out: dict[str, Any] = {"open_or_load_s": round(opened, 3)}
    for name, criteria in QUESTIONS.items():
        sql, params = summary_sql(table, criteria, list(FACETS), [], donor_keys_unique=unique)
        times = []
        for rep in range(reps + 1):
            began = time.perf_counter()
            db.execute(sql, params).fetchall()
            if rep:  # the first call warms the buffers
                times.append((time.perf_counter() - began) * 1000)
        out[name] = {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
    status = Path("/proc/self/status").read_text()
    for key in ("VmRSS", "VmHWM"):
        line = next(x for x in status.splitlines() if x.startswith(key))
        out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--replicate", type=int, default=0, help="copies of every generation")
    parser.add_argument("--into", type=Path, help="where --replicate writes its store")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(args.serve, args.index, args.folder, args.reps)))
        return
    results: dict[str, Any] = {"index": str(args.index), "reps": args.reps}
    if args.replicate:
        results["replicated"] = replicate(args.index, args.into, args.replicate)
        print("replicated", results["replicated"], flush=True)
        args.index = args.into
    with tempfile.TemporaryDirectory(prefix="biofed-snapshot-") as tmp:
        for layout in args.layouts.split(","):
            built = build(layout, args.index, Path(tmp))
            command = [sys.executable, "-m", "bench.embedded_snapshot", "--index", str(args.index)]
            command += ["--serve", layout, "--folder", tmp, "--reps", str(args.reps)]
            served = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=True,
            )
            results[layout] = {**built, **json.loads(served.stdout)}
            print(layout, results[layout], flush=True)
    results["loadavg"] = list(Path("/proc/loadavg").read_text().split()[:3])
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
