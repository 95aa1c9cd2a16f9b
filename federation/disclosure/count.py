"""A released count and its precision: what the disclosure policy hands to every answer."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Precision(enum.Enum):
    """How a released count relates to the true one (after Beacon v2.2 `countPrecision`)."""

    EXACT = "exact"
    ROUNDED = "rounded"
    NOISED = "noised"
    BELOW_THRESHOLD = "below_threshold"
    BOOLEAN = "boolean"  # only whether there are any; see `exists`
    LOWER_BOUND = "lower_bound"  # a total that leaves out withheld cells
    BUDGET_SPENT = "budget_spent"  # the privacy budget is spent: a coarser release
    HIDDEN = "hidden"


@dataclass(frozen=True)
class Count:
    """A released count: `value` is None when the policy withholds the number."""

    value: int | None
    precision: Precision = Precision.EXACT
    reason: str | None = None
    exists: bool | None = None  # set when only presence may be told (boolean granularity)

    @classmethod
    def exact(cls, value: int) -> Count:
        return cls(value, Precision.EXACT, None)
