"""What the donors' key sums (issue 12's fingerprints) cost the engine, by search shape.

    PYTHONPATH=. .venv/bin/python -m bench.privacy_overhead --backend opensearch \
        --samples 1000000 --biobanks 20 --engine-url URL        # syncs, keeps the indices
    PYTHONPATH=. .venv/bin/python -m bench.engine_fingerprints --samples 1000000 \
        --biobanks 20 --engine-url URL --question landing --question chapter --reps 21

Captures the msearch bodies the service sends for each question as a registered researcher
(whose figures are noised, so the bodies carry fingerprints), then sends them, interleaved,
request cache off, as they are (`fp`) and rewritten by each shape below. Per repetition it
records the engine's own `took` (summed over the msearch's searches), the node's CPU time
(utime + stime of `--node-pid`, when given) and the wall time; it reports medians. With
`--profile` each body is also sent once per repetition with `"profile": true`, and the
node's time per aggregation type (its own time, children's taken out) is reported as the
median per repetition. Nothing else should use the node meanwhile.

Shapes (every one must count the same donors and sum the same keys, or its answers differ
and it is refused):

- `fp`: the bodies as the service sends them;
- `no_fp`: every `fp` sum removed (what `fingerprints=False` sends: the baseline);
- `fp_all`, `no_fp_merged`: bodies the service split by keyed biobanks (`biobank` and
  `biobank_keyed`, when only some biobanks noise the asker) as one `terms` again, with
  every biobank keyed, or none;
- `keyed_only`: the split by hand, keying only the biobanks whose network-file rule gives
  a registered researcher noise (before the default noise for registered askers, and
  before the service split by itself);
- `no_country`, `no_fp_no_country`: the country facet's own buckets left out where the
  search counts each biobank's donors already (bodies from before the compiler did so);
- `fp_long`, `fp_double`: the sum read from a `long` / `double` copy of the key, when the
  indices have one (synced with the contract's `donor_key` given
  `"copy_to": ["donor_key_long", "donor_key_double"]` and those two fields mapped: how the
  field types were compared; not the shipped mapping).
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime as dt
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.engine_profile import own_times
from bench.engine_variants import node_cpu_ms
from bench.queries import QUESTIONS
from bench.runner import CACHE, ENGINE_URL, _runtime

Searches = list[tuple[str, dict[str, Any]]]


def _walk_aggs(aggs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every aggregation dict under `aggs`, depth first."""
    for agg in aggs.values():
        yield agg
        yield from _walk_aggs(agg.get("aggs", {}))


def rewrite_sums(change: Callable[[dict[str, Any]], None]) -> Callable[[Searches], Searches]:
    """A shape that applies `change` to every aggregation holding an `fp` sum."""

    def shape(searches: Searches) -> Searches:
        out: Searches = []
        for index, body in searches:
            copied = copy.deepcopy(body)
            for agg in _walk_aggs(copied.get("aggs", {})):
                if "fp" in agg.get("aggs", {}):
                    change(agg)
            out.append((index, copied))
        return out

    return shape


def _drop_fp(agg: dict[str, Any]) -> None:
    del agg["aggs"]["fp"]
    if not agg["aggs"]:
        del agg["aggs"]


def _sum_of(field: str) -> Callable[[dict[str, Any]], None]:
    def change(agg: dict[str, Any]) -> None:
        agg["aggs"]["fp"] = {"sum": {"field": field}}

    return change


def keyed_only(noised: Sequence[str]) -> Callable[[Searches], Searches]:
    """A shape with the per-biobank buckets split in two sibling `terms`: the `noised`
    biobanks' with the sums, every other biobank's without (their figures carry no noise,
    so their fingerprints are never used)."""

    def shape(searches: Searches) -> Searches:
        out: Searches = []
        for index, body in searches:
            copied = copy.deepcopy(body)
            matching = copied["aggs"]["samples"]["aggs"]["matching"]["aggs"]
            keyed = matching["biobank"]
            plain = copy.deepcopy(keyed)
            for agg in _walk_aggs(plain["aggs"]):
                if "fp" in agg.get("aggs", {}):
                    _drop_fp(agg)
            keyed["terms"]["include"] = list(noised)
            plain["terms"]["exclude"] = list(noised)
            matching["biobank"] = plain
            matching["biobank_keyed"] = keyed
            out.append((index, copied))
        return out

    return shape


def merged(keyed: bool) -> Callable[[Searches], Searches]:
    """Split bodies (`fingerprints` a set of biobanks) as one `terms` over every biobank:
    the keyed half without its `include` (every biobank keyed, what `True` sends), or the
    plain half without its `exclude` (none keyed, what `False` sends)."""

    def shape(searches: Searches) -> Searches:
        out: Searches = []
        for index, body in searches:
            copied = copy.deepcopy(body)
            matching = copied["aggs"]["samples"]["aggs"]["matching"]["aggs"]
            if "biobank_keyed" in matching:
                keyed_terms = matching.pop("biobank_keyed")
                whole = keyed_terms if keyed else matching["biobank"]
                whole["terms"].pop("include", None)
                whole["terms"].pop("exclude", None)
                matching["biobank"] = whole
            if not keyed:
                copied = rewrite_sums(_drop_fp)([(index, copied)])[0][1]
            out.append((index, copied))
        return out

    return shape


