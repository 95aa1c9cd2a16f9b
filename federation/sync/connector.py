"""The connector plugin API: what a connector declares and what it yields.

Shaped like a Singer tap: a declared config schema (secrets flagged), streams with a
primary key and an optional replication key, `pull(stream, state)` yielding source records
and checkpoints, and retriable vs fatal errors. A connector never touches an index: the
sync engine validates what it yields and publishes it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError

from federation.model.records import describe_errors

# Canonical record kinds in the order a sync reads them: samples refer to both others.
RECORD_KINDS = ("collection", "donor", "sample")


@dataclass(frozen=True)
class Stream:
    """One kind of record a connector reads from its source."""

    name: str
    record: str  # one of RECORD_KINDS
    primary_key: str = "id"
    replication_key: str | None = None


@dataclass
class SourceRecord:
    """One record as read at the source, before mapping; kept whole in the quarantine."""

    stream: str
    source_id: str | None
    payload: Mapping[str, Any]
    position: str = ""  # where to find it at the source, e.g. "samples.csv line 12"


@dataclass
class Checkpoint:
    """A bookmark after which a resumed pull of `stream` may start."""

    stream: str
    state: dict[str, Any] = field(default_factory=dict)


class RecordRejected(Exception):
    """A source record that cannot be mapped; says which field and value, and why."""

    def __init__(self, field_name: str, value: Any, reason: str) -> None:
        self.field = field_name
        self.value = value
        self.reason = reason
        super().__init__(f"{field_name}: {reason} (value {value!r})")


class SourceError(Exception):
    """The source failed. Retriable errors (timeouts, 5xx) may succeed on a later try."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class ConfigError(ValueError):
    """A connector's configuration is invalid; the message names the option."""


class Connector(abc.ABC):
    """Base class of every connector plugin, built-in or third-party."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_schema: ClassVar[type[Schema]]
    streams: ClassVar[tuple[Stream, ...]]

    def __init__(self, biobank_id: str, config: Mapping[str, Any], *, base_dir: str = ".") -> None:
        self.biobank_id = biobank_id
        self.base_dir = base_dir
        try:
            self.config: dict[str, Any] = self.config_schema().load(dict(config))
        except ValidationError as err:
            lines = "; ".join(describe_errors(err.messages))
            raise ConfigError(f"{self.name} connector for {biobank_id}: {lines}") from None

    @classmethod
    def secret_options(cls) -> tuple[str, ...]:
        """Config options flagged `metadata={"secret": True}`: never logged or shown."""
        return tuple(
            name for name, f in cls.config_schema().fields.items() if f.metadata.get("secret")
        )

    def redacted_config(self) -> dict[str, Any]:
        secrets = set(self.secret_options())
        return {k: ("***" if k in secrets else v) for k, v in self.config.items()}

    @abc.abstractmethod
    def pull(
        self, stream: Stream, state: Mapping[str, Any] | None
    ) -> Iterator[SourceRecord | Checkpoint]:
        """Yield the stream's records from `state` on (all of them when state is None)."""

    @abc.abstractmethod
    def map(self, record: SourceRecord) -> dict[str, Any]:
        """Map a source record to canonical fields, or raise RecordRejected."""

    def close(self) -> None:  # noqa: B027 - optional hook, file sources need none
        """Release connections; called once when the run ends."""
