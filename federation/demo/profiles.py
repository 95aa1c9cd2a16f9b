"""The demo network's profiles (`config/demo-profiles.yaml`) read into typed records.

The YAML says what a population cohort, a hospital biobank and a rare-disease biobank look
like; this module only checks its shape and turns weights into cumulative tables so the
generator can draw with one `bisect` per value.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from federation import CONFIG_DIR
from federation.errors import FederationError

PROFILES_FILE = CONFIG_DIR / "demo-profiles.yaml"
KINDS = ("population", "hospital", "disease")
STREAMS = ("collections", "donors", "samples")


@dataclass(frozen=True)
class Weighted:
    """Values with cumulative weights, for `random.choices(..., cum_weights=...)`."""

    values: tuple[str, ...]
    cum_weights: tuple[float, ...]

    @property
    def total(self) -> float:
        return self.cum_weights[-1]

    @classmethod
    def of(cls, weights: Mapping[Any, Any], where: str) -> Weighted:
        if not weights:
            raise ProfileError(f"{where}: needs at least one weighted value")
        values = tuple(str(k) for k in weights)
        try:
            cum = tuple(itertools.accumulate(float(w) for w in weights.values()))
        except (TypeError, ValueError):
            raise ProfileError(f"{where}: weights must be numbers, got {weights!r}") from None
        if cum[-1] <= 0:
            raise ProfileError(f"{where}: weights must add up to more than 0")
        return cls(values, cum)


@dataclass(frozen=True)
class DiseaseGroup:
    """Donors' diagnoses of one kind, e.g. breast cancer recorded as C50.9, C50.4 or C50."""

    key: str  # what a DS consent names: a category (C50) or a subcategory (G12.2)
    label: str
    codes: Weighted
    female_share: float
    age_mean: float
    age_sd: float
    materials: str
    orpha: str
    country_weight: Mapping[str, float]


@dataclass(frozen=True)
class Comorbidity:
    key: str
    share: float
    flat: bool  # False: the share rises with age


@dataclass(frozen=True)
class CollectionTemplate:
    name: str
    types: tuple[str, ...]
    weight: float
    default_consent: str
    diseases: tuple[str, ...]


@dataclass(frozen=True)
class KindProfile:
    """What one kind of biobank (population, hospital, disease) looks like."""

    name: str
    description: str
    age_min: int
    age_max: int
    first_year: int
    samples_per_donor: Weighted
    aliquots_per_visit: Weighted
    visit_gap_days: tuple[int, int]
    female_share: float
    healthy_share: float
    control_age: tuple[float, float]
    primary: Mapping[str, float]
    comorbidities: tuple[Comorbidity, ...]
    sample_diagnosis_share: float
    material_sets: Mapping[str, Weighted]
    availability: Weighted
    data_categories: tuple[tuple[str, ...], ...]
    collections: tuple[CollectionTemplate, ...]
    donor_consent_share: float
    donor_consents: Weighted


@dataclass(frozen=True)
class PoolEntry:
    """A named biobank of the pool."""

    id: str
    kind: str
    country: str
    city: str
    name: str
    city_ja: str = ""
    name_ja: str = ""
    diseases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flavour:
    """An export format: file format, column headers in file order, value recoding."""

    name: str
    format: str  # csv | tsv | xlsx
    columns: Mapping[str, Mapping[str, str]]  # stream -> canonical field -> header
    values: Mapping[str, Mapping[str, str]]  # field -> source value -> canonical value

    def encode(self, field: str) -> dict[str, str]:
        """Canonical value -> the source's spelling, for the fields this flavour recodes."""
        return {canonical: source for source, canonical in self.values.get(field, {}).items()}


