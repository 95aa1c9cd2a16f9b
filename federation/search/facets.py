"""Every facet, declared once: what it groups by, what it refines, how a bucket is named.

The query model (which clause a facet drops), both backends (the column or engine field
they group by), the service (bucket labels) and the web page (its facet catalogue, sent in
the page's configuration) all read these definitions, so a facet is added in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from federation.model import vocab
from federation.search.documents import COLUMNS

# Width of an age bucket in years: buckets are 0-9, 10-19, ...
AGE_BUCKET_YEARS = 10

# How a bucket key is shown: a vocabulary label, an ICD-10 name, a biobank's name, an age
# range or a country (the web page translates each kind; the service labels the first two).
LabelRule = Literal["vocabulary", "disease", "biobank", "age", "country"]
# What choosing a bucket does to the question: add its key to a list argument, set an age
# range, or refine the diseases.
SelectRule = Literal["values", "range", "diseases"]


def age_bucket_label(low: int) -> str:
    """The label of the age bucket starting at `low` ("30-39"): written here only."""
    return f"{low}-{low + AGE_BUCKET_YEARS - 1}"


def age_bucket(age: int) -> str:
    """The label of the age bucket an age falls in."""
    return age_bucket_label((age // AGE_BUCKET_YEARS) * AGE_BUCKET_YEARS)


@dataclass(frozen=True)
class FacetDefinition:
    """One facet: its key, the index column it groups, the clause and argument it refines."""

    key: str
    # The index column whose values are the bucket keys (nested under the donor in the
    # engine, so the engine field is `samples.<column>`).
    column: str
    # The `Criteria` clause a bucket narrows; the facet is counted without it so its
    # buckets show the alternatives. None: it drops no clause (chapter and block refine
    # the disease clause, which stays, so a disease search shows where its matches sit).
    clause: str | None
    # The SampleQuery argument a chosen bucket sets.
    argument: str
    label: LabelRule
    select: SelectRule
    vocabulary: Callable[[], vocab.Vocabulary] | None = None
    # Histogram buckets this many units wide, keyed by their lower bound; None: one
    # bucket per value.
    bucket_width: int | None = None

    @property
    def is_list(self) -> bool:
        """Whether the column holds a list (a row falls in one bucket per value)."""
        return COLUMNS[self.column].endswith("[]")

    def bucket_key(self, raw: Any) -> str:
        """The bucket key from a backend's group value (a histogram's lower bound, or the value)."""
        if self.bucket_width is not None:
            return age_bucket_label(int(raw))
        return str(raw)

    def catalogue_entry(self) -> dict[str, str]:
        """What the web page needs to show and select this facet's buckets."""
        head, *rest = self.argument.split("_")
        return {
            "key": self.key,
            "argument": head + "".join(part.title() for part in rest),
            "label": self.label,
            "select": self.select,
        }


FACET_DEFINITIONS: tuple[FacetDefinition, ...] = (
    FacetDefinition(
        "material_type",
        "material_type",
        "material_type",
        "materials",
        "vocabulary",
        "values",
        vocab.material_types,
    ),
    FacetDefinition("sex", "sex", "sex", "sexes", "vocabulary", "values", vocab.sexes),
    FacetDefinition("age", "age", "age", "age", "age", "range", bucket_width=AGE_BUCKET_YEARS),
    FacetDefinition("chapter", "chapters", None, "diseases", "disease", "diseases"),
    FacetDefinition("block", "blocks", None, "diseases", "disease", "diseases"),
    FacetDefinition("biobank", "biobank_id", "biobank_id", "biobanks", "biobank", "values"),
    # A biobank's country is in the network file, not in the index (it may change without
    # a sync): the backends count this facet per biobank, without the country clause, and
    # the service adds each biobank's released counts to its country's bucket.
    FacetDefinition("country", "biobank_id", "country_biobanks", "countries", "country", "values"),
    FacetDefinition(
        "collection_type",
        "collection_types",
        "collection_types",
        "collection_types",
        "vocabulary",
        "values",
        vocab.collection_types,
    ),
)
FACET = {facet.key: facet for facet in FACET_DEFINITIONS}
FACETS = tuple(FACET)


def facet_catalogue() -> list[dict[str, str]]:
    """The facets as the web page's configuration lists them, in display order."""
    return [facet.catalogue_entry() for facet in FACET_DEFINITIONS]
