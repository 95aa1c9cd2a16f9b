"""The query model: one researcher question, validated, in backend-neutral form."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.errors import unencodable
from federation.model import expr as ex
from federation.model import icd10, vocab

# BadQuery lives in the model (consent raises it too); re-exported for the entry points.
from federation.model.query_errors import BadQuery as BadQuery

# The facets are declared in search/facets.py; these names are re-exported for the callers.
from federation.search.facets import AGE_BUCKET_YEARS as AGE_BUCKET_YEARS
from federation.search.facets import FACET_DEFINITIONS
from federation.search.facets import FACETS as FACETS
from federation.search.facets import age_bucket as age_bucket

SURROGATE_REASON = "contains a lone UTF-16 surrogate, which is not text"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# ISO 3166-1 alpha-2, as the network file writes a biobank's country.
COUNTRY_CODE = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class SampleQuery:
    """What a researcher asks for. Within a field values are ORed; fields are ANDed."""

    diseases: tuple[str, ...] = ()
    # Codes matched as recorded, without the codes below them (Beacon's
    # `includeDescendantTerms: false`); `diseases` takes in the whole subtree.
    exact_diseases: tuple[str, ...] = ()
    text: str | None = None
    # Codes the researcher removed from what `text` resolved to (one chip each in the UI).
    text_exclude: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    sexes: tuple[str, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    biobanks: tuple[str, ...] = ()
    collection_types: tuple[str, ...] = ()
    data_categories: tuple[str, ...] = ()
    # ISO 3166-1 alpha-2 codes of the biobanks' countries (from the network file).
    countries: tuple[str, ...] = ()
    # Collection ids; an id is unique within its biobank, so ask with `biobanks` too.
    collections: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> SampleQuery:
        """Validate user input (from GraphQL or the CLI) into a normalised query."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BadQuery(unknown[0], raw[unknown[0]], "unknown filter")
        diseases = _diseases(raw, "diseases")
        for name in ("text", "biobanks", "collections"):
            value = raw.get(name)
            for item in [value] if isinstance(value, str) else value or ():
                escaped = unencodable(str(item))
                if escaped is not None:
                    raise BadQuery(name, escaped, SURROGATE_REASON)
        text = (raw.get("text") or "").strip() or None
        text_exclude = []
        for value in raw.get("text_exclude") or ():
            try:
                text_exclude.append(icd10.normalise(value))
            except icd10.UnknownCode as err:
                raise BadQuery("text_exclude", value, str(err)) from None
        if text is not None and len(text) > 200:
            raise BadQuery("text", text[:40] + "...", "longer than 200 characters")
        age_min, age_max = raw.get("age_min"), raw.get("age_max")
        for name, age in (("age_min", age_min), ("age_max", age_max)):
            if age is not None and not 0 <= int(age) <= 150:
                raise BadQuery(name, age, "must be between 0 and 150")
        if age_min is not None and age_max is not None and age_min > age_max:
            raise BadQuery("age_min", age_min, f"is greater than age_max {age_max}")
        return cls(
            diseases=diseases,
            exact_diseases=_diseases(raw, "exact_diseases"),
            text=text,
            text_exclude=tuple(dict.fromkeys(text_exclude)),
            materials=_codes(raw, "materials", vocab.material_types()),
            sexes=_codes(raw, "sexes", vocab.sexes()),
            age_min=age_min,
            age_max=age_max,
            biobanks=tuple(dict.fromkeys(str(b) for b in raw.get("biobanks") or ())),
            collection_types=_codes(raw, "collection_types", vocab.collection_types()),
            data_categories=_codes(raw, "data_categories", vocab.data_categories()),
            countries=_countries(raw),
            collections=tuple(dict.fromkeys(str(c) for c in raw.get("collections") or ())),
        )

    def normalised(self) -> dict[str, Any]:
        """A canonical, order-independent form: the key for caches, noise and audit."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = sorted(value)
            if value not in (None, []):
                out[f.name] = value
        return out


def _diseases(raw: Mapping[str, Any], name: str) -> tuple[str, ...]:
    codes = []
    for value in raw.get(name) or ():
        try:
            codes.append(icd10.normalise(value))
        except icd10.UnknownCode as err:
            raise BadQuery(name, value, str(err)) from None
    return tuple(dict.fromkeys(codes))


def _countries(raw: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for value in raw.get("countries") or ():
        code = str(value).strip().upper()
        if not COUNTRY_CODE.fullmatch(code):
            raise BadQuery("countries", value, "not an ISO 3166-1 alpha-2 country code (JP, DE)")
        out.append(code)
    return tuple(dict.fromkeys(out))


def _codes(raw: Mapping[str, Any], name: str, vocabulary: vocab.Vocabulary) -> tuple[str, ...]:
    out = []
    for value in raw.get(name) or ():
        code = vocabulary.canonical(str(value))
        if code is None:
            raise BadQuery(name, value, vocabulary.rejection(str(value)))
        out.append(code)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Criteria:
    """A query resolved for a backend: every clause is a set of allowed values.

    `disease_terms` is a list of OR-groups that are ANDed (the explicit diseases and the
    codes found by free text form separate groups). An empty group matches nothing.
    """

    disease_terms: tuple[tuple[str, ...], ...] = ()
    diagnoses: tuple[str, ...] = ()
    material_type: tuple[str, ...] = ()
    sex: tuple[str, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    biobank_id: tuple[str, ...] = ()
    collection_types: tuple[str, ...] = ()
    data_categories: tuple[str, ...] = ()
    # The biobanks of the asked countries; None: no country asked. A separate clause from
    # `biobank_id` so the country facet drops only its own; empty: no biobank is there.
    country_biobanks: tuple[str, ...] | None = None
    collection_id: tuple[str, ...] = ()

    def to_expr(self) -> ex.Expr:
        """The criteria as a filter tree; withdrawn donors never match, whatever was asked."""
        parts: list[ex.Expr] = [ex.In("withdrawn", (False,))]
        parts.extend(
            ex.HasAny("disease_terms", group) if group else ex.FALSE for group in self.disease_terms
        )
        for column, values in (
            ("material_type", self.material_type),
            ("sex", self.sex),
            ("biobank_id", self.biobank_id),
            ("collection_id", self.collection_id),
        ):
            if values:
                parts.append(ex.In(column, values))
        for column, values in (
            ("diagnoses", self.diagnoses),
            ("collection_types", self.collection_types),
            ("data_categories", self.data_categories),
        ):
            if values:
                parts.append(ex.HasAny(column, values))
        if self.age_min is not None or self.age_max is not None:
            parts.append(ex.Range("age", gte=self.age_min, lte=self.age_max))
        if self.country_biobanks is not None:
            parts.append(
                ex.In("biobank_id", self.country_biobanks) if self.country_biobanks else ex.FALSE
            )
        return ex.all_of(*parts)

    def without(self, facet: str) -> Criteria:
        """The criteria minus the facet's own filter, so its buckets show the alternatives."""
        clause = FACET_CLAUSE.get(facet)
        if clause is None:
            return self
        if clause == "age":
            return dataclasses.replace(self, age_min=None, age_max=None)
        if clause == "country_biobanks":
            return dataclasses.replace(self, country_biobanks=None)
        cleared: dict[str, Any] = {clause: ()}
        return dataclasses.replace(self, **cleared)