def without_country(searches: Searches) -> Searches:
    """The bodies without the country facet's own buckets where the same search counts
    each biobank's donors already (one bucket per biobank: the same donors)."""
    out: Searches = []
    for index, body in searches:
        copied = copy.deepcopy(body)
        inner = copied["aggs"]["samples"]["aggs"]["matching"]["aggs"]["biobank"]["aggs"]
        if "donors" in inner:
            inner.pop("facet_country", None)
        out.append((index, copied))
    return out


def msearch(engine_url: str, searches: Searches, profile: bool = False) -> list[dict[str, Any]]:
    """The searches' answers from one msearch, request cache off; fail on any error."""
    lines: list[str] = []
    for index, body in searches:
        sent = {**body, "profile": True} if profile else body
        lines += [json.dumps({"index": index, "request_cache": False}), json.dumps(sent)]
    request = urllib.request.Request(
        f"{engine_url}/_msearch",
        data=("\n".join(lines) + "\n").encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.load(response)
    items: list[dict[str, Any]] = answer["responses"]
    for item in items:
        if "error" in item:
            raise SystemExit(f"search failed: {item['error']}")
    return items


def _counts(items: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Every doc_count and fp value of the answers, in order (the shapes must agree)."""
    out: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in sorted(node):
                if key in ("doc_count", "value"):
                    out.append((key, node[key]))
                walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for item in items:
        walk(item.get("aggregations", {}))
    return out


def agg_times(items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The node's own time per aggregation type (ms), summed over searches and shards."""
    times: dict[str, float] = collections.defaultdict(float)
    for item in items:
        for shard in item["profile"]["shards"]:
            raw: collections.Counter[str] = collections.Counter()
            own_times(shard.get("aggregations", []), "agg", raw)
            for search in shard["searches"]:
                own_times(search["query"], "query", raw)
            for key, nanos in raw.items():
                kind = key.split(" ")[0]
                times[kind] += nanos / 1e6
    return times


def _biobank_cells(items: Sequence[Mapping[str, Any]]) -> dict[tuple[int, str], Any]:
    out: dict[tuple[int, str], Any] = {}
    for n, item in enumerate(items):
        matching = item["aggregations"]["samples"]["matching"]
        for name in ("biobank", "biobank_keyed"):
            for bucket in matching.get(name, {}).get("buckets", []):
                out[(n, bucket["key"])] = bucket
    return out


def check_keyed_only(
    engine_url: str, full: Searches, split: Searches, noised: Sequence[str]
) -> None:
    """The split shape counts what the full one counts, with the same sums where noised."""
    whole = _biobank_cells(msearch(engine_url, full))
    parts = _biobank_cells(msearch(engine_url, split))
    if set(whole) != set(parts):
        raise SystemExit("keyed_only: other biobank buckets than fp")
    for key, bucket in whole.items():
        counts, other = _counts([{"aggregations": bucket}]), _counts([{"aggregations": parts[key]}])
        if key[1] not in noised:
            counts = [c for c in counts if c[0] == "doc_count"]
            other = [c for c in other if c[0] == "doc_count"]
        if counts != other:
            raise SystemExit(f"keyed_only: {key} differs from fp")


def noised_biobanks(args: argparse.Namespace) -> list[str]:
    """The biobanks whose figures a registered researcher gets with noise."""
    import yaml

    network = CACHE / f"network-n{args.samples}-b{args.biobanks}-s{args.seed}" / "network.yaml"
    data = yaml.safe_load(network.read_text(encoding="utf-8"))
    return sorted(
        b["id"]
        for b in data["biobanks"]
        if (b.get("disclosure", {}).get("registered", {}).get("noise") or 0) > 0
    )


def capture(args: argparse.Namespace, prefix: str) -> dict[str, Searches]:
    """The msearch bodies the service sends per question for a registered researcher."""
    from federation.disclosure.roles import Identity
    from federation.search.warm import PublishedAnswers

    network = CACHE / f"network-n{args.samples}-b{args.biobanks}-s{args.seed}"
    runtime = _runtime(
        {
            "BIOFED_DATA_DIR": str(CACHE / "runs" / args.run / "data"),
            "BIOFED_NETWORK": str(network / "network.yaml"),
            "BIOFED_BACKEND": "opensearch",
            "BIOFED_ENGINE_URLS": args.engine_url,
            "BIOFED_ENGINE_INDEX_PREFIX": prefix,
            "BIOFED_ENGINE_SEARCH_TIMEOUT": "120",
            "BIOFED_SECRET_KEY": "fingerprints",
        }
    )
    captured: list[Searches] = []
    reader = runtime.backend.reader
    send: Any = reader.msearch

    def keep(searches: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        captured.append([(index, dict(body)) for index, body in searches])
        answers: list[dict[str, Any]] = send(searches)
        return answers

    reader.msearch = keep
    # Every question asked of the backend, none cut from the warm landing answer.
    runtime.search.source = PublishedAnswers(
        runtime.backend, runtime.store.publications, warm=False
    )
    researcher = Identity(subject="bench-fingerprints", authenticated=True, via="api_key")
    out: dict[str, Searches] = {}
    for question in QUESTIONS:
        if question.name not in args.question:
            continue
        captured.clear()
        purpose = question.research_purpose(dt.date.today())
        runtime.search.search(question.query, identity=researcher, purpose=purpose)
        out[question.name] = [s for s in captured[0] if "aggs" in s[1]]
    runtime.backend.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_fingerprints", description=__doc__
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--biobanks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--run", default="", help="run folder (default privacy-opensearch-N)")
    parser.add_argument("--question", action="append", choices=[q.name for q in QUESTIONS])
    parser.add_argument("--shape", action="append", help="only these shapes (default all)")
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--node-pid", type=int, help="the node's process id (for CPU time)")
    parser.add_argument("--profile", action="store_true", help="also profile each shape")
    parser.add_argument("--engine-url", default=ENGINE_URL)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    args.run = args.run or f"privacy-opensearch-{args.samples}"
    args.question = args.question or ["landing", "chapter"]
    prefix_file = CACHE / "runs" / args.run / "engine-prefix"
    prefix = prefix_file.read_text(encoding="utf-8").strip()
    shapes: dict[str, Callable[[Searches], Searches]] = {
        "fp": lambda searches: searches,
        "no_fp": rewrite_sums(_drop_fp),
        "fp_long": rewrite_sums(_sum_of("donor_key_long")),
        "fp_double": rewrite_sums(_sum_of("donor_key_double")),
    }
    shapes["fp_all"] = merged(True)
    shapes["no_fp_merged"] = merged(False)
    shapes["no_country"] = without_country
    shapes["no_fp_no_country"] = lambda searches: rewrite_sums(_drop_fp)(without_country(searches))
    noised = noised_biobanks(args)
    shapes["keyed_only"] = keyed_only(noised)
    if args.shape:
        shapes = {name: shapes[name] for name in args.shape}
    bodies: dict[tuple[str, str], Searches] = {}
    for question, searches in capture(args, prefix).items():
        for shape, rewrite in shapes.items():
            bodies[(question, shape)] = rewrite(searches)
    reference: dict[str, list[Any]] = {}
    for (question, shape), searches in bodies.items():  # one warm-up each, answers compared
        counts = _counts(msearch(args.engine_url, searches))
        if (
            shape in ("fp", "fp_long", "fp_double")
            and reference.setdefault(question, counts) != counts
        ):
            raise SystemExit(f"{question}: shape {shape} answers differently from fp")
    for (question, shape), searches in bodies.items():
        if shape == "keyed_only":
            check_keyed_only(args.engine_url, bodies[(question, "fp")], searches, noised)
    took: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    wall: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    cpu: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    profiled: dict[tuple[str, str], list[dict[str, float]]] = collections.defaultdict(list)
    load_before = os.getloadavg()
    keys = list(bodies)
    for rep in range(args.reps):
        rotated = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in rotated:
            before = node_cpu_ms(args.node_pid) if args.node_pid else 0.0
            started = time.perf_counter()
            items = msearch(args.engine_url, bodies[key])
            wall[key].append((time.perf_counter() - started) * 1000)
            if args.node_pid:
                cpu[key].append(node_cpu_ms(args.node_pid) - before)
            took[key].append(float(sum(item["took"] for item in items)))
            if args.profile:
                profiled[key].append(agg_times(msearch(args.engine_url, bodies[key], True)))
    report: dict[str, Any] = {
        "benchmark": "engine_fingerprints",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run": args.run,
        "reps": args.reps,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "results": {},
    }
    for question, shape in keys:
        key = (question, shape)
        entry: dict[str, Any] = {
            "took_p50_ms": statistics.median(took[key]),
            "wall_p50_ms": round(statistics.median(wall[key]), 1),
        }
        if cpu[key]:
            entry["node_cpu_p50_ms"] = statistics.median(cpu[key])
        if profiled[key]:
            kinds = sorted({k for c in profiled[key] for k in c})
            entry["profile_p50_ms"] = {
                k: round(statistics.median(c.get(k, 0.0) for c in profiled[key]), 1) for k in kinds
            }
        report["results"].setdefault(question, {})[shape] = entry
    for question, by_shape in report["results"].items():
        base = by_shape.get("no_fp", {}).get("took_p50_ms")
        for shape, entry in by_shape.items():
            ratio = f"{entry['took_p50_ms'] / base:6.3f}" if base else "     -"
            print(
                f"{question:16s} {shape:10s} took p50 {entry['took_p50_ms']:7.1f} ms ({ratio})"
                f"  cpu p50 {entry.get('node_cpu_p50_ms', float('nan')):7.1f}"
                f"  wall p50 {entry['wall_p50_ms']:7.1f}"
            )
            for kind, ms in sorted(entry.get("profile_p50_ms", {}).items(), key=lambda x: -x[1]):
                print(f"{'':28s}{ms:9.1f} ms  {kind}")
    print(f"# load average before {load_before}, after {report['loadavg_after']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
