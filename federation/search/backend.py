"""The interface every search backend implements, and what it shares across backends."""

from __future__ import annotations

import abc
import base64
import contextlib
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

from federation.errors import FederationError
from federation.model.expr import Expr
from federation.search.query import BackendAnswer, BadQuery, Criteria, PageRequest

# Which cells' donor key sums a question needs: all (True), none (False), or those of the
# biobanks named (the ones whose figures the asker gets noised).
Fingerprints = bool | frozenset[str]


class BackendUnavailable(FederationError, RuntimeError):
    """The backend cannot answer now (engine down, store unreadable); searches fail fast."""

    code = "BACKEND_UNAVAILABLE"
    # The stable code clients see in GraphQL `extensions.code` (the same as `code`).
    error_code: ClassVar[str] = "BACKEND_UNAVAILABLE"
    # Biobanks whose data the backend cannot search now (an answer would leave them out):
    # public ids, so clients are told whose counts are missing.
    missing: tuple[str, ...] = ()


class IncompleteAnswer(BackendUnavailable):
    """An answer would leave out biobanks whose published data the backend does not hold
    now (an index, alias or generation file gone): refused, never a silent undercount."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(sorted(missing))
        super().__init__(
            "an answer now would leave out biobanks whose published data the search backend "
            f"does not hold: {', '.join(self.missing)} (resync them: biofed sync --biobank ID)"
        )


@dataclass(frozen=True)
class GenerationInfo:
    """A published generation of one biobank's documents."""

    biobank_id: str
    generation: str
    documents: int
    published_at: str
    # Small facts published with the rows (the biobank's collections), served as they are.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChangeOutcome:
    """What an incremental change did: writes applied, stale ones skipped, donors rebuilt."""

    upserted: int
    deleted: int
    missing: int  # deletes of samples the generation did not hold
    conflicts: int  # writes a newer version had already overtaken (engines only)
    donors_rebuilt: int


class GenerationWriter(abc.ABC):
    """Writes a new generation of one biobank; nothing is visible until `publish`.

    Used as a context manager: leaving the block without publishing (an error, an
    interrupted sync) discards the half-written generation and the previous one serves on.
    """

    # The generation being written and the rows added so far (set by each writer).
    generation: str
    count: int

    def __init__(self, biobank_id: str) -> None:
        self.biobank_id = biobank_id
        self.published: GenerationInfo | None = None
        self.metadata: dict[str, Any] = {}

    @abc.abstractmethod
    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append index rows (see `federation.search.documents`)."""

    @abc.abstractmethod
    def _publish(self) -> GenerationInfo:
        """Make the generation the one searches see, in one atomic step."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard everything written; the previous generation keeps serving."""

    def publish(self) -> GenerationInfo:
        self.published = self._publish()
        return self.published

    def __enter__(self) -> GenerationWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.published is None:
            self.abort()


class SearchBackend(abc.ABC):
    """Answers criteria with exact counts, facets and record pages; stores generations."""

    name: ClassVar[str]

    @abc.abstractmethod
    def answer(
        self,
        criteria: Criteria,
        *,
        facets: Sequence[str] = (),
        page: PageRequest | None = None,
        segments: Mapping[str, Expr] | None = None,
        page_filter: Expr | None = None,
        fingerprints: Fingerprints = True,
    ) -> BackendAnswer:
        """Exact per-biobank counts, facet cells per biobank, and optionally a page of rows.

        `segments` are named filters counted per biobank within the matches (consent
        outcomes); `page_filter` further restricts the rows of the page (to usable consent),
        so counts, segments and paging come from one consistent query. Without
        `fingerprints` the cells' key sums are not computed (0): an asker whose figures
        carry no noise needs none, and skips their cost; with a set of biobank ids, the
        cells of the biobanks outside it may read 0 too (a backend may key them anyway).
        """

    @abc.abstractmethod
    def generation_writer(self, biobank_id: str) -> GenerationWriter:
        """Start writing a new full generation of a biobank."""

    @abc.abstractmethod
    def apply_changes(
        self,
        biobank_id: str,
        upserts: Sequence[Mapping[str, Any]],
        deletes: Sequence[str],
        *,
        version: int,
    ) -> ChangeOutcome:
        """Upsert sample rows and delete samples by id in the biobank's live data (an
        incremental sync), visible to searches all at once or not at all.

        `version` grows with every change (a sync passes epoch milliseconds, always above the
        last it used); a backend that orders writes by it lets a replayed or stale change
        lose to a newer one. A row whose donor withdrew is deleted, never indexed. Raises
        when the biobank has no published generation: run a full sync first.
        """

    @abc.abstractmethod
    def published(self) -> dict[str, GenerationInfo]:
        """The generation each biobank currently serves."""

    def publication_scope(self) -> str:
        """What names this backend's data in the state store's publication counters: every
        process reading the same data says the same (federation/search/warm.py)."""
        return self.name

    @abc.abstractmethod
    def sample_ids(self, biobank_id: str) -> set[str]:
        """Ids of the samples the biobank's current generation holds (to count deletions)."""

    @abc.abstractmethod
    def remove_biobank(self, biobank_id: str) -> None:
        """Stop serving a biobank altogether (it left the network)."""

    def sync_lock(self, biobank_id: str) -> AbstractContextManager[object]:
        """A lock the backend holds for a biobank's sync across hosts; none by default.

        The sync also holds a file lock per biobank, which covers one machine (the
        embedded backend); an engine shared by several hosts adds its own.
        """
        return contextlib.nullcontext()

    def holding_publishes(self) -> AbstractContextManager[object]:
        """Generations published inside may become searchable only at `settle()`: a sync of
        many biobanks then prepares what servers search once (the embedded snapshot), not
        once per biobank. Backends that publish each generation whole need nothing."""
        return contextlib.nullcontext()

    def settle(self) -> None:  # noqa: B027 - optional hook, most backends need none
        """Return once every generation published so far is what searches see."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """True when searches can be answered now."""

    def serves(self, generations: Mapping[str, str]) -> bool:
        """Whether these generations (biobank -> generation) are all searchable now: a kept
        answer read from them (search/warm.py) may stand in for asking."""
        published = self.published()
        return all(
            bb in published and published[bb].generation == generation
            for bb, generation in generations.items()
        )

    def damaged(self) -> dict[str, str]:
        """Published generations that cannot be searched whole: biobank -> why.

        A generation's documents must all be there (its file or index exists and holds the
        count it was published with); a backend with nothing to check reports none.
        """
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need none
        """Release files and connections."""


def encode_cursor(position: Sequence[Any]) -> str:
    raw = json.dumps(list(position), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int = 2) -> list[Any]:
    """The position a cursor holds: `size` values, the last two strings (biobank, sample)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise BadQuery("after", cursor, "not a cursor this service issued") from None
    if (
        not isinstance(value, list)
        or len(value) != size
        or not all(isinstance(v, str) for v in value[-2:])
        or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
    ):
        raise BadQuery("after", cursor, "not a cursor this service issued")
    return value
