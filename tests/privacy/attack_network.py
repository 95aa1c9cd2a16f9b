"""The network the attack tests play against, served under gunicorn, and the attacker's moves.

One biobank, `alpha`: 60 background donors with type 2 diabetes (E11.9), one per age from
20 to 79, and a target cell of 3 donors with lung cancer (C34.9) aged 52 to 54, which a
registered researcher (k = 5, noise scale 1) sees only as BELOW_THRESHOLD. Every donor has
one PLASMA sample, every third a second (DNA) one. Consent: GRU for everyone, so a
purpose changes no row set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from federation.gateway.auth import IssuedKey, issue_api_key
from federation.runtime import Runtime
from federation.sync.run import sync_biobank
from tests.conftest import make_settings
from tests.support.network import TabularBiobank, write_network
from tests.support.server import graphql, gunicorn

TARGET = 3  # donors in the withheld cell
MIN_COUNT = 5
NOISE = 1.0
# Per biobank and day: 16 fresh noised figures at scale 1 (docs/privacy.md).
BUDGET_EPSILON = 16.0
# A fixed server secret: the runs are reproducible (the noise is a function of it).
SECRET = "attack-tests-fixed-secret-0001"
REGISTERED = {"granularity": "count", "min_count": MIN_COUNT, "rounding": 1, "noise": NOISE}

SEARCH = """
query($q: SampleQuery!, $p: ResearchPurpose) {
  search(query: $q, purpose: $p) { ...Figures }
}
fragment Figures on SearchResult {
  donors { value precision reason exists }
  samples { value precision reason exists }
  byBiobank {
    biobank { id }
    donors { value precision reason exists }
    samples { value precision reason exists }
    consent { outcome donors { value precision } samples { value precision } }
  }
  consent { outcome donors { value precision } samples { value precision } }
  facets { name buckets { key donors { value precision } samples { value precision } } }
}"""

FIGURES_FRAGMENT = SEARCH[SEARCH.index("fragment") :]
# What an attacker asks when only the per-biobank donors matter: no facets, no purpose, so
# each question releases two fresh figures (donors and samples) and costs 2 epsilon.
COUNTS = """
query($q: SampleQuery!) {
  search(query: $q) { byBiobank { donors { value precision reason exists } } }
}"""


def build(root: Path) -> Path:
    """Write and sync the network; return the network file."""
    alpha = TabularBiobank(root, "alpha")
    donors = [(f"B{age}", "E11.9", "FEMALE" if age % 2 else "MALE", age) for age in range(20, 80)]
    donors += [(f"T{n}", "C34.9", "MALE", 52 + n) for n in range(TARGET)]
    for n, (donor, diagnosis, sex, age) in enumerate(donors):
        alpha.donor(donor, sex=sex, birth_year=2020 - age, diagnoses=diagnosis, consent="GRU")
        alpha.sample(f"S{donor}", donor, material="PLASMA", age_at_collection=age)
        if n % 3 == 0:
            alpha.sample(f"S{donor}b", donor, material="DNA", age_at_collection=age)
    network = write_network(root, [alpha])
    document = yaml.safe_load(network.read_text(encoding="utf-8"))
    document["default_disclosure"] = {"registered": REGISTERED}
    document["privacy_budget"] = {
        "registered": {"epsilon": BUDGET_EPSILON, "period": "day", "scope": "biobank"}
    }
    network.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    runtime = Runtime(make_settings(root, network))
    try:
        for source in runtime.network().biobanks:
            sync_biobank(
                source, runtime.backend, runtime.state, locks_dir=runtime.settings.locks_dir
            )
    finally:
        runtime.backend.close()
    return network


@dataclass
class Served:
    """The network under gunicorn, and how to start it again on the same data."""

    url: str
    root: Path
    network: Path
    keys: dict[str, IssuedKey]

    def ask(
        self, who: str, query: Mapping[str, Any], purpose: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One search as `who`; the whole response."""
        return graphql(self.url, SEARCH, {"q": dict(query), "p": purpose}, headers(self, who))

    def counts(self, who: str, query: Mapping[str, Any]) -> dict[str, Any]:
        """The donor count of the one biobank, as `who` sees it."""
        response = graphql(self.url, COUNTS, {"q": dict(query)}, headers(self, who))
        assert "errors" not in response, response
        donors: dict[str, Any] = response["data"]["search"]["byBiobank"][0]["donors"]
        return donors

    def post(self, who: str, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        return graphql(self.url, query, variables, headers(self, who))


def headers(served: Served, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.keys[who].key}"}


def attacker_keys(prefix: str, numbers: range) -> dict[str, IssuedKey]:
    """API keys of researchers `prefix<n>`, each with a budget of its own."""
    return {f"{prefix}{n}": issue_api_key(f"{prefix}{n}@attack.example") for n in numbers}


@contextmanager
def serve(root: Path, network: Path, keys: dict[str, IssuedKey], workers: int = 2) -> Iterator[str]:
    """The gateway under gunicorn on the network's data folder, accepting `keys`."""
    env = {
        "BIOFED_AUTH": json.dumps({"api_keys": [k.entry for k in keys.values()]}),
        "BIOFED_LIMITS": json.dumps({"rate_limit": {"enabled": False}}),
        "BIOFED_SECRET_KEY": SECRET,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with gunicorn(root / "data", network, root / "server.log", workers=workers) as url:
            yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