@dataclass(frozen=True)
class GeneratedNames:
    countries: Weighted
    kinds: Weighted
    kind_names: Mapping[str, Mapping[str, str]]
    cities: Mapping[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Profiles:
    """Everything `config/demo-profiles.yaml` holds."""

    diseases: Mapping[str, DiseaseGroup]
    kinds: Mapping[str, KindProfile]
    pool: tuple[PoolEntry, ...]
    generated_names: GeneratedNames
    storage_temperatures: Mapping[str, Weighted]
    utc_offsets: Mapping[str, str]
    flavours: Mapping[str, Flavour]

    def utc_offset(self, country: str) -> str:
        return self.utc_offsets.get(country, self.utc_offsets["default"])


class ProfileError(FederationError, ValueError):
    """The profiles file is malformed; the message names the entry."""

    code = "PROFILE_INVALID"


@cache
def load_profiles(path: Path = PROFILES_FILE) -> Profiles:
    """Read and check the demo profiles file."""
    with path.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    diseases = {
        str(key): _disease(str(key), _mapping(spec, f"diseases.{key}"))
        for key, spec in _mapping(raw.get("diseases"), "diseases").items()
    }
    kinds = {
        name: _kind(name, _mapping(_mapping(raw.get("kinds"), "kinds").get(name), f"kinds.{name}"))
        for name in KINDS
    }
    for kind in kinds.values():
        unknown = [k for k in kind.primary if k not in diseases] + [
            c.key for c in kind.comorbidities if c.key not in diseases
        ]
        if unknown:
            raise ProfileError(f"kinds.{kind.name}: unknown disease groups {unknown}")
    pool = tuple(_pool_entry(_mapping(e, "biobanks[]")) for e in raw.get("biobanks") or ())
    for entry in pool:
        unknown = [d for d in entry.diseases if d not in kinds[entry.kind].primary]
        if unknown:
            raise ProfileError(f"biobanks.{entry.id}: {unknown} are not {entry.kind} diseases")
    flavours = {
        str(name): _flavour(str(name), _mapping(spec, f"flavours.{name}"))
        for name, spec in _mapping(raw.get("flavours"), "flavours").items()
    }
    return Profiles(
        diseases=diseases,
        kinds=kinds,
        pool=pool,
        generated_names=_generated_names(_mapping(raw.get("generated_names"), "generated_names")),
        storage_temperatures={
            str(material): Weighted.of(_mapping(w, f"storage_temperatures.{material}"), material)
            for material, w in _mapping(
                raw.get("storage_temperatures"), "storage_temperatures"
            ).items()
        },
        utc_offsets={
            str(k): str(v) for k, v in _mapping(raw.get("utc_offsets"), "utc_offsets").items()
        },
        flavours=flavours,
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: expected a mapping, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _pair(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ProfileError(f"{where}: expected [a, b], got {value!r}")
    return float(value[0]), float(value[1])


def _disease(key: str, spec: dict[str, Any]) -> DiseaseGroup:
    mean, sd = _pair(spec.get("age"), f"diseases.{key}.age")
    return DiseaseGroup(
        key=key,
        label=str(spec["label"]),
        codes=Weighted.of(_mapping(spec.get("codes"), f"diseases.{key}.codes"), key),
        female_share=float(spec["female_share"]),
        age_mean=mean,
        age_sd=sd,
        materials=str(spec["materials"]),
        orpha=str(spec.get("orpha") or ""),
        country_weight={str(k): float(v) for k, v in (spec.get("country_weight") or {}).items()},
    )


def _kind(name: str, spec: dict[str, Any]) -> KindProfile:
    where = f"kinds.{name}"
    age_min, age_max = _pair(spec.get("age"), f"{where}.age")
    gap_min, gap_max = _pair(spec.get("visit_gap_days"), f"{where}.visit_gap_days")
    comorbidities = tuple(
        Comorbidity(key, float(c["share"]), bool(c.get("flat", False)))
        for key, c in _mapping(spec.get("comorbidities") or {}, f"{where}.comorbidities").items()
    )
    return KindProfile(
        name=name,
        description=" ".join(str(spec["description"]).split()),
        age_min=int(age_min),
        age_max=int(age_max),
        first_year=int(spec["first_year"]),
        samples_per_donor=Weighted.of(_mapping(spec.get("samples_per_donor"), where), where),
        aliquots_per_visit=Weighted.of(_mapping(spec.get("aliquots_per_visit"), where), where),
        visit_gap_days=(int(gap_min), int(gap_max)),
        female_share=float(spec["female_share"]),
        healthy_share=float(spec["healthy_share"]),
        control_age=_pair(spec.get("control_age", [40, 18]), f"{where}.control_age"),
        primary={str(k): float(v) for k, v in (spec.get("primary") or {}).items()},
        comorbidities=comorbidities,
        sample_diagnosis_share=float(spec["sample_diagnosis_share"]),
        material_sets={
            str(k): Weighted.of(_mapping(v, f"{where}.material_sets.{k}"), f"{where}.{k}")
            for k, v in _mapping(spec.get("material_sets"), f"{where}.material_sets").items()
        },
        availability=Weighted.of(
            _mapping(spec.get("availability"), where), f"{where}.availability"
        ),
        data_categories=tuple(tuple(str(c) for c in combo) for combo in spec["data_categories"]),
        collections=tuple(
            CollectionTemplate(
                name=str(c["name"]),
                types=tuple(str(t) for t in c["types"]),
                weight=float(c.get("weight", 1)),
                default_consent=str(c["default_consent"]),
                diseases=tuple(str(d) for d in c.get("diseases") or ()),
            )
            for c in spec["collections"]
        ),
        donor_consent_share=float(spec["donor_consent_share"]),
        donor_consents=Weighted.of(_mapping(spec.get("donor_consents"), where), where),
    )


def _pool_entry(spec: dict[str, Any]) -> PoolEntry:
    entry = PoolEntry(
        id=str(spec["id"]),
        kind=str(spec["kind"]),
        country=str(spec["country"]),
        city=str(spec["city"]),
        name=str(spec["name"]),
        city_ja=str(spec.get("city_ja") or ""),
        name_ja=str(spec.get("name_ja") or ""),
        diseases=tuple(str(d) for d in spec.get("diseases") or ()),
    )
    if entry.kind not in KINDS:
        raise ProfileError(f"biobanks.{entry.id}: kind {entry.kind!r} is not one of {KINDS}")
    return entry


def _flavour(name: str, spec: dict[str, Any]) -> Flavour:
    columns = _mapping(spec.get("columns"), f"flavours.{name}.columns")
    if sorted(columns) != sorted(STREAMS):
        raise ProfileError(f"flavours.{name}.columns: needs exactly the streams {STREAMS}")
    fmt = str(spec["format"])
    if fmt not in ("csv", "tsv", "xlsx"):
        raise ProfileError(f"flavours.{name}.format: {fmt!r} is not csv, tsv or xlsx")
    return Flavour(
        name=name,
        format=fmt,
        columns={s: {str(k): str(v) for k, v in _mapping(columns[s], s).items()} for s in STREAMS},
        values={
            str(f): {str(k): str(v) for k, v in _mapping(m, f"flavours.{name}.values.{f}").items()}
            for f, m in (spec.get("values") or {}).items()
        },
    )


def _generated_names(spec: dict[str, Any]) -> GeneratedNames:
    cities = _mapping(spec.get("cities"), "generated_names.cities")
    return GeneratedNames(
        countries=Weighted.of(_mapping(spec.get("countries"), "countries"), "generated_names"),
        kinds=Weighted.of(_mapping(spec.get("kinds"), "kinds"), "generated_names"),
        kind_names={
            str(k): {str(a): str(b) for a, b in _mapping(v, k).items()}
            for k, v in _mapping(spec.get("kind_names"), "generated_names.kind_names").items()
        },
        cities={
            country: tuple((str(c[0]), str(c[1]) if len(c) > 1 else "") for c in entries)
            for country, entries in cities.items()
        },
    )
