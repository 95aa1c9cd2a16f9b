"""Build small tabular biobank sources and network files for tests, row by row."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

COLLECTION_COLUMNS = ["id", "name", "types", "default_consent", "description"]
DONOR_COLUMNS = ["id", "sex", "birth_year", "diagnoses", "orpha", "consent", "consent_withdrawn"]
SAMPLE_COLUMNS = [
    "id",
    "collection_id",
    "donor_id",
    "material_type",
    "collection_date",
    "age_at_collection",
    "storage_temperature",
    "diagnoses",
    "availability",
    "data_categories",
    "last_updated",
]


def write_table(path: Path, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


class TabularBiobank:
    """One biobank's export folder, rewritable between syncs to simulate source changes."""

    def __init__(self, root: Path, biobank_id: str, country: str = "JP") -> None:
        self.root = root
        self.id = biobank_id
        self.country = country
        self.folder = root / "sources" / biobank_id
        self.collections: dict[str, dict[str, Any]] = {
            "C1": {
                "id": "C1",
                "name": "Main collection",
                "types": "HOSPITAL",
                "default_consent": "GRU",
            }
        }
        self.donors: dict[str, dict[str, Any]] = {}
        self.samples: dict[str, dict[str, Any]] = {}

    def donor(
        self, donor_id: str, sex: str = "FEMALE", birth_year: int | None = 1970, **fields: Any
    ) -> TabularBiobank:
        self.donors[donor_id] = {"id": donor_id, "sex": sex, "birth_year": birth_year, **fields}
        return self

    def sample(
        self,
        sample_id: str,
        donor_id: str,
        material: str = "PLASMA",
        date: str = "2020-06-01",
        **fields: Any,
    ) -> TabularBiobank:
        self.samples[sample_id] = {
            "id": sample_id,
            "collection_id": "C1",
            "donor_id": donor_id,
            "material_type": material,
            "collection_date": date,
            **fields,
        }
        return self

    def write(self) -> None:
        write_table(self.folder / "collections.csv", COLLECTION_COLUMNS, self.collections.values())
        write_table(self.folder / "donors.csv", DONOR_COLUMNS, self.donors.values())
        write_table(self.folder / "samples.csv", SAMPLE_COLUMNS, self.samples.values())

    def network_entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": f"Biobank {self.id}",
            "country": self.country,
            "connector": {"type": "tabular", "options": {"path": f"sources/{self.id}"}},
        }


# Tests of syncing and searching check exact figures, so their networks let every role
# see exact counts and records; the disclosure tests set their own policies.
OPEN_DISCLOSURE = {
    role: {"granularity": "record", "min_count": 1, "rounding": 1, "noise": 0}
    for role in ("anonymous", "registered", "approved", "network_operator")
}


def write_network(
    root: Path,
    biobanks: Iterable[TabularBiobank],
    extra: Iterable[Mapping[str, Any]] = (),
    default_disclosure: Mapping[str, Any] | None = None,
) -> Path:
    entries = []
    for biobank in biobanks:
        biobank.write()
        entries.append(biobank.network_entry())
    entries.extend(dict(e) for e in extra)
    path = root / "network.yaml"
    document = {
        "default_disclosure": dict(
            OPEN_DISCLOSURE if default_disclosure is None else default_disclosure
        ),
        "biobanks": entries,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
