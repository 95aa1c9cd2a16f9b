"""A released count and its precision: what the disclosure policy hands to every answer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from federation.i18n import Message, render_all


class Precision(enum.Enum):
    """How a released count relates to the true one (after Beacon v2.2 `countPrecision`)."""

    EXACT = "exact"
    ROUNDED = "rounded"
    NOISED = "noised"
    BELOW_THRESHOLD = "below_threshold"
    BOOLEAN = "boolean"  # only whether there are any; see `exists`
    LOWER_BOUND = "lower_bound"  # a total that leaves out withheld cells
    BUDGET_SPENT = "budget_spent"  # the privacy budget is spent: a coarser release
    # What collections declare of themselves (collection-level biobanks), not counted rows:
    # the whole size of each collection whose declared facts overlap the query.
    DECLARED = "declared"
    HIDDEN = "hidden"


@dataclass(frozen=True)
class Count:
    """A released count: `value` is None when the policy withholds the number."""

    value: int | None
    precision: Precision = Precision.EXACT
    reason: str | None = None  # in English: the stable text clients have relied on
    exists: bool | None = None  # set when only presence may be told (boolean granularity)
    # The reason as catalogue messages, rendered in the asker's language at the gateway.
    messages: tuple[Message, ...] = field(default=(), compare=False)

    @classmethod
    def explained(
        cls,
        value: int | None,
        precision: Precision,
        messages: tuple[Message, ...],
        exists: bool | None = None,
    ) -> Count:
        """A count whose reason is `messages` (and, in English, `reason`)."""
        return cls(value, precision, render_all(messages), exists, messages)

    def reason_in(self, language: str) -> str | None:
        """The reason in a language (the English `reason` when it has no messages)."""
        return render_all(self.messages, language) if self.messages else self.reason

    @classmethod
    def exact(cls, value: int) -> Count:
        return cls(value, Precision.EXACT, None)
