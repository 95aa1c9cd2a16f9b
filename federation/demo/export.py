"""One demo biobank's export: its collections, donors and samples, written as it would be.

Rows are streamed: donors are drawn one at a time, each with all its samples, and written
in batches, so memory stays flat whatever the size. Everything random comes from the one
`random.Random` the biobank is given, in a fixed order, so a seed fixes every byte.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from random import Random
from typing import Any

from federation.demo import dirty, sources
from federation.demo.profiles import (
    CollectionTemplate,
    DiseaseGroup,
    Flavour,
    KindProfile,
    ProfileError,
    Profiles,
    Weighted,
)
from federation.demo.tables import (
    EXPORT_FILES,
    FIELDS,
    DelimitedTables,
    Tables,
    WorkbookTables,
)

# The demo's "now": ages, dates and timestamps are computed against it, never the clock.
TODAY = dt.date(2026, 10, 1)
EXPORTED_ON = TODAY - dt.timedelta(days=1)
# A sample's record is last touched within this many days of its collection.
LAST_UPDATE_WINDOW_DAYS = 900
# Share of hospital donors of a disease with a disease-specific collection who land in it.
DISEASE_COLLECTION_SHARE = 0.85
# A few population donors have no recorded sex; that is valid (UNKNOWN), unlike dirty codes.
UNKNOWN_SEX_SHARE = 0.002
WITHDRAWN_SHARE = (0.01, 0.03)
TISSUE_MATERIALS = frozenset({"TISSUE_FROZEN", "TISSUE_PARAFFIN_EMBEDDED"})
LIST_SEPARATOR = ";"
_BATCH_ROWS = 4096
_FIRST_DAY = dt.date(1990, 1, 1).toordinal()


@dataclass(frozen=True)
class BiobankPlan:
    """What the network plan decided for one biobank before its rows are drawn."""

    id: str
    kind: str
    name: str
    country: str
    city: str
    diseases: tuple[str, ...]  # disease groups it sees; empty means the kind's full set
    samples: int
    flavour: Flavour
    description: str


@dataclass(frozen=True)
class BiobankSummary:
    """Counts of what was written for one biobank (rows, not valid records)."""

    id: str
    kind: str
    format: str
    donors: int  # donor rows written
    samples: int  # sample rows written, dirty ones included
    dirty: dict[str, int] = field(default_factory=dict)  # rows written invalid, by kind
    rejected_donors: int = 0
    rejected_samples: int = 0  # dirty sample rows plus every sample of a rejected donor
    partial_samples: int = 0  # dirty rows a correct sync keeps without the spoiled value
    withdrawn_donors: int = 0
    withdrawn_samples: int = 0

    @property
    def dirty_rows(self) -> int:
        return sum(self.dirty.values())

    @property
    def searchable_donors(self) -> int:
        """Donors a correct sync indexes and counts: valid and not withdrawn."""
        return self.donors - self.rejected_donors - self.withdrawn_donors

    @property
    def searchable_samples(self) -> int:
        """Samples a correct sync indexes and counts: valid, of a valid, consenting donor."""
        return self.samples - self.rejected_samples - self.withdrawn_samples


@dataclass(frozen=True)
class _Collection:
    id: str
    name: str
    types: tuple[str, ...]
    default_consent: str
    description: str
    diseases: tuple[str, ...]
    weight: float


@cache
def _calendar() -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """ISO text, year and day of year of every day from 1990 to TODAY, by ordinal offset.

    Looking these up is several times faster than building `date` objects per sample.
    """
    days = [dt.date.fromordinal(o) for o in range(_FIRST_DAY, TODAY.toordinal() + 1)]
    return (
        tuple(d.isoformat() for d in days),
        tuple(d.year for d in days),
        tuple(d.timetuple().tm_yday for d in days),
    )


_TIMES_OF_DAY = tuple(f"T{h:02d}:{m:02d}:00" for h in range(7, 20) for m in (0, 15, 30, 45))


def _pick(weighted: Weighted, r: float) -> str:
    return weighted.values[bisect(weighted.cum_weights, r * weighted.total)]


class BiobankExport:
    """Draws one biobank's rows and writes them in its flavour."""

    def __init__(self, plan: BiobankPlan, profiles: Profiles, rng: Random) -> None:
        self.plan = plan
        self.profiles = profiles
        self.kind: KindProfile = profiles.kinds[plan.kind]
        self.rng = rng
        kind = self.kind
        self.prefix = _prefix(plan.city, plan.kind)
        self.groups = self._disease_weights()
        self.collections = self._collections()
        self.donor_style = rng.randrange(3)
        self.sample_style = rng.randrange(3)
        self.pseudonym_offset = rng.randrange(1 << 32)
        # How this biobank spells ICD-10 codes: dotted (C50.9), compact (C509), prefixed.
        dotted = rng.uniform(0.6, 0.95)
        compact = rng.uniform(0.0, 1.0 - dotted)
        self.spelling = Weighted(("dotted", "compact", "prefixed"), (dotted, dotted + compact, 1.0))
        self.temperature = {
            material: _pick(choices, rng.random())
            for material, choices in profiles.storage_temperatures.items()
        }
        combos = kind.data_categories
        self.categories = Weighted.of(
            {LIST_SEPARATOR.join(c): rng.uniform(0.2, 1.0) for c in combos}, plan.id
        )
        self.start = dt.date(kind.first_year + rng.randrange(6), 1, 1).toordinal()
        self.end = EXPORTED_ON.toordinal() - 1
        self.utc_offset = profiles.utc_offset(plan.country)

    # --- the biobank's shape -------------------------------------------------------------

    def _disease_weights(self) -> Weighted | None:
        """Primary diagnoses this biobank sees, weighted for its country and its own mix."""
        kind, plan = self.kind, self.plan
        keys = [k for k in kind.primary if not plan.diseases or k in plan.diseases]
        if not keys:
            return None
        diseases = self.profiles.diseases
        weights = {
            k: kind.primary[k]
            * diseases[k].country_weight.get(plan.country, 1.0)
            * self.rng.uniform(0.5, 1.5)
            for k in keys
        }
        return Weighted.of(weights, plan.id)

    def _collections(self) -> list[_Collection]:
        kind, plan, rng = self.kind, self.plan, self.rng
        templates = kind.collections
        if plan.kind == "disease":
            if self.groups is None:
                raise ProfileError(f"{plan.id}: a disease biobank needs diseases of its kind")
            chosen: list[tuple[CollectionTemplate, tuple[str, ...]]] = [
                (templates[i % len(templates)], (key,))
                for i, key in enumerate(self.groups.values[:3])
            ]
        else:
            extra = rng.sample(templates[1:], rng.randrange(min(3, len(templates))))
            keep = set(self.groups.values) if self.groups else set()
            chosen = [(templates[0], templates[0].diseases)]
            chosen += [(t, tuple(d for d in t.diseases if d in keep)) for t in extra]
            chosen = [(t, d) for t, d in chosen if d or not t.diseases]
        style = rng.randrange(2)
        out = []
        for number, (template, keys) in enumerate(chosen, start=1):
            labels = [self.profiles.diseases[k].label for k in keys]
            name = template.name.format(
                city=plan.city, name=plan.name, disease_label=" and ".join(labels)
            )
            consent = template.default_consent.replace("{country}", plan.country)
            consent = consent.replace("{diseases}", ",".join(keys))
            if keys:
                description = f"Samples and data of patients with {_and(labels).lower()}."
            else:
                description = plan.description
            ident = (
                f"bbmri-eric:ID:{plan.country}_{self.prefix}:collection:{number}"
                if style == 0
                else f"{self.prefix}-COL{number:02d}"
            )
            out.append(
                _Collection(
                    ident, name, template.types, consent, description, keys, template.weight
                )
            )
        return out

    def donor_id(self, n: int) -> str:
        if self.donor_style == 0:
            return f"D{n:06d}"
        if self.donor_style == 1:
            # A bijection of the counter: looks random, never collides.
            return f"{self.prefix}-{(n * 2654435761 + self.pseudonym_offset) % (1 << 32):08X}"
        return f"P{n:07d}"

    def spell(self, code: str, style: str) -> str:
        if style == "compact":
            return code.replace(".", "")
        if style == "prefixed":
            return f"ICD10:{code}"
        return code

    # --- planning donors and dirty rows --------------------------------------------------

    def plan_donors(self, floor: int) -> list[int]:
        """Samples per donor, adding up to exactly the biobank's sample count."""
        spd = self.kind.samples_per_donor
        values = [max(floor, int(v)) for v in spd.values]
        smallest = min(values)
        counts: list[int] = []
        remaining = self.plan.samples
        while remaining > 0:
            for c in self.rng.choices(values, cum_weights=spd.cum_weights, k=remaining // 2 + 1):
                if c >= remaining or remaining - c < smallest:
                    if remaining < smallest and counts:
                        counts[-1] += remaining
                    else:
                        counts.append(remaining)
                    remaining = 0
                    break
                counts.append(c)
                remaining -= c
        return counts

    def write(self, folder: Path) -> BiobankSummary:
        """Draw and write the whole export into `folder`."""
        rng = self.rng
        counts = self.plan_donors(1)
        n_dirty = max(
            len(dirty.DIRTY_KINDS), round(self.plan.samples * rng.uniform(*dirty.DIRTY_SHARE))
        )
        per_kind = dict.fromkeys(dirty.DIRTY_KINDS, 1)
        for _ in range(n_dirty - len(dirty.DIRTY_KINDS)):
            per_kind[rng.choice(dirty.DIRTY_KINDS)] += 1
        layout = self._place_dirt(counts, per_kind)
        if layout is None:
            # Too few donors with several samples to carry every dirty kind and still keep
            # a valid sample each (only in the smallest biobanks): give every donor three.
            counts = self.plan_donors(3)
            layout = self._place_dirt(counts, per_kind)
            if layout is None:
                raise ValueError(
                    f"{self.plan.id}: {self.plan.samples} samples cannot hold the dirty rows"
                )
        withdrawn, bad_sex, dirty_at = layout

        tables: Tables
        with open_tables(folder, self.plan.flavour) as tables:
            tables.add("collections", [self._collection_row(c) for c in self.collections])
            self._stream(tables, counts, withdrawn, bad_sex, dirty_at)

        return BiobankSummary(
            id=self.plan.id,
            kind=self.plan.kind,
            format=self.plan.flavour.format,
            donors=len(counts),
            samples=sum(counts),
            dirty=per_kind,
            rejected_donors=len(bad_sex),
            rejected_samples=sum(
                kind not in dirty.PARTIAL_KINDS for p in dirty_at.values() for kind in p.values()
            )
            + sum(counts[i] for i in bad_sex),
            partial_samples=sum(
                kind in dirty.PARTIAL_KINDS for p in dirty_at.values() for kind in p.values()
            ),
            withdrawn_donors=len(withdrawn),
            withdrawn_samples=sum(counts[i] for i in withdrawn),
        )

    def _place_dirt(
        self, counts: list[int], per_kind: dict[str, int]
    ) -> tuple[set[int], set[int], dict[int, dict[int, str]]] | None:
        """Pick withdrawn donors, unknown-sex donors and the hosts of dirty sample rows.

        A dirty sample row is always one of several samples of a donor who keeps at least
        one valid sample, and never belongs to a withdrawn or rejected donor: so every
        searchable donor has a searchable sample, whichever way a search counts donors.
        """
        rng = self.rng
        n = len(counts)
        n_withdrawn = max(1, round(n * rng.uniform(*WITHDRAWN_SHARE)))
        n_bad_sex = per_kind[dirty.UNKNOWN_SEX]
        if n_withdrawn + n_bad_sex >= n:
            return None
        picked = rng.sample(range(n), n_withdrawn + n_bad_sex)
        withdrawn, bad_sex = set(picked[:n_withdrawn]), set(picked[n_withdrawn:])
        kinds = [k for k in dirty.SAMPLE_KINDS for _ in range(per_kind[k])]
        rng.shuffle(kinds)
        eligible = [
            i for i, c in enumerate(counts) if c >= 2 and i not in withdrawn and i not in bad_sex
        ]
        dirty_at: dict[int, dict[int, str]] = {}
        if len(kinds) <= len(eligible):
            for host, spoil in zip(rng.sample(eligible, len(kinds)), kinds, strict=True):
                dirty_at[host] = {rng.randrange(counts[host]): spoil}
            return withdrawn, bad_sex, dirty_at
        if sum(counts[i] - 1 for i in eligible) < len(kinds):
            return None
        # Fewer hosts than dirty rows: spread them round-robin, each host keeping one valid.
        pending = list(kinds)
        while pending:
            for host in eligible:
                taken = dirty_at.get(host, {})
                free = [p for p in range(counts[host]) if p not in taken]
                if pending and len(free) > 1:
                    taken[rng.choice(free)] = pending.pop()
                    dirty_at[host] = taken
        return withdrawn, bad_sex, dirty_at

    # --- rows ----------------------------------------------------------------------------

    def _collection_row(self, c: _Collection) -> list[Any]:
        return [c.id, c.name, LIST_SEPARATOR.join(c.types), c.default_consent, c.description]

    def _stream(
        self,
        tables: Tables,
        counts: Sequence[int],
        withdrawn: set[int],
        bad_sex: set[int],
        dirty_at: dict[int, dict[int, str]],
    ) -> None:
        """Draw every donor with its samples and write them, in donor order."""
        rng, kind, plan = self.rng, self.kind, self.plan
        rnd = rng.random
        iso, years, yday = _calendar()
        diseases = self.profiles.diseases
        flavour = plan.flavour
        sex_out = flavour.encode("sex")
        flag_out = flavour.encode("consent_withdrawn")
        yes, no = flag_out.get("true", "true"), flag_out.get("false", "false")
        groups = self.groups
        healthy_share = kind.healthy_share if groups else 1.0
        material_sets = kind.material_sets
        default_materials = next(iter(material_sets.values()))
        collections = self.collections
        coll_weights = Weighted(
            tuple(c.id for c in collections),
            tuple(sum(c.weight for c in collections[: i + 1]) for i in range(len(collections))),
        )
        coll_by_disease: dict[str, list[str]] = {}
        for c in collections[1:] if plan.kind == "hospital" else collections:
            for key in c.diseases:
                coll_by_disease.setdefault(key, []).append(c.id)
        consents = kind.donor_consents
        consent_share = kind.donor_consent_share
        spelling = self.spelling
        spelled: dict[tuple[str, str], str] = {}
        temperature = self.temperature
        avail_values, avail_cum = kind.availability.values, kind.availability.cum_weights
        avail_total = kind.availability.total
        categories = self.categories
        sample_dx_share = kind.sample_diagnosis_share
        start, end, first_day = self.start, self.end, _FIRST_DAY
        gap_min, gap_max = kind.visit_gap_days
        aliquots = kind.aliquots_per_visit
        offset = self.utc_offset
        times = _TIMES_OF_DAY
        n_times = len(times)
        exported = EXPORTED_ON.toordinal() - first_day
        sample_id = self._sample_id_format()
        orphan = len(counts)
        n_sample = 0
        donor_rows: list[list[Any]] = []
        sample_rows: list[list[Any]] = []

        for index, n in enumerate(counts):
            donor_id = self.donor_id(index + 1)
            # -- who the donor is
            group: DiseaseGroup | None = None
            if rnd() >= healthy_share and groups is not None:
                group = diseases[_pick(groups, rnd())]
            if group is not None:
                sex = "FEMALE" if rnd() < group.female_share else "MALE"
                age0 = _clamp(rng.gauss(group.age_mean, group.age_sd), kind.age_min, kind.age_max)
            else:
                r = rnd()
                if r < UNKNOWN_SEX_SHARE:
                    sex = "UNKNOWN"
                else:
                    sex = "FEMALE" if r < kind.female_share else "MALE"
                if plan.kind == "population":
                    age0 = kind.age_min + int(rnd() * (kind.age_max - kind.age_min + 1))
                else:
                    mean, sd = kind.control_age
                    age0 = _clamp(rng.gauss(mean, sd), max(kind.age_min, 18), kind.age_max)
            style = _pick(spelling, rnd())
            codes: list[str] = []
            if group is not None:
                codes.append(_pick(group.codes, rnd()))
            for comorbidity in kind.comorbidities:
                share = comorbidity.share
                if not comorbidity.flat:
                    share *= min(1.8, max(0.05, (age0 - 20) / 40))
                if rnd() < share and (group is None or comorbidity.key != group.key):
                    codes.append(_pick(diseases[comorbidity.key].codes, rnd()))
            cells = []
            for code in codes:
                text = spelled.get((code, style))
                if text is None:
                    text = spelled[code, style] = self.spell(code, style)
                cells.append(text)
            sample_dx = cells[0] if cells else ""
            # -- where and when the donor gave samples
            if group is not None and plan.kind == "hospital":
                homes = coll_by_disease.get(group.key)
                collection = (
                    homes[0] if homes and rnd() < DISEASE_COLLECTION_SHARE else collections[0].id
                )
            elif group is not None and group.key in coll_by_disease:
                collection = coll_by_disease[group.key][0]
            else:
                collection = _pick(coll_weights, rnd())
            per_visit = int(_pick(aliquots, rnd()))
            visits = -(-n // per_visit)
            gap = gap_min + int(rnd() * (gap_max - gap_min + 1))
            if visits > 1 and (visits - 1) * gap > end - start:
                gap = (end - start) // (visits - 1)
            span = (visits - 1) * gap
            # Biobanks grow: later years hold more first visits than early ones.
            first = start + int(math.sqrt(rnd()) * (end - start - span + 1)) - first_day
            birthday = 1 + int(rnd() * 365)
            birth_year = years[first] - age0 - (yday[first] < birthday)
            # What data a biobank holds follows the donor (questionnaire, records), not the tube.
            data_categories = _pick(categories, rnd())
            # -- consent
            consent = ""
            if rnd() < consent_share:
                template = _pick(consents, rnd())
                if "{disease}" not in template or group is not None:
                    consent = template.replace("{country}", plan.country)
                    if group is not None:
                        consent = consent.replace("{disease}", group.key)
            donor_rows.append(
                [
                    donor_id,
                    dirty.UNKNOWN_SEXES[index % len(dirty.UNKNOWN_SEXES)]
                    if index in bad_sex
                    else sex_out.get(sex, sex),
                    birth_year,
                    LIST_SEPARATOR.join(cells),
                    group.orpha if group is not None else "",
                    consent,
                    yes if index in withdrawn else no,
                ]
            )
            # -- samples
            mset = (
                material_sets.get(group.materials, default_materials)
                if group
                else default_materials
            )
            materials = rng.choices(mset.values, cum_weights=mset.cum_weights, k=n)
            spoiled = dirty_at.get(index)
            j = 0
            for visit in range(visits):
                # Aliquots of one visit share its date, the donor's age and the record stamp.
                day = first + visit * gap
                date_text = iso[day]
                age = years[day] - birth_year - (yday[day] < birthday)
                yy = years[day] % 100
                updated = day + int(rnd() * LAST_UPDATE_WINDOW_DAYS)
                stamp = iso[min(updated, exported)] + times[int(rnd() * n_times)] + offset
                for material in materials[j : j + per_visit]:
                    if material in TISSUE_MATERIALS or (sample_dx and rnd() < sample_dx_share):
                        dx = sample_dx
                    else:
                        dx = ""
                    n_sample += 1
                    row = [
                        sample_id(n_sample, yy),
                        collection,
                        donor_id,
                        material,
                        date_text,
                        age,
                        temperature.get(material, "temperatureOther"),
                        dx,
                        avail_values[bisect(avail_cum, rnd() * avail_total)],
                        data_categories,
                        stamp,
                    ]
                    if spoiled is not None and j in spoiled:
                        orphan = self._spoil(row, spoiled[j], orphan)
                    sample_rows.append(row)
                    j += 1
            if len(sample_rows) >= _BATCH_ROWS:
                tables.add("donors", donor_rows)
                tables.add("samples", sample_rows)
                donor_rows, sample_rows = [], []
        tables.add("donors", donor_rows)
        tables.add("samples", sample_rows)

    def _sample_id_format(self) -> Callable[[int, int], str]:
        prefix = self.prefix
        if self.sample_style == 0:
            return lambda n, yy: f"S{n:08d}"
        if self.sample_style == 1:
            return lambda n, yy: f"{prefix}{yy:02d}-{n:06d}"
        return lambda n, yy: f"{prefix}-S{n:07d}"

    def _spoil(self, row: list[Any], kind: str, orphan: int) -> int:
        """Make one sample row invalid in the given way; returns the next orphan donor number."""
        rng = self.rng
        if kind == dirty.INVALID_DIAGNOSIS:
            bad = rng.choice(dirty.NOT_WHO_CODES)
            row[7] = f"{row[7]}{LIST_SEPARATOR}{bad}" if row[7] else bad
        elif kind == dirty.MISSING_REQUIRED:
            row[3 if rng.random() < 0.5 else 2] = ""
        elif kind == dirty.UNKNOWN_MATERIAL:
            row[3] = rng.choice(dirty.UNKNOWN_MATERIALS)
        elif kind == dirty.INVALID_DATE:
            row[4] = rng.choice(dirty.BAD_DATES)
        elif kind == dirty.UNKNOWN_DONOR:
            orphan += 1
            row[2] = self.donor_id(orphan)
        return orphan


def _clamp(value: float, low: int, high: int) -> int:
    return min(high, max(low, round(value)))


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _prefix(city: str, kind: str) -> str:
    letters = "".join(ch for ch in city.upper() if "A" <= ch <= "Z")
    return f"{letters[:3]}{kind[0].upper()}"


def open_tables(folder: Path, flavour: Flavour) -> Any:
    """The writer for one export folder in its flavour; what an earlier format left is removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in EXPORT_FILES:
        (folder / name).unlink(missing_ok=True)
    if flavour.format in sources.EXPORTS:
        return sources.EXPORTS[flavour.format](folder, FIELDS, sources.PAGE_SIZE)
    for name in sources.RECORDING_FOLDERS:
        shutil.rmtree(folder / name, ignore_errors=True)
    if flavour.format == "xlsx":
        return WorkbookTables(folder, flavour)
    return DelimitedTables(folder, flavour)
