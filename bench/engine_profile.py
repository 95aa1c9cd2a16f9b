"""Where the node spends a question's time: its profile API over the searches we send.

    python -m bench suite --only opensearch-10m --keep
    python -m bench.engine_profile --run opensearch-10m --question selective

Reads the kept run's data directory and index prefix, asks the question once through
`SearchService.search` to capture the msearch bodies, then sends each body again with
`"profile": true` (request cache off) and prints node time per query and aggregation type,
summed over the shards. Profiling inflates the times; read the shares.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.queries import QUESTIONS
from bench.runner import CACHE, ENGINE_URL, RESULTS, _runtime, operator_identity


def kept_prefix(engine_url: str) -> str:
    """The index prefix of the kept run (runs name theirs `bench<hex>`)."""
    with urllib.request.urlopen(f"{engine_url}/_cat/aliases?format=json") as response:
        aliases = json.load(response)
    prefixes = {a["alias"].split("-")[0] for a in aliases if a["alias"].startswith("bench")}
    if len(prefixes) != 1:
        raise SystemExit(f"expected the indices of one kept run, found {sorted(prefixes)}")
    return str(prefixes.pop())


def own_times(
    nodes: Sequence[Mapping[str, Any]], label: str, into: collections.Counter[str]
) -> None:
    """Each profile node's time minus its children's, by type (and name for aggregations)."""
    for node in nodes:
        children = node.get("children", [])
        key = f"{node['type']} {node['description']}" if label == "agg" else node["type"]
        into[key] += node["time_in_nanos"] - sum(c["time_in_nanos"] for c in children)
        own_times(children, label, into)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_profile", description=__doc__)
    parser.add_argument("--run", default="opensearch-10m", help="the kept run's name")
    parser.add_argument("--question", default="selective", choices=[q.name for q in QUESTIONS])
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
            "BIOFED_SECRET_KEY": "profile",
        }
    )
    question = next(q for q in QUESTIONS if q.name == args.question)
    captured: list[Sequence[tuple[str, Mapping[str, Any]]]] = []
    reader = runtime.backend.reader
    send: Any = reader.msearch

    def capture(searches: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        captured.append(searches)
        answers: list[dict[str, Any]] = send(searches)
        return answers

    reader.msearch = capture
    purpose = question.research_purpose(dt.date.today())
    runtime.search.search(question.query, identity=operator_identity(), purpose=purpose)
    print(f"# {question.name}: profile API, run {args.run} (prefix {prefix}), request cache off")
    for n, (index, body) in enumerate(captured[0]):
        request = urllib.request.Request(
            f"{args.engine_url}/{index}/_search?request_cache=false",
            data=json.dumps({**body, "profile": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            answer = json.load(response)
        times: collections.Counter[str] = collections.Counter()
        for shard in answer["profile"]["shards"]:
            for search in shard["searches"]:
                own_times(search["query"], "query", times)
            own_times(shard.get("aggregations", []), "agg", times)
        total = sum(times.values())
        shards = len(answer["profile"]["shards"])
        took = answer["took"]
        print(f"\n## search {n}: took {took} ms, {shards} shards, node time {total / 1e6:.0f} ms")
        for key, nanos in times.most_common(8):
            print(f"{nanos / 1e6:9.1f} ms  {100 * nanos / total:5.1f}%  {key}")
    runtime.backend.close()


if __name__ == "__main__":
    main()
