"""The demo network: B synthetic biobanks exporting N samples in their own formats.

`generate_network(out, biobanks=B, samples=N, seed=S)` writes::

    OUT/network.yaml                                   biobanks, connectors, column mappings
    OUT/sources/<biobank_id>/collections.csv|.tsv      or OUT/sources/<biobank_id>/export.xlsx
    OUT/sources/<biobank_id>/donors.csv|.tsv           with the sheets collections, donors,
    OUT/sources/<biobank_id>/samples.csv|.tsv          samples

What N counts
    N is the number of sample rows written over all biobanks, exactly: dirty sample rows and
    the samples of withdrawn or rejected donors included. Each biobank gets at least
    `MIN_SAMPLES_PER_BIOBANK` rows, so N must be at least that times B. The summary says per
    biobank how many of its rows a correct sync rejects, keeps in part and how many are
    withdrawn, hence how many are searchable.

Realism
    Biobank kinds (population cohort, hospital, disease-specific) differ in ages, diagnoses,
    materials, samples per donor, consents and collections (`config/demo-profiles.yaml`).
    Sizes follow a Zipf-like law, population cohorts tending to be the largest. Each biobank
    has its own id styles, ICD-10 spellings (C50.9, C509, ICD10:C50.9) and export flavour:
    MIABIS-like CSV, a LIMS-style TSV with sex coded F/M/U and withdrawal Y/N, EMX-like CSV,
    or, for a few small biobanks, one XLSX workbook.

Dirty rows (`federation/demo/dirty.py`)
    Every biobank has between 0.2% and 0.5% of its sample rows dirty, and at least one row
    of each of these six kinds:

    1. invalid_diagnosis  a sample diagnosis that is not WHO ICD-10 (C50.99, F3181, X99.99):
                          a correct sync drops that value and keeps the sample (partial);
    2. missing_required   a sample with an empty material type or an empty donor id;
    3. unknown_material   a sample material outside the vocabulary (BLOOD_SPOT, Serum?);
    4. invalid_date       a sample collection date not ISO or impossible (2019-13-45);
    5. unknown_sex        a donor with an unknown sex code; its samples, otherwise valid,
                          are rejected with it (`donor_rejected`);
    6. unknown_donor      a sample whose donor id matches no donor row.

    A dirty sample row is one of several samples of its donor, who keeps a valid one; rows
    of withdrawn donors (1-3% of donors per biobank) are all valid but never searchable.

Determinism
    All randomness comes from `random.Random` seeded with S (one stream per biobank); the
    demo's "today" is the constant `TODAY`. The same arguments give byte-identical files.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from federation.demo.export import (
    LIST_SEPARATOR,
    TODAY,
    BiobankExport,
    BiobankPlan,
    BiobankSummary,
)
from federation.demo.profiles import KINDS, Flavour, PoolEntry, Profiles, load_profiles
from federation.demo.sources import EXPORTS, PAGE_SIZE
from federation.demo.tables import XLSX_FILE

__all__ = ["TODAY", "BiobankSummary", "NetworkSummary", "generate_network"]

MIN_SAMPLES_PER_BIOBANK = 20
# XLSX is slow to write and to read; real spreadsheets exports are small biobanks.
XLSX_MAX_SAMPLES = 50_000
# Flavours taken in turn by biobanks not exported as XLSX.
DELIMITED_FLAVOURS = ("miabis-csv", "lims-tsv", "emx-csv")
XLSX_FLAVOUR = "registry-xlsx"
# How strongly sizes fall with rank (Zipf exponent) and how much each biobank strays.
ZIPF_EXPONENT = 1.0
SIZE_SCATTER = 0.25
# Population cohorts are usually the largest biobanks, rare-disease ones the smallest.
KIND_SIZE_RANK = {"population": 0.0, "hospital": 0.8, "disease": 1.6}


@dataclass(frozen=True)
class NetworkSummary:
    """What `generate_network` wrote: the network file and per-biobank counts."""

    network_path: Path  # OUT/network.yaml
    biobanks: tuple[BiobankSummary, ...]

    @property
    def samples(self) -> int:
        return sum(b.samples for b in self.biobanks)

    def biobank(self, biobank_id: str) -> BiobankSummary:
        return next(b for b in self.biobanks if b.id == biobank_id)


@dataclass(frozen=True)
class _Entry:
    """A biobank of the network: from the named pool or named on the fly."""

    id: str
    kind: str
    country: str
    city: str
    name: str
    name_ja: str
    diseases: tuple[str, ...]


# Told after each biobank is written: its summary, how many are done, how many in all.
GenerationProgress = Callable[[BiobankSummary, int, int], None]


def generate_network(
    out: Path,
    *,
    biobanks: int,
    samples: int,
    seed: int,
    sources: str = "tables",
    progress: GenerationProgress | None = None,
) -> NetworkSummary:
    """Write a deterministic demo network of `biobanks` biobanks and `samples` sample rows.

    `sources="mixed"` makes three biobanks network sources (from four biobanks on): a
    hospital serving FHIR R4, a rare-disease biobank behind a Beacon v2, one behind a REST
    API, each recorded as pages on disk (`federation/demo/sources.py`); the rest export
    tables. `"tables"` keeps every biobank on table exports.
    """
    if sources not in ("tables", "mixed"):
        raise ValueError(f"sources: {sources!r} is not tables or mixed")
    if biobanks < 1:
        raise ValueError(f"biobanks must be at least 1, got {biobanks}")
    least = MIN_SAMPLES_PER_BIOBANK * biobanks
    if samples < least:
        raise ValueError(
            f"samples={samples} is too few for {biobanks} biobanks: each gets at least "
            f"{MIN_SAMPLES_PER_BIOBANK}, so samples must be at least {least}"
        )
    profiles = load_profiles()
    rng = random.Random(seed)
    entries = _entries(profiles, biobanks, rng)
    sizes = _sizes(entries, samples, rng)
    flavours = _flavours(sizes, rng)
    chosen = {name: profiles.flavours[name] for name in set(flavours)}
    if sources == "mixed":
        for index, fmt in _network_sources(entries, sizes, flavours).items():
            flavours[index] = fmt
            chosen[fmt] = _recorded_flavour(fmt)
    out = Path(out)
    summaries = []
    listed = []
    for number, (entry, size, flavour_name) in enumerate(
        zip(entries, sizes, flavours, strict=True)
    ):
        kind = profiles.kinds[entry.kind]
        labels = [profiles.diseases[d].label.lower() for d in entry.diseases] or ["its diseases"]
        plan = BiobankPlan(
            id=entry.id,
            kind=entry.kind,
            name=entry.name,
            country=entry.country,
            city=entry.city,
            diseases=entry.diseases,
            samples=size,
            flavour=chosen[flavour_name],
            description=kind.description.format(city=entry.city, diseases=", ".join(labels)),
        )
        # One stream per biobank, so one biobank's draws never shift another's.
        export = BiobankExport(plan, profiles, random.Random(f"{seed}/{number}/{entry.id}"))
        summaries.append(export.write(out / "sources" / entry.id))
        listed.append(_network_entry(entry, plan))
        if progress is not None:
            progress(summaries[-1], number + 1, len(entries))
    network_path = out / "network.yaml"
    _write_network_yaml(
        network_path, listed, biobanks=biobanks, samples=samples, seed=seed, sources=sources
    )
    return NetworkSummary(network_path, tuple(summaries))


def _entries(profiles: Profiles, count: int, rng: random.Random) -> list[_Entry]:
    """The pool in order, then biobanks named from the city lists."""
    entries = [_from_pool(e) for e in profiles.pool[:count]]
    names = profiles.generated_names
    taken = {e.id for e in entries}
    used_cities: dict[str, int] = {}
    while len(entries) < count:
        country = names.countries.values[_weighted_index(names.countries.cum_weights, rng)]
        kind = names.kinds.values[_weighted_index(names.kinds.cum_weights, rng)]
        cities = names.cities[country]
        turn = used_cities.get(country, 0)
        used_cities[country] = turn + 1
        city, city_ja = cities[turn % len(cities)]
        template = names.kind_names[kind]
        slug = f"{country.lower()}-{_slug(city)}-{template['slug']}"
        ident, suffix = slug, 2
        while ident in taken:
            ident, suffix = f"{slug}-{suffix}", suffix + 1
        taken.add(ident)
        primary = list(profiles.kinds[kind].primary)
        diseases = tuple(rng.sample(primary, rng.randint(1, 3))) if kind == "disease" else ()
        entries.append(
            _Entry(
                id=ident,
                kind=kind,
                country=country,
                city=city,
                name=template["en"].format(city=city),
                name_ja=template["ja"].format(city_ja=city_ja) if city_ja else "",
                diseases=diseases,
            )
        )
    return entries


def _from_pool(entry: PoolEntry) -> _Entry:
    return _Entry(
        entry.id, entry.kind, entry.country, entry.city, entry.name, entry.name_ja, entry.diseases
    )


def _sizes(entries: list[_Entry], total: int, rng: random.Random) -> list[int]:
    """Split `total` sample rows Zipf-like, larger shares going mostly to population cohorts."""
    count = len(entries)
    shares = sorted(
        (
            math.exp(rng.gauss(0.0, SIZE_SCATTER)) / (rank + 1) ** ZIPF_EXPONENT
            for rank in range(count)
        ),
        reverse=True,
    )
    order = sorted(range(count), key=lambda i: KIND_SIZE_RANK[entries[i].kind] + rng.random() * 1.6)
    whole = sum(shares)
    sizes = [0] * count
    for share, index in zip(shares, order, strict=True):
        sizes[index] = max(MIN_SAMPLES_PER_BIOBANK, int(total * share / whole))
    # Rounding and the floor leave a difference; the largest biobanks absorb it.
    by_size = sorted(range(count), key=lambda i: -sizes[i])
    difference = total - sum(sizes)
    for index in by_size:
        if difference == 0:
            break
        change = max(difference, MIN_SAMPLES_PER_BIOBANK - sizes[index])
        sizes[index] += change
        difference -= change
    return sizes


def _flavours(sizes: list[int], rng: random.Random) -> list[str]:
    """XLSX for a few small biobanks (from three biobanks on), CSV and TSV in turn for the rest."""
    count = len(sizes)
    largest = max(range(count), key=lambda i: sizes[i])
    candidates = sorted(
        (i for i in range(count) if sizes[i] <= XLSX_MAX_SAMPLES and i != largest),
        key=lambda i: sizes[i],
    )
    wanted = 0 if count < 3 else max(1, count // 7)
    # Among the smallest: spreadsheets are how small biobanks export, and writing XLSX is
    # some ten times slower than CSV.
    smallest = candidates[: 2 * wanted]
    xlsx = set(rng.sample(smallest, min(wanted, len(smallest))))
    flavours, turn = [], 0
    for index in range(count):
        if index in xlsx:
            flavours.append(XLSX_FLAVOUR)
        else:
            flavours.append(DELIMITED_FLAVOURS[turn % len(DELIMITED_FLAVOURS)])
            turn += 1
    return flavours


def _weighted_index(cum_weights: tuple[float, ...], rng: random.Random) -> int:
    target = rng.random() * cum_weights[-1]
    return next(i for i, w in enumerate(cum_weights) if target < w)


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch if ch.isalnum() else "-" for ch in ascii_text.lower()).strip("-")


def _network_sources(
    entries: list[_Entry], sizes: list[int], flavours: list[str]
) -> dict[int, str]:
    """Which biobanks become FHIR, Beacon and REST sources (never the largest, nor XLSX).

    A hospital serves FHIR (German ones first: BBMRI.de is the German node's profile), a
    rare-disease biobank a Beacon (their materials all have sample-origin terms), and a
    further biobank a REST API.
    """
    if len(entries) < 4:
        return {}
    largest = max(range(len(sizes)), key=lambda i: sizes[i])
    free = [i for i in range(len(entries)) if i != largest and flavours[i] != XLSX_FLAVOUR]
    picked: dict[int, str] = {}
    hospitals = sorted(
        (i for i in free if entries[i].kind == "hospital"),
        key=lambda i: (entries[i].country != "DE", i),
    )
    if hospitals:
        picked[hospitals[0]] = "fhir"
    rare = [i for i in free if entries[i].kind == "disease" and i not in picked]
    if rare:
        picked[rare[0]] = "beacon"
    rest = [i for i in free if i not in picked]
    if rest:
        picked[rest[-1]] = "rest"
    return picked


def _recorded_flavour(fmt: str) -> Flavour:
    """A network source's flavour: rows keep canonical fields; the format does the rest."""
    from federation.demo.tables import FIELDS

    return Flavour(
        name=fmt,
        format=fmt,
        columns={stream: {f: f for f in fields} for stream, fields in FIELDS.items()},
        values={},
    )


def _network_entry(entry: _Entry, plan: BiobankPlan) -> dict[str, Any]:
    flavour = plan.flavour
    folder = f"sources/{entry.id}"
    if flavour.format in EXPORTS:
        connector = {
            "type": flavour.format,
            "options": EXPORTS[flavour.format].options(folder, PAGE_SIZE),
        }
        return _describe(entry, plan, connector)
    if flavour.format == "xlsx":
        path = f"{folder}/{XLSX_FILE}"
        files = {stream: stream for stream in flavour.columns}
    else:
        path = folder
        files = {stream: f"{stream}.{flavour.format}" for stream in flavour.columns}
    connector = {
        "type": "tabular",
        "options": {
            "path": path,
            "format": flavour.format,
            "files": files,
            "list_separator": LIST_SEPARATOR,
            "columns": {stream: dict(columns) for stream, columns in flavour.columns.items()},
            **(
                {"values": {f: dict(v) for f, v in flavour.values.items()}}
                if flavour.values
                else {}
            ),
        },
    }
    return _describe(entry, plan, connector)


def _describe(entry: _Entry, plan: BiobankPlan, connector: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": entry.id, "name": entry.name}
    if entry.name_ja:
        item["name_ja"] = entry.name_ja
    item.update(
        country=entry.country,
        url=f"https://biobank.example.org/{entry.id}",
        contact_email=f"biobank@{entry.id}.example.org",
        description=plan.description,
        kind=entry.kind,
        disclosure=DEMO_DISCLOSURE[entry.kind],
        connector=connector,
        access={"url": f"https://biobank.example.org/{entry.id}/apply", **DEMO_ACCESS[entry.kind]},
    )
    return item


# What a demo biobank's page says about applying for samples, by kind of biobank.
DEMO_ACCESS: dict[str, dict[str, str]] = {
    "population": {
        "conditions": "Research on health and disease by academic or public institutions, "
        "after ethics approval; data access committee review.",
        "conditions_ja": "倫理審査の承認を受けた大学・公的機関による保健医療研究。"
        "データアクセス委員会の審査があります。",
    },
    "hospital": {
        "conditions": "Academic research with ethics approval; collaboration with the "
        "hospital's clinicians is expected.",
        "conditions_ja": "倫理審査の承認を受けた学術研究。病院の臨床医との共同研究が前提です。",
    },
    "disease": {
        "conditions": "Research on the diseases the biobank collects for; samples are scarce "
        "and shared in small amounts.",
        "conditions_ja": "収集対象の疾患に関する研究に限ります。試料は少量ずつの提供です。",
    },
}


# Disclosure policies of the demo biobanks, so the demo shows how answers differ by role:
# cohorts and hospitals release rounded counts to the public (hospitals more coarsely),
# rare-disease biobanks only tell the public whether they have matches. Approved
# researchers and admins get the defaults (exact counts and records).
DEMO_DISCLOSURE: dict[str, dict[str, dict[str, Any]]] = {
    "population": {
        "anonymous": {"granularity": "count", "min_count": 10, "rounding": 10},
        "registered": {"granularity": "count", "min_count": 5, "noise": 1.5},
    },
    "hospital": {
        "anonymous": {"granularity": "count", "min_count": 20, "rounding": 10},
        "registered": {"granularity": "count", "min_count": 5, "rounding": 5},
    },
    "disease": {
        "anonymous": {"granularity": "boolean"},
        "registered": {"granularity": "count", "min_count": 10, "rounding": 5, "noise": 1.0},
    },
}


# The recommended budget for researchers whose counts carry noise (docs/privacy.md has the
# arithmetic): 16 epsilon per biobank per day keeps an averaging attack's error at or above
# the noise scale's square root (>= 1 donor for scale >= 1) within a day.
DEMO_PRIVACY_BUDGET: dict[str, dict[str, Any]] = {
    "registered": {
        "epsilon": 16,
        "period": "day",
        "scope": "biobank",
        "fallback": "threshold_only",
    }
}


def _write_network_yaml(
    path: Path,
    entries: list[dict[str, Any]],
    *,
    biobanks: int,
    samples: int,
    seed: int,
    sources: str,
) -> None:
    header = (
        "# Synthetic demo network: no row describes a real person or a real holding.\n"
        "# generated by `biofed demo-data "
        f"--biobanks {biobanks} --samples {samples} --seed {seed} --sources {sources}`\n"
        f"# demo date: {TODAY.isoformat()}; biobank kinds: {', '.join(KINDS)}\n"
    )
    body = yaml.safe_dump(
        {
            "generated": {
                "biobanks": biobanks,
                "samples": samples,
                "seed": seed,
                "sources": sources,
            },
            "privacy_budget": DEMO_PRIVACY_BUDGET,
            # Signed-in researchers may request samples (docs/requests.md).
            "access_requests": {"roles": ["registered", "approved"]},
            "biobanks": entries,
        },
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body, encoding="utf-8")
