"""Reject values, not records: keep a record whose only faults are values it can do without.

A donor with one non-WHO code among three diagnoses is still a donor with two diagnoses; a
sample with an unknown storage temperature is still a sample. So when canonical validation
fails only on such values, they are dropped (each with its reason, for the quarantine) and
the rest of the record is loaded. What a record cannot do without (its id, a donor's sex, a
sample's material type or donor) still rejects it whole.

Consent is dropped whole, never a term of it: leaving out one unreadable restriction could
permit what the donor did not; without consent the donor is unknown, and unknown consent
fails closed (never permitted for a declared purpose).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError

# Multi-valued fields whose bad items are dropped one by one.
DROPPABLE_ITEMS = frozenset(
    {"diagnoses", "orpha", "data_categories", "types", "materials", "sexes", "storage_temperatures"}
)
# Optional fields left empty when their value is bad.
DROPPABLE_VALUES = frozenset(
    {"consent", "default_consent", "storage_temperature"}
    # A collection's declared facts: a bad one leaves the collection searchable without it.
    | {"size", "donors", "age_low", "age_high", "country"}
)
# The key under which a connector lists values it left out while mapping (a code with no
# mapping, say): `[{"field", "value", "reason"}]`. Canonical schemas ignore unknown keys.
DROPPED_KEY = "_dropped"
KEPT_NOTE = "the record is kept without it"


@dataclass(frozen=True)
class DroppedValue:
    """A value left out of a record that is kept: where it was, what it was, and why."""

    field: str
    value: Any
    reason: str


def dropped_by_connector(mapped: Any) -> list[DroppedValue]:
    """The values a connector's mapping left out, as it listed them under DROPPED_KEY."""
    listed = mapped.get(DROPPED_KEY) if isinstance(mapped, Mapping) else None
    return [
        DroppedValue(str(d.get("field")), d.get("value"), str(d.get("reason")))
        for d in listed or ()
        if isinstance(d, Mapping)
    ]


def load_keeping_good_values(
    schema: Schema, mapped: Mapping[str, Any], error: ValidationError
) -> tuple[Any, list[DroppedValue]]:
    """The record without the bad values `error` names, and those values with reasons.

    Re-raises `error` when a field the record cannot do without failed.
    """
    messages = error.messages if isinstance(error.messages, Mapping) else {}
    if not messages:
        raise error
    cleaned = dict(mapped)
    dropped: list[DroppedValue] = []
    for name, problem in messages.items():
        if name in DROPPABLE_ITEMS and isinstance(problem, Mapping) and problem:
            values = mapped.get(name)
            if not isinstance(values, (list, tuple)):
                raise error
            bad = {int(i) for i in problem if str(i).isdigit()}
            if len(bad) != len(problem):
                raise error
            for index in sorted(bad):
                dropped.append(
                    DroppedValue(f"{name}[{index}]", values[index], _reason(problem[index]))
                )
            cleaned[name] = [v for i, v in enumerate(values) if i not in bad]
        elif name in DROPPABLE_VALUES:
            dropped.append(DroppedValue(str(name), mapped.get(name), _reason(problem)))
            cleaned.pop(name, None)
        else:
            raise error
    return schema.load(cleaned), dropped


def _reason(problem: Any) -> str:
    if isinstance(problem, list):
        return "; ".join(str(p) for p in problem)
    return str(problem)


def quarantine_text(dropped: list[DroppedValue]) -> tuple[str, str, str]:
    """(field, value, reason) of one quarantine row describing every dropped value."""
    fields = ", ".join(d.field for d in dropped)
    values = ", ".join("" if d.value is None else str(d.value) for d in dropped)
    reasons = "; ".join(f"{d.field}: {d.reason}" for d in dropped)
    return fields, values, f"{reasons} ({KEPT_NOTE})"