# Which Criteria clause each facet refines (from the facet definitions).
FACET_CLAUSE = {f.key: f.clause for f in FACET_DEFINITIONS if f.clause is not None}


# Record columns a page can be ordered by; ties fall back to biobank and sample id, so the
# order is total and cursor paging neither skips nor repeats. A missing value sorts first
# (ascending) as the smallest: '' for text, -1 for an age.
RECORD_ORDERS = (
    "biobank_id",
    "sample_id",
    "donor_id",
    "sex",
    "age",
    "material_type",
    "collection_date",
    "storage_temperature",
    "availability",
)
# The smallest value of a column's kind, which a missing value sorts as ('' for text).
_SMALLEST: dict[str, int | str] = {"age": -1, "collection_date": "0001-01-01"}
DEFAULT_ORDER = "biobank_id"


def missing_sort_value(column: str) -> int | str:
    """What a record without a value in `column` sorts as: the smallest of its kind."""
    return _SMALLEST.get(column, "")


def sort_position(row: Mapping[str, Any], keys: Sequence[str]) -> list[Any]:
    """Where a record stands in an order by `keys` (a missing value as it sorts; a date as
    its ISO text, which sorts the same and travels in a cursor)."""
    position = []
    for key in keys:
        value = row.get(key)
        if value is None:
            value = missing_sort_value(key)
        elif isinstance(value, dt.date):
            value = value.isoformat()
        position.append(value)
    return position


@dataclass(frozen=True)
class PageRequest:
    first: int = DEFAULT_PAGE_SIZE
    after: str | None = None
    order_by: str = DEFAULT_ORDER
    descending: bool = False

    def sort_keys(self) -> tuple[str, ...]:
        """The columns the page is ordered by, the tie-breakers last."""
        if self.order_by == DEFAULT_ORDER:
            return ("biobank_id", "sample_id")
        return (self.order_by, "biobank_id", "sample_id")


@dataclass(frozen=True)
class Cell:
    """Exact donor and sample counts for one biobank (or one facet bucket in one biobank),
    with the fingerprint of the counted donors (see `search.fingerprint`; a sample figure
    is keyed on it with the sample count)."""

    donors: int
    samples: int
    donor_fp: int = 0

    @property
    def figures(self) -> tuple[int, int, int]:
        return (self.donors, self.samples, self.donor_fp)


@dataclass(frozen=True)
class FacetCell:
    facet: str
    key: str
    biobank_id: str
    donors: int
    samples: int
    donor_fp: int = 0

    @property
    def cell(self) -> Cell:
        return Cell(self.donors, self.samples, self.donor_fp)


@dataclass(frozen=True)
class RecordPage:
    records: tuple[dict[str, Any], ...]
    end_cursor: str | None
    has_next_page: bool
    # Every record the page filter lets through, over all pages (None: not counted).
    total: int | None = None


@dataclass(frozen=True)
class BackendAnswer:
    """Exact figures from a backend, before any disclosure rule is applied.

    `segments` holds, per biobank, the counts of the matching rows that also match each
    named segment filter (e.g. the consent outcomes of a declared purpose).
    """

    by_biobank: dict[str, Cell]
    facets: tuple[FacetCell, ...] = ()
    page: RecordPage | None = None
    generation: dict[str, str] = field(default_factory=dict)
    segments: dict[str, dict[str, Cell]] = field(default_factory=dict)
    # The biobanks whose published data the answer searched (matches or not); None when
    # the backend cannot tell. The service refuses an answer that leaves a live one out.
    covered: frozenset[str] | None = None
