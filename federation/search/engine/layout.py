"""The index layout: index and alias names, document kinds and ids, the mappings on disk.

- Each published generation of a biobank is one index, `{prefix}-samples-{biobank}-{generation}`,
  behind the read alias `{prefix}-samples` (what searches use) and the biobank's alias
  `{prefix}-samples-{biobank}` (what syncs use). A full sync builds a new index and
  publishes it by one `update_aliases` call that removes the old index from both aliases
  and adds the new one, so a search sees the old generation or the new one, never half.
- An index holds two kinds of documents. A donor document carries all of the donor's
  samples as nested documents: a donor matches when one of its samples matches the whole
  filter, `reverse_nested` counts each donor once per bucket, and so donor counts are exact
  (no cardinality estimate). A flat sample document per sample serves record pages, sorted
  by (biobank_id, sample_id) and paged with `search_after`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from federation import SCHEMA_DIR
from federation.search.documents import COLUMNS
from federation.search.engine.client import EngineError

ENGINE_SCHEMA_DIR = SCHEMA_DIR / "engine"
NESTED = "samples"
DONOR_KIND = "donor"
SAMPLE_KIND = "sample"
# Buckets one terms aggregation may return. Counts are exact only when every bucket comes
# back, so a response that leaves some out is an error, not a smaller answer.
MAX_TERMS = 10_000
# Index names allow 255 bytes; a long biobank id is shortened with a hash to stay unique.
MAX_BIOBANK_KEY = 120
LIST_COLUMNS = frozenset(c for c, kind in COLUMNS.items() if kind.endswith("[]"))
DATE_COLUMNS = frozenset(c for c, kind in COLUMNS.items() if kind == "date")
TIMESTAMP_COLUMNS = frozenset(c for c, kind in COLUMNS.items() if kind == "timestamp")


def biobank_key(biobank_id: str) -> str:
    """The biobank id as it appears in index names: lowercase, no '-', one-to-one.

    Index names must be lowercase and the generation follows the last '-', so every
    character other than [a-z0-9] is escaped as `_xx` (its UTF-8 bytes in hex).
    """
    out = []
    for char in biobank_id:
        if "a" <= char <= "z" or "0" <= char <= "9":
            out.append(char)
        else:
            out.append("".join(f"_{byte:02x}" for byte in char.encode()))
    key = "".join(out)
    if len(key) > MAX_BIOBANK_KEY:
        digest = hashlib.sha256(biobank_id.encode()).hexdigest()[:16]
        key = f"{key[: MAX_BIOBANK_KEY - 18]}_h{digest}"
    return key


def new_generation() -> str:
    """A generation name that sorts by time and is valid in an index name."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S%fz")


@dataclass(frozen=True)
class IndexNames:
    """Every index and alias name the backend uses, from the configured prefix."""

    prefix: str

    @property
    def read_alias(self) -> str:
        return f"{self.prefix}-samples"

    @property
    def locks(self) -> str:
        return f"{self.prefix}-locks"

    def biobank_alias(self, biobank_id: str) -> str:
        return f"{self.read_alias}-{biobank_key(biobank_id)}"

    def index(self, biobank_id: str, generation: str) -> str:
        return f"{self.biobank_alias(biobank_id)}-{generation}"

    def generations(self, biobank_id: str) -> str:
        """Wildcard over every index of the biobank (never another's: keys hold no '-')."""
        return f"{self.biobank_alias(biobank_id)}-*"

    def all_generations(self) -> str:
        return f"{self.read_alias}-*"

    @staticmethod
    def generation_of(index: str) -> str:
        return index.rsplit("-", 1)[1]


def load_index_schema(distribution: str, major: int) -> dict[str, Any]:
    """The index settings and mappings for an engine version, from schema/engine/."""
    path = ENGINE_SCHEMA_DIR / f"{distribution}-{major}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in ENGINE_SCHEMA_DIR.glob("*-*.json")))
        raise EngineError(f"{distribution} {major}.x is not supported (schema/engine has: {known})")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def sample_doc_id(sample_id: str) -> str:
    return f"s:{sample_id}"


def donor_doc_id(donor_id: str) -> str:
    return f"d:{donor_id}"
