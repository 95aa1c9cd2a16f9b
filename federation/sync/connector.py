"""The connector plugin API: what a connector declares and what it yields.

Shaped like a Singer tap: a declared config schema (secrets flagged), streams with a
primary key and an optional replication key, `pull(stream, state)` yielding source records
and checkpoints, and retriable vs fatal errors. A connector never touches an index: the
sync engine validates what it yields and publishes it.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError

from federation.errors import FederationError
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
class Tombstone:
    """The source says a record was deleted (a FHIR history DELETE, a withdrawn flag)."""

    stream: str
    source_id: str
    position: str = ""


@dataclass
class Checkpoint:
    """A bookmark after which a resumed pull of `stream` may start."""

    stream: str
    state: dict[str, Any] = field(default_factory=dict)


class RecordRejected(FederationError, Exception):
    """A source record that cannot be mapped; says which field and value, and why."""

    code = "RECORD_REJECTED"

    def __init__(self, field_name: str, value: Any, reason: str) -> None:
        self.field = field_name
        self.value = value
        self.reason = reason
        super().__init__(f"{field_name}: {reason} (value {value!r})")


class SourceError(FederationError, Exception):
    """The source failed. Retriable errors (timeouts, 5xx) may succeed on a later try."""

    code = "SOURCE_FAILED"

    def __init__(self, message: str, *, retriable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status = status  # the HTTP status, when the source answered with one


class IncompleteRead(SourceError):
    """What a connector read disagrees with what the source says it holds.

    Not retriable by default: a source that announces a total it does not serve, or pages
    differently from what the connector asks, answers the same way on the next try.
    """

    code = "SOURCE_INCOMPLETE"

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message, retriable=retriable)


def check_total(where: str, read: int, announced: int | None, hint: str = "") -> None:
    """Raise IncompleteRead when a stream's read count differs from the source's total."""
    if announced is None or read == announced:
        return
    if read < announced:
        lost = announced - read
        problem = f"read {read} records where the source announces {announced} ({lost} lost)"
    else:
        problem = f"read {read} records where the source announces only {announced}"
    raise IncompleteRead(f"{where}: {problem}{'; ' + hint if hint else ''}")


class ConfigError(FederationError, ValueError):
    """A connector's configuration is invalid; the message names the option."""

    code = "CONNECTOR_CONFIG_INVALID"


# A secret option given as `${NAME}` in the network file is read from the environment.
_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

PulledItem = SourceRecord | Tombstone | Checkpoint


class Connector(abc.ABC):
    """Base class of every connector plugin, built-in or third-party.

    `resumable` connectors honour the state of a Checkpoint they yielded: the sync engine
    stages their records, saves each checkpoint as the run goes, resumes a killed run from
    the last one, and (for streams with a replication key) runs incremental syncs from the
    bookmark the previous run ended with. Non-resumable ones (file exports) are read whole
    by every run, straight into a new generation.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_schema: ClassVar[type[Schema]]
    streams: ClassVar[tuple[Stream, ...]]
    resumable: ClassVar[bool] = False

    def __init__(self, biobank_id: str, config: Mapping[str, Any], *, base_dir: str = ".") -> None:
        self.biobank_id = biobank_id
        self.base_dir = base_dir
        # What the run record should say about how the source was read (a detected paging
        # style, a total the source does not announce); the sync engine records them.
        self.notes: list[str] = []
        raw = dict(config)
        for option in self.secret_options():
            raw[option] = _from_environment(self.name, biobank_id, option, raw.get(option))
        try:
            self.config: dict[str, Any] = self.config_schema().load(raw)
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
        """The config with every secret option shown as `***`, safe to log or display."""
        secrets = set(self.secret_options())
        return {k: ("***" if k in secrets and v else v) for k, v in self.config.items()}

    def secret_values(self) -> tuple[str, ...]:
        """The values of secret options, for scrubbing them out of any message."""
        return tuple(
            str(self.config[k])
            for k in self.secret_options()
            if self.config.get(k) not in (None, "")
        )

    def note(self, text: str) -> None:
        """Say something about this read in the run record (once per distinct text)."""
        if text not in self.notes:
            self.notes.append(text)

    def incremental(self) -> bool:
        """True when this source can be pulled from a bookmark (not just read whole)."""
        return self.resumable and any(s.replication_key for s in self.streams)

    @abc.abstractmethod
    def pull(self, stream: Stream, state: Mapping[str, Any] | None) -> Iterator[PulledItem]:
        """Yield the stream's records from `state` on (all of them when state is None).

        A Checkpoint says every record before it has been yielded; its state, handed back
        to `pull`, continues after it. Tombstones report records deleted at the source.
        """

    @abc.abstractmethod
    def map(self, record: SourceRecord) -> dict[str, Any]:
        """Map a source record to canonical fields, or raise RecordRejected."""

    def close(self) -> None:  # noqa: B027 - optional hook, file sources need none
        """Release connections; called once when the run ends."""


def _from_environment(connector: str, biobank_id: str, option: str, value: Any) -> Any:
    """Resolve `${NAME}` for a secret option; the message names the variable, never a value."""
    if not isinstance(value, str):
        return value
    match = _ENV_REFERENCE.match(value.strip())
    if not match:
        return value
    variable = match.group(1)
    if variable not in os.environ:
        raise ConfigError(
            f"{connector} connector for {biobank_id}: {option} refers to the environment "
            f"variable {variable}, which is not set"
        )
    return os.environ[variable]
