"""Query shapes compared by the node's own CPU time, on the indices of a kept run.

    python -m bench run --backend opensearch --samples 10000000 ... --keep
    python -m bench.engine_variants --node-pid PID --question selective --reps 25

Wall times on a shared 2-core machine swing 2-3x between repetitions of one search; the CPU
time of the node's process (utime + stime from /proc) spent on a search does not grow with
other processes' load the way wall time does. The service's msearch bodies for a question
are captured (as `bench.engine_profile` does) and sent, interleaved, as they are and in the
shapes below, with the request cache off. Nothing else may use the node meanwhile.

- `sent`: the bodies as the service sends them.
- `one_pass`: the facet groups' searches merged into one (the union of their sample filters
  at the top, each group's `matching` filter beside the others under one nested walk).
- `per_index` against `sent_per_index`: every search once per live index, with and without
  the per-biobank `terms` level (one index holds one biobank).
- `--also-index NAME`: `sent` once more with every search sent to NAME (a clone of one
  index, force merged say), against `sent` with `--index` the original.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.engine_profile import kept_prefix
from bench.queries import QUESTIONS
from bench.runner import CACHE, ENGINE_URL, RESULTS, _runtime, operator_identity

Searches = list[tuple[str, dict[str, Any]]]


def node_cpu_ms(pid: int) -> float:
    """CPU milliseconds the process has used so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def one_pass(searches: Searches) -> Searches:
    """The searches as one: their donors found once, their filters side by side."""
    index = searches[0][0]
    filters = [body["aggs"]["samples"]["aggs"]["matching"]["filter"] for _, body in searches]
    union = {"bool": {"should": filters, "minimum_should_match": 1}}
    matching = {
        f"matching{n}": body["aggs"]["samples"]["aggs"]["matching"]
        for n, (_, body) in enumerate(searches)
    }
    body = {
        "size": 0,
        "track_total_hits": False,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"kind": "donor"}},
                    {"nested": {"path": "samples", "query": union}},
                ]
            }
        },
        "aggs": {"samples": {"nested": {"path": "samples"}, "aggs": matching}},
    }
    return [(index, body)]


def per_index(indices: Sequence[str], flatten: bool) -> Callable[[Searches], Searches]:
    """Every search sent to each index; with `flatten` the biobank `terms` level removed."""

    def shape(searches: Searches) -> Searches:
        out: Searches = []
        for index in indices:
            for _, body in searches:
                copied = copy.deepcopy(body)
                if flatten:
                    matching = copied["aggs"]["samples"]["aggs"]["matching"]
                    matching["aggs"] = matching["aggs"]["biobank"]["aggs"]
                out.append((index, copied))
        return out

    return shape


def on_index(index: str) -> Callable[[Searches], Searches]:
    """Every search sent to `index` instead."""
    return lambda searches: [(index, body) for _, body in searches]


def msearch(engine_url: str, searches: Searches) -> None:
    """Send the searches in one msearch, request cache off; fail on any error."""
    lines: list[str] = []
    for index, body in searches:
        lines += [json.dumps({"index": index, "request_cache": False}), json.dumps(body)]
    request = urllib.request.Request(
        f"{engine_url}/_msearch",
        data=("\n".join(lines) + "\n").encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    for item in answer["responses"]:
        if "error" in item:
            raise SystemExit(f"search failed: {item['error']}")


def live_indices(engine_url: str, read_alias: str) -> list[str]:
    """The indices behind the read alias."""
    with urllib.request.urlopen(f"{engine_url}/_alias/{read_alias}") as response:
        return sorted(json.load(response))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_variants", description=__doc__)
    parser.add_argument("--run", default="opensearch-10m", help="the kept run's name")
    parser.add_argument("--question", action="append", choices=[q.name for q in QUESTIONS])
    parser.add_argument("--node-pid", type=int, required=True, help="the node's process id")
    parser.add_argument("--reps", type=int, default=25)
    parser.add_argument("--index", help="send the service's searches to this index only")
    parser.add_argument("--also-index", help="and, interleaved, to this one")
    parser.add_argument("--engine-url", default=ENGINE_URL)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    prefix = kept_prefix(args.engine_url)
    data = json.loads((args.results_dir / f"{args.run}.json").read_text())
    network = CACHE / f"network-n{data['samples']}-b{data['biobanks']}-s{data['seed']}"
    runtime = _runtime(
        {
            "BIOFED_DATA_DIR": str(CACHE / "runs" / args.run / "data"),
            "BIOFED_NETWORK": str(network / "network.yaml"),
            "BIOFED_BACKEND": "opensearch",
            "BIOFED_ENGINE_URLS": args.engine_url,
            "BIOFED_ENGINE_INDEX_PREFIX": prefix,
            "BIOFED_ENGINE_SEARCH_TIMEOUT": "60",
            "BIOFED_SECRET_KEY": "variants",
        }
    )
    indices = live_indices(args.engine_url, f"{prefix}-samples")
    shapes: dict[str, Callable[[Searches], Searches]] = {
        "sent": on_index(args.index) if args.index else (lambda searches: searches),
        "one_pass": one_pass,
        "sent_per_index": per_index(indices, flatten=False),
        "per_index": per_index(indices, flatten=True),
    }
    if args.also_index:
        shapes = {"sent": shapes["sent"], args.also_index: on_index(args.also_index)}
    captured: list[Searches] = []
    reader = runtime.backend.reader
    send: Any = reader.msearch

    def capture(searches: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        captured.append([(index, dict(body)) for index, body in searches])
        answers: list[dict[str, Any]] = send(searches)
        return answers

    reader.msearch = capture
    names = args.question or ["selective"]
    bodies: dict[tuple[str, str], Searches] = {}
    for question in (q for q in QUESTIONS if q.name in names):
        captured.clear()
        purpose = question.research_purpose(dt.date.today())
        runtime.search.search(question.query, identity=operator_identity(), purpose=purpose)
        for shape, rewrite in shapes.items():
            bodies[(question.name, shape)] = rewrite(captured[0])
    runtime.backend.close()
    for searches in bodies.values():  # one warm-up each
        msearch(args.engine_url, searches)
    cpu: dict[tuple[str, str], list[float]] = {key: [] for key in bodies}
    wall: dict[tuple[str, str], list[float]] = {key: [] for key in bodies}
    for _ in range(args.reps):
        for key, searches in bodies.items():
            before, started = node_cpu_ms(args.node_pid), time.perf_counter()
            msearch(args.engine_url, searches)
            wall[key].append((time.perf_counter() - started) * 1000)
            cpu[key].append(node_cpu_ms(args.node_pid) - before)
    print(f"# {args.reps} interleaved repetitions, load average {os.getloadavg()}")
    for (question_name, shape), spent in cpu.items():
        print(
            f"{question_name:20s} {shape:16s} node CPU mean {statistics.mean(spent):7.1f} ms"
            f"   wall p50 {statistics.median(wall[(question_name, shape)]):7.1f} ms"
        )


if __name__ == "__main__":
    main()
