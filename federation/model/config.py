"""Configuration sections read with marshmallow, with errors that name the setting and value.

Every section (`auth`, `limits`, a biobank's `disclosure`) is a schema derived from
`SectionSchema`, as connectors declare theirs: an unknown setting is an error naming it,
and `section_errors` turns marshmallow's nested messages into one `path: reason` line per
problem, such as `limits.rate_limit.anonymous.per_minute: 0 must be more than 0`.
The fields here say what was wrong with the value as it was written (its `repr`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields

UNKNOWN_SETTING = "unknown setting"
NOT_A_MAPPING = "must be a mapping"
NOT_NULL = "must be given a value, not null"


class SectionSchema(Schema):
    """A configuration section: unknown settings and non-mappings are named errors."""

    error_messages: ClassVar[dict[str, str]] = {  # type: ignore[misc]
        "unknown": UNKNOWN_SETTING,
        "type": NOT_A_MAPPING,
    }


def section_errors(messages: Any, where: str) -> list[str]:
    """Marshmallow's messages as `where.path: reason` lines (`where[n]` for list items)."""
    if isinstance(messages, Mapping):
        lines: list[str] = []
        for key, value in messages.items():
            if key == "_schema":
                lines.extend(section_errors(value, where))
            elif value == [UNKNOWN_SETTING]:
                lines.append(f"{where}: {UNKNOWN_SETTING} {key!r}")
            else:
                inner = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
                lines.extend(section_errors(value, inner))
        return lines
    if isinstance(messages, list):
        return [line for m in messages for line in section_errors(m, where)]
    return [f"{where}: {messages}"]


class _Setting(fields.Field):  # type: ignore[type-arg]
    default_error_messages = {"null": NOT_NULL}  # noqa: RUF012 (marshmallow's own attribute)


class WholeNumber(_Setting):
    """An integer (not a boolean) of at least `low`."""

    def __init__(self, low: int, reason: str = "is not a whole number >= {low}", **kw: Any):
        super().__init__(**kw)
        self.low = low
        self.reason = reason.format(low=low)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.low:
            raise ValidationError(f"{value!r} {self.reason}")
        return value


class PositiveNumber(_Setting):
    """A finite number above 0, written as a number or a numeric string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValidationError(f"{value!r} is not a number") from None
        if not number > 0 or math.isinf(number):
            raise ValidationError(f"{value!r} must be more than 0")
        return number


class Seconds(_Setting):
    """A number of seconds, 0 or more."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ValidationError(f"{value!r} is not a number of seconds") from None
        if seconds < 0:
            raise ValidationError(f"{value!r} must not be negative")
        return seconds


class Flag(_Setting):
    """`true` or `false`, nothing else (YAML's `yes` is already a boolean when it comes)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{value!r} is not true or false")
        return value
