"""The result model: what one search answers, with every count carrying its precision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from federation.disclosure.budget import BudgetStatus

# Released counts are the disclosure layer's; re-exported for the gateway's types.
from federation.disclosure.count import Count as Count
from federation.disclosure.count import Precision as Precision
from federation.i18n import Message, render_all


@dataclass(frozen=True)
class OutcomeCounts:
    """Donors and samples of one consent outcome (permitted, conditional, not permitted)."""

    outcome: str
    donors: Count
    samples: Count


@dataclass(frozen=True)
class Access:
    """What the caller's role may see of one biobank, and why, in words."""

    role: str
    granularity: str
    explanation: str
    messages: tuple[Message, ...] = field(default=(), compare=False)

    def explanation_in(self, language: str) -> str:
        """The explanation in a language (the English one when it has no messages)."""
        return render_all(self.messages, language) or self.explanation


@dataclass(frozen=True)
class BiobankResult:
    biobank_id: str
    donors: Count
    samples: Count
    generation: str | None = None
    access: Access | None = None
    consent: tuple[OutcomeCounts, ...] | None = None  # only with a declared purpose
    # What the biobank's collection-level collections declare (precision DECLARED), apart
    # from its sample rows; a biobank with only those has them as `donors`/`samples` too.
    declared: Declared | None = None
    # True when `donors`/`samples` are the declared counts (no matching sample rows).
    declared_only: bool = False


@dataclass(frozen=True)
class Declared:
    """Donors and samples that matching collections declare, and which collections."""

    donors: Count
    samples: Count
    collections: tuple[str, ...] = ()


@dataclass(frozen=True)
class FacetBucket:
    key: str
    label: str
    donors: Count
    samples: Count
    declared: Declared | None = None  # the part collections declare, never in the above


@dataclass(frozen=True)
class Facet:
    name: str
    buckets: tuple[FacetBucket, ...]


@dataclass(frozen=True)
class RecordConnection:
    records: tuple[dict[str, Any], ...]
    end_cursor: str | None
    has_next_page: bool
    # How many records the role may see over all pages (None where the backend did not count).
    total_count: int | None = None


@dataclass(frozen=True)
class SearchResult:
    donors: Count
    samples: Count
    by_biobank: tuple[BiobankResult, ...]
    facets: tuple[Facet, ...]
    records: RecordConnection | None
    # Codes a free-text disease query resolved to, so a researcher sees what was searched.
    text_diseases: tuple[str, ...] = field(default=())
    consent: tuple[OutcomeCounts, ...] | None = None  # network totals per consent outcome
    records_note: str | None = None  # why records are absent or limited (English)
    records_note_messages: tuple[Message, ...] = field(default=(), compare=False)
    # The network sum of declared counts, kept apart from `donors`/`samples` (sample rows).
    declared: Declared | None = None

    def records_note_in(self, language: str) -> str | None:
        """The records note in a language."""
        if self.records_note_messages:
            return render_all(self.records_note_messages, language)
        return self.records_note

    # What is left of the privacy budgets this search spent from (none without a budget).
    budget: tuple[BudgetStatus, ...] = field(default=())
