"""Measure the engine backend against the embedded one on a generated network.

    scripts/search-node start
    .venv/bin/python -m bench.engine_load --samples 100000 --biobanks 8 \
        --engine-url http://127.0.0.1:9250 --out bench/results/engine-load.json

Generates the demo network, runs a full sync of every biobank into each backend (recording
the sync time and, for the engine, the publish time and bulk rate from the writer's log),
then times the same questions on both: the landing page (all facets, no filter), a
filtered facet count, a disease search with a consent-like segment split, and a record
page. Each question runs `--repeat` times after one warm-up; medians and p95 are written.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.measure import machine_facts
from bench.runner import clear_request_cache
from federation.model import expr as ex
from federation.search.backend import SearchBackend
from federation.search.engine import EngineBackend
from federation.search.query import FACETS, Criteria, PageRequest

QUESTIONS: dict[str, dict[str, Any]] = {
    "landing_all_facets": {"criteria": Criteria(), "facets": FACETS},
    "filtered_facet_count": {
        "criteria": Criteria(
            disease_terms=(("C00-C97",),), sex=("FEMALE",), age_min=40, age_max=70
        ),
        "facets": ("material_type",),
    },
    "disease_with_segments": {
        "criteria": Criteria(disease_terms=(("II",),)),
        "facets": FACETS,
        "segments": {
            "gru": ex.In("duo_permission", ("GRU",)),
            "not_commercial": ex.Not(ex.HasAny("duo_modifiers", ("NCU", "NPU"))),
        },
    },
    "record_page": {"criteria": Criteria(material_type=("PLASMA",)), "page": PageRequest(50)},
}


class _PublishLog(logging.Handler):
    """Collects the engine writer's "published ...: N samples in S s" lines."""

    pattern = re.compile(r"published (\S+): (\d+) samples in ([\d.]+)s")

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = self.pattern.search(record.getMessage())
        if found:
            self.loads.append((found[1], int(found[2]), float(found[3])))


def _time(
    backend: SearchBackend, question: dict[str, Any], repeat: int, cold_url: str | None = None
) -> dict[str, float]:
    kwargs = {k: v for k, v in question.items() if k != "criteria"}
    backend.answer(question["criteria"], **kwargs)  # warm-up
    times = []
    for _ in range(repeat):
        if cold_url is not None:
            clear_request_cache(cold_url)
        started = time.perf_counter()
        backend.answer(question["criteria"], **kwargs)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 2),
    }


def main() -> None:
    """Run the measurement and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--biobanks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--engine-url", default="http://127.0.0.1:9250")
    parser.add_argument("--out", type=Path, default=Path("bench/results/engine-load.json"))
    args = parser.parse_args()

    from federation.demo.generator import generate_network
    from federation.runtime import Runtime
    from federation.settings import load_settings
    from federation.sync.run import sync_biobank

    handler = _PublishLog()
    logging.getLogger("federation.search.engine").addHandler(handler)
    logging.getLogger("federation.search.engine").setLevel(logging.INFO)

    root = Path(tempfile.mkdtemp(prefix="biofed-bench-engine-"))
    generate_network(root / "demo", biobanks=args.biobanks, samples=args.samples, seed=args.seed)
    network = root / "demo" / "network.yaml"
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    backends = {
        "embedded": {"data_dir": str(root / "embedded")},
        "engine": {
            "data_dir": str(root / "engine"),
            "backend": "opensearch",
            "engine_urls": args.engine_url,
            "engine_index_prefix": prefix,
        },
    }
    results: dict[str, Any] = {
        "command": "python -m bench.engine_load "
        f"--samples {args.samples} --biobanks {args.biobanks} --seed {args.seed}",
        "machine": machine_facts(("opensearch-py",)),
        "backends": {},
    }
    for name, overrides in backends.items():
        settings = load_settings(
            overrides={**overrides, "network": str(network)}, read_files=False, environ={}
        )
        runtime = Runtime(settings)
        started = time.perf_counter()
        indexed = 0
        for source in runtime.network().biobanks:
            run = sync_biobank(source, runtime.backend, runtime.state, locks_dir=settings.locks_dir)
            indexed += run.indexed
        sync_s = time.perf_counter() - started
        entry: dict[str, Any] = {
            "indexed_samples": indexed,
            "full_sync_s": round(sync_s, 2),
            "questions": {
                q: _time(runtime.backend, spec, args.repeat) for q, spec in QUESTIONS.items()
            },
        }
        if name == "engine":
            # The same question again is answered from the engine's request cache (until
            # the next publish); "questions_uncached" clears that cache before each run.
            entry["questions_uncached"] = {
                q: _time(runtime.backend, spec, args.repeat, args.engine_url)
                for q, spec in QUESTIONS.items()
            }
            loaded = sum(n for _, n, _ in handler.loads)
            seconds = sum(s for _, _, s in handler.loads)
            entry["publish"] = {
                "samples": loaded,
                "bulk_load_s": round(seconds, 2),
                "samples_per_s": round(loaded / seconds) if seconds else None,
            }
            backend = runtime.backend
            assert isinstance(backend, EngineBackend)
            for biobank in list(backend.published()):
                backend.remove_biobank(biobank)
            backend.writer.delete_indices([backend.names.locks])
        runtime.backend.close()
        results["backends"][name] = entry
        print(name, json.dumps(entry, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
