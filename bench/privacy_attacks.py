"""`python -m bench.privacy_attacks`: the red-team attacks of issue 12, re-measured.

Generates the demo network (table exports), syncs it, serves it under gunicorn with two
workers, and plays a registered researcher (API keys, one budget each) against it:
rewording one question 30 ways, averaging over distinct row sets around a withheld cell,
differencing one pair, and 40 purpose variants for the consent split. Prints the numbers
quoted in docs/privacy.md. The operator's exact counts are the truth the attacks are
scored against.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from federation.demo.generator import generate_network
from federation.gateway.auth import IssuedKey, issue_api_key
from federation.model.vocab import material_types
from federation.runtime import Runtime
from federation.settings import load_settings
from federation.sync.run import sync_biobank
from tests.support.server import graphql, gunicorn

COUNTS = """query($q: SampleQuery!, $p: ResearchPurpose) { search(query: $q, purpose: $p) {
  byBiobank { biobank { id } donors { value precision }
    consent { outcome donors { value precision } } } } }"""
BLOCKS = """query($q: SampleQuery!) { search(query: $q) {
  facets(names: ["block"]) { buckets { key donors { value } } } } }"""


def _donors(url: str, key: IssuedKey, query: dict[str, Any], purpose: Any = None) -> Any:
    body = graphql(url, COUNTS, {"q": query, "p": purpose}, {"Authorization": f"Bearer {key.key}"})
    assert "errors" not in body, body
    rows = body["data"]["search"]["byBiobank"]
    return rows[0] if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30_000)
    parser.add_argument("--attackers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261207)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="biofed-redteam-"))
    generate_network(root / "demo", biobanks=4, samples=args.samples, seed=args.seed)
    network = root / "demo" / "network.yaml"
    document = yaml.safe_load(network.read_text(encoding="utf-8"))
    # The noised biobank: a population cohort (k = 5, noise 1.5 for registered researchers).
    target_bb = next(e["id"] for e in document["biobanks"] if e["kind"] == "population")
    budget = document["privacy_budget"]["registered"]
    settings = load_settings(
        overrides={"data_dir": str(root / "data"), "network": str(network)},
        read_files=False,
        environ={},
    )
    runtime = Runtime(settings)
    for source in runtime.network().biobanks:
        sync_biobank(source, runtime.backend, runtime.state, locks_dir=settings.locks_dir)
    runtime.backend.close()

    operator = issue_api_key("ops@redteam", operator=True)
    keys = {f"a{n}": issue_api_key(f"a{n}@redteam") for n in range(2 * args.attackers + 2)}
    os.environ["BIOFED_AUTH"] = json.dumps(
        {"api_keys": [operator.entry, *(k.entry for k in keys.values())]}
    )
    os.environ["BIOFED_LIMITS"] = json.dumps({"rate_limit": {"enabled": False}})
    with gunicorn(root / "data", network, root / "server.log") as url:
        results = attack(url, operator, keys, target_bb, args.attackers)
    results["network"] = {"samples": args.samples, "biobank": target_bb, "budget": budget}
    print(json.dumps(results, indent=1))


def attack(
    url: str, operator: IssuedKey, keys: dict[str, IssuedKey], bb: str, attackers: int
) -> dict[str, Any]:
    op = {"Authorization": f"Bearer {operator.key}"}
    # The withheld cell: a disease block with 1 to 4 donors in one age decade (the decade
    # with the most blocks, so that many distinct row sets surround it).
    found = []
    for low in range(0, 100, 10):
        decade = {"biobanks": [bb], "ageMin": low, "ageMax": low + 9}
        facet = graphql(url, BLOCKS, {"q": decade}, op)["data"]["search"]["facets"][0]
        sizes = {b["key"]: b["donors"]["value"] for b in facet["buckets"]}
        small = sorted((n, k) for k, n in sizes.items() if 1 <= n <= 4)
        if small:
            found.append((len(sizes), low, sizes, small))
    _, low, sizes, small = max(found)
    decade = {"biobanks": [bb], "ageMin": low, "ageMax": low + 9}
    target, background = small[-1][1], max(sizes, key=lambda k: sizes[k])
    others = sorted(k for k in sizes if k not in (target, background))
    out: dict[str, Any] = {"target_block": target, "background_block": background, **decade}

    def truth(query: dict[str, Any]) -> int:
        return int(_donors(url, operator, query)["donors"]["value"])

    # 1. Rewording: 30 questions matching the background rows, one researcher.
    base = {"diseases": [background], **decade}
    tweaks = [
        {"diseases": [background, f"{background[:3]}"]},
        {"materials": list(material_types().codes)},
        {"ageMin": low},
        {"biobanks": [bb, bb]},  # an unknown id is refused as bad input now
        {"sexes": ["FEMALE", "MALE", "UNKNOWN", "NASK", "NAV", "UNDIFFERENTIAL"]},
    ]
    seen = set()
    questions = 0
    for n in range(30):
        question = dict(base)
        for bit, tweak in enumerate(tweaks):
            if n >> bit & 1:
                question.update(tweak)
        row = _donors(url, keys["a0"], question)
        seen.add((row["donors"]["value"], row["donors"]["precision"]))
        questions += 1
    out["rewording"] = {"questions": questions, "distinct_values": len(seen)}

    # 1b. Many questions in one request: 50 aliases are refused, 5 all release one value.
    auth = {"Authorization": f"Bearer {keys['a0'].key}"}
    fields = " ".join(
        f"q{n}: search(query: $q) {{ byBiobank {{ donors {{ value }} }} }}" for n in range(50)
    )
    fifty = graphql(url, f"query($q: SampleQuery!) {{ {fields} }}", {"q": base}, auth)
    five = graphql(
        url, "query($q: SampleQuery!) { " + fields.split(" q5:")[0] + " }", {"q": base}, auth
    )
    out["aliases"] = {
        "fifty_in_one_request": fifty["errors"][0]["extensions"]["code"],
        "five_in_one_request_distinct_values": len(
            {json.dumps(v["byBiobank"]) for v in five["data"].values()}
        ),
    }

    # 2. Averaging over distinct row sets: the background plus one more block each time,
    # so each pair counts other rows and draws fresh noise; scored against each pair's truth.
    errors, pairs, exact, ended_by_budget = [], [], 0, 0
    true_target = truth({"diseases": [target, background], **decade}) - truth(base)
    for n in range(attackers):
        key = keys[f"a{n + 1}"]
        differences, truths = [], []
        # Distinct extra row sets: one or two other blocks, a different order per attacker.
        extras = [list(c) for size in (1, 2, 3) for c in itertools.combinations(others, size)]
        random.Random(n).shuffle(extras)
        stopped = False
        for extra in extras:
            with_q = {"diseases": [target, background, *extra], **decade}
            without_q = {"diseases": [background, *extra], **decade}
            with_t = _donors(url, key, with_q)["donors"]
            without = _donors(url, key, without_q)["donors"]
            if with_t["value"] is None or without["value"] is None:
                stopped = with_t["precision"] == "BUDGET_SPENT" or without["precision"] == (
                    "BUDGET_SPENT"
                )
                break
            differences.append(with_t["value"] - without["value"])
            truths.append(truth(with_q) - truth(without_q))
        ended_by_budget += stopped
        estimate = statistics.fmean(differences) if differences else float("nan")
        real = statistics.fmean(truths) if truths else float("nan")
        pairs.append(len(differences))
        errors.append(estimate - real)
        exact += round(estimate) == round(real)
    rmse = statistics.fmean(e * e for e in errors) ** 0.5
    out["averaging"] = {
        "true_withheld_difference": true_target,
        "attackers": attackers,
        "pairs_before_budget_ran_out": statistics.median(pairs),
        "attacks_ended_by_the_budget": ended_by_budget,
        "requests_per_attacker": 2 * statistics.median(pairs) + 2,
        "rmse": round(rmse, 2),
        "attackers_exact": exact,
        "distinct_background_sets": len(
            [c for size in (1, 2, 3) for c in itertools.combinations(others, size)]
        ),
    }

    # 3. One differencing pair per fresh researcher.
    diffs, asked = [], set()
    for n in range(attackers):
        key = keys[f"a{attackers + 1 + n}"]
        extra = others[(n * 7) % len(others)]
        asked.add(extra)
        with_q = {"diseases": [target, background, extra], **decade}
        without_q = {"diseases": [background, extra], **decade}
        a = _donors(url, key, with_q)["donors"]["value"]
        b = _donors(url, key, without_q)["donors"]["value"]
        t = truth(with_q) - truth(without_q)
        diffs.append((a - b) == t)
    # The same row sets release the same values to everybody: attackers who ask the same
    # pair see the same difference, so what counts is how many distinct pairs there are.
    out["differencing"] = {"pairs": attackers, "distinct_pairs": len(asked), "exact": sum(diffs)}

    # 4. 40 purpose variants that give every donor the same outcome: the consent split.
    splits = set()
    last = keys[f"a{2 * attackers + 1}"]
    for n in range(40):
        purpose = {"kind": "GENERAL", "diseases": [["J45"], ["K35"], ["M54"], ["H52"]][n % 4]}
        row = _donors(url, last, base, purpose)
        splits.add(json.dumps(row["consent"], sort_keys=True))
    out["consent_split"] = {"variants": 40, "distinct_splits": len(splits)}
    return out


if __name__ == "__main__":
    main()
