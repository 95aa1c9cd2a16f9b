"""Warm answers: what every visitor asks, computed once per publish, released at every use.

Each publish (a sync's new generation, an incremental change, a biobank removed) bumps the
publication counter of the backend's scope in the state store
(`federation.state.publications`). Right after, the sync asks the backend the landing
question (no filter, every facet, with the fingerprint sums noised roles need) and keeps
the raw answer under that publication. A server process reads the counter once per
search (one primary-key row) and keeps, per publication, the published generations and the
warm landing answer; every question the landing answer contains (no filter, no records,
no purpose: any set of facets, with or without fingerprints) is cut from it instead of
asked again. The figures are the backend's exact ones: the service releases them under the
asker's rules (disclosure, noise, budget, audit) like any other answer.

Until the warm answer of the current publication is stored (the sync is still computing
it), searches are asked of the backend as before, so a search during warming is answered
from the data it sees. A warm answer whose generations are not the ones the backend
publishes now (computed from other data sharing the scope's name) is never used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from federation.model.expr import Expr
from federation.search.backend import Fingerprints, GenerationInfo, SearchBackend
from federation.search.query import (
    FACETS,
    BackendAnswer,
    Cell,
    Criteria,
    FacetCell,
    PageRequest,
    RecordPage,
)
from federation.state.publications import Publications

log = logging.getLogger(__name__)

# The one question kept warm: the landing page with every facet and fingerprints.
LANDING = "landing"
# The version of the stored form; an answer stored in another is not read.
FORMAT = 2
# How often a watching server process (`PublishedAnswers.watch`) reads the publication
# counter; after noticing a publish, how often it looks for the warm answer the sync is
# still computing, and for how long at most (a sync whose warming failed stores none).
# One indexed row read per worker per interval; a visitor arriving within it after a
# publish loads the publication in their own search (a 1 s interval did so in half the
# bench's first searches after a publish).
WATCH_INTERVAL_S = 0.25
WARMING_INTERVAL_S = 0.1
WARMING_WINDOW_S = 120.0
# Cuts of the landing answer kept per publication (one per set of facets asked).
KEPT_CUTS = 16


def warm_published(backend: SearchBackend, publications: Publications) -> bool:
    """Compute and keep the warm answers of the backend's current publication; False when a
    later publish overtook the computation (that publish's warming keeps its own)."""
    scope = backend.publication_scope()
    serial = publications.serial(scope)
    started = time.perf_counter()
    landing = backend.answer(Criteria(), facets=FACETS, fingerprints=True)
    kept = publications.keep_answers(scope, serial, {LANDING: encode_answer(landing)})
    log.info(
        "warm answers of publication %s (%s): %s in %.2f s",
        serial,
        scope,
        "kept" if kept else "overtaken by a later publish",
        time.perf_counter() - started,
    )
    return kept


def record_publish(backend: SearchBackend, publications: Publications) -> int:
    """Count a publish of the backend's data: every server sees it on its next search."""
    return publications.bump(backend.publication_scope())


def is_landing(
    criteria: Criteria,
    facets: Sequence[str],
    page: PageRequest | None,
    segments: Mapping[str, Expr] | None,
    page_filter: Expr | None,
) -> bool:
    """Whether the landing answer holds the whole answer to this question."""
    return (
        criteria == Criteria()
        and page is None
        and not segments
        and page_filter is None
        and all(f in FACETS for f in facets)
    )


def cut(landing: BackendAnswer, facets: Sequence[str], fingerprints: Fingerprints) -> BackendAnswer:
    """The answer to the unfiltered question on `facets` (with fingerprints, without, or
    for some biobanks only: the others' read 0, as the backends answer then), cut from the
    landing answer."""
    order = {facet: n for n, facet in enumerate(dict.fromkeys(facets))}
    cells = [c for c in landing.facets if c.facet in order]
    cells.sort(key=lambda c: order[c.facet])
    if fingerprints is True:
        return dataclasses.replace(landing, facets=tuple(cells))
    keyed = fingerprints or frozenset()

    def kept(biobank: str, cell: Cell) -> Cell:
        return cell if biobank in keyed else _unkeyed(cell)

    return dataclasses.replace(
        landing,
        by_biobank={bb: kept(bb, c) for bb, c in landing.by_biobank.items()},
        facets=tuple(
            c if c.biobank_id in keyed else dataclasses.replace(c, donor_fp=0) for c in cells
        ),
        segments={
            bb: {name: kept(bb, c) for name, c in split.items()}
            for bb, split in landing.segments.items()
        },
    )


def _unkeyed(cell: Cell) -> Cell:
    return Cell(cell.donors, cell.samples)


class PublishedAnswers:
    """A backend read through its publication counter: the published generations and the
    warm landing answer are kept per publication, in this process, for every thread."""

    def __init__(
        self, backend: SearchBackend, publications: Publications, *, warm: bool = True
    ) -> None:
        self.backend = backend
        self.publications = publications
        # Without `warm` every question is the backend's (the benchmark's uncached landing).
        self.warm = warm
        self.scope = backend.publication_scope()
        self._lock = threading.Lock()
        self._serial: int | None = None
        self._published: dict[str, GenerationInfo] | None = None
        self._landing: BackendAnswer | None = None
        # The serial a thread's search read in `answer`, used once by its `published`.
        self._asked = threading.local()
        # Questions answered warm in this process (for tests and metrics).
        self.warm_hits = 0
        # Cuts of the warm landing answer, by (facets, fingerprints): the same few
        # questions (the landing page) are cut again and again until the next publish.
        self._cuts: dict[tuple[tuple[str, ...], Fingerprints], BackendAnswer] = {}
        # The publication `prepare` last made the backend follow.
        self._prepared: int | None = None
        # The cuts asked of the previous publication, made again by `prepare` for the next.
        self._recut: tuple[tuple[tuple[str, ...], Fingerprints], ...] = ()

    def _observe(self) -> int:
        """Read the counter; forget what was kept for an earlier publication."""
        serial = self.publications.serial(self.scope)
        with self._lock:
            if serial != self._serial:
                self._serial, self._published, self._landing = serial, None, None
                self._recut = tuple(self._cuts) or self._recut
                self._cuts = {}
        return serial

    def prepare(self) -> bool:
        """Read now what the first search after a publish would read: the backend's new
        state (`ready`: the embedded backend opens the new snapshot), the published
        generations and the warm landing answer. True when all of it is loaded."""
        serial = self._observe()
        with self._lock:
            noticed = self._prepared != serial
            self._prepared = serial
        if noticed:
            self.backend.ready()
        self._published_at(serial)
        if not self.warm:
            return True
        landing = self._warm_landing(serial)
        if landing is None:
            return False
        # The questions visitors asked before (the landing page's facets per role class)
        # are cut now, so that none of them pays for it after a publish.
        for facets, fingerprints in self._recut:
            self._cut(serial, landing, facets, fingerprints, asked=False)
        return True

    def watch(self) -> threading.Thread:
        """Prepare each publication as soon as it is noticed, in a background thread of
        this process (a gunicorn worker starts one), so that no visitor's search pays for
        loading it. Figures are released per search as always: nothing is served here."""
        thread = threading.Thread(target=self._watching, name="warm-answers", daemon=True)
        thread.start()
        return thread

    def _watching(self) -> None:
        noticed: tuple[int | None, float] = (None, 0.0)
        failing = ""
        while True:
            try:
                loaded = self.prepare()
                failing = ""
            except Exception as err:  # a search reads it itself; the watch goes on
                # Once per failure, not once a second while the state store is away.
                if f"{type(err).__name__}: {err}" != failing:
                    failing = f"{type(err).__name__}: {err}"
                    log.warning("warm answers not prepared: %s", failing)
                loaded = True
            if self._serial != noticed[0]:
                noticed = (self._serial, time.monotonic())
            warming = not loaded and time.monotonic() - noticed[1] < WARMING_WINDOW_S
            time.sleep(WARMING_INTERVAL_S if warming else WATCH_INTERVAL_S)

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
        """The backend's answer, cut from the warm landing answer when that holds it."""
        serial = self._observe()
        self._asked.serial = serial
        if self.warm and is_landing(criteria, facets, page, segments, page_filter):
            landing = self._warm_landing(serial)
            # Data lost behind the servers' back (an index deleted, a generation file gone)
            # publishes nothing: asking the backend then refuses the answer, naming whose
            # data is missing, where the kept answer would hide it.
            if landing is not None and self.backend.serves(landing.generation):
                return self._cut(serial, landing, facets, fingerprints)
        return self.backend.answer(
            criteria,
            facets=facets,
            page=page,
            segments=segments,
            page_filter=page_filter,
            fingerprints=fingerprints,
        )

    def _cut(
        self,
        serial: int,
        landing: BackendAnswer,
        facets: Sequence[str],
        fingerprints: Fingerprints,
        *,
        asked: bool = True,
    ) -> BackendAnswer:
        """`cut`, kept per publication: answers are immutable, so every thread shares one.
        `asked`: for a search (counted in `warm_hits`), not made ahead by `prepare`."""
        key = (tuple(facets), fingerprints)
        with self._lock:
            self.warm_hits += asked
            kept = self._cuts.get(key) if self._serial == serial else None
        if kept is not None:
            return kept
        answer = cut(landing, facets, fingerprints)
        with self._lock:
            if self._serial == serial:
                if len(self._cuts) >= KEPT_CUTS:
                    self._cuts = {}
                self._cuts[key] = answer
        return answer

    def published(self) -> dict[str, GenerationInfo]:
        """The backend's published generations, read once per publication."""
        serial = getattr(self._asked, "serial", None)
        self._asked.serial = None
        if serial is None:
            serial = self._observe()
        return dict(self._published_at(serial))

    def _published_at(self, serial: int) -> dict[str, GenerationInfo]:
        with self._lock:
            if self._serial == serial and self._published is not None:
                return self._published
        published = self.backend.published()
        with self._lock:
            if self._serial == serial:
                self._published = published
        return published

    def _warm_landing(self, serial: int) -> BackendAnswer | None:
        # Until the sync has stored it, each landing search looks again (one more row read,
        # next to a backend question of a hundred milliseconds or more).
        with self._lock:
            if self._serial != serial:
                return None
            if self._landing is not None:
                return self._landing
        stored = self.publications.answers(self.scope, serial).get(LANDING)
        if stored is None:
            return None
        landing = decode_answer(stored)
        if landing is None or not self._current(landing, self._published_at(serial)):
            return None
        with self._lock:
            if self._serial == serial:
                self._landing = landing
        return landing

    def _current(self, answer: BackendAnswer, published: Mapping[str, GenerationInfo]) -> bool:
        """Whether the answer was read from the generations published now."""
        for biobank_id, generation in answer.generation.items():
            info = published.get(biobank_id)
            if info is None or info.generation != generation:
                log.warning("warm answer unused: %s of %s not so published", biobank_id, self.scope)
                return False
        return True


# --- the stored form ---------------------------------------------------------------------------


def encode_answer(answer: BackendAnswer) -> str:
    """A backend answer as JSON text, every figure kept (`decode_answer` reads it back)."""
    return json.dumps(
        {
            "format": FORMAT,
            "by_biobank": {bb: list(c.figures) for bb, c in answer.by_biobank.items()},
            "facets": [
                [c.facet, c.key, c.biobank_id, c.donors, c.samples, c.donor_fp]
                for c in answer.facets
            ],
            "page": None if answer.page is None else _encode_page(answer.page),
            "generation": answer.generation,
            "segments": {
                bb: {name: list(c.figures) for name, c in split.items()}
                for bb, split in answer.segments.items()
            },
            "covered": None if answer.covered is None else sorted(answer.covered),
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def decode_answer(text: str) -> BackendAnswer | None:
    """The answer `encode_answer` wrote; None when it was stored in another format."""
    raw = json.loads(text)
    if raw.get("format") != FORMAT:
        return None
    return BackendAnswer(
        by_biobank={bb: Cell(*figures) for bb, figures in raw["by_biobank"].items()},
        facets=tuple(FacetCell(*cell) for cell in raw["facets"]),
        page=None if raw["page"] is None else _decode_page(raw["page"]),
        generation=dict(raw["generation"]),
        segments={
            bb: {name: Cell(*figures) for name, figures in split.items()}
            for bb, split in raw["segments"].items()
        },
        covered=None if raw["covered"] is None else frozenset(raw["covered"]),
    )


def _encode_page(page: RecordPage) -> dict[str, Any]:
    return {
        "records": [{k: _encode_value(v) for k, v in r.items()} for r in page.records],
        "end_cursor": page.end_cursor,
        "has_next_page": page.has_next_page,
        "total": page.total,
    }


def _decode_page(raw: Mapping[str, Any]) -> RecordPage:
    return RecordPage(
        tuple({k: _decode_value(v) for k, v in r.items()} for r in raw["records"]),
        raw["end_cursor"],
        raw["has_next_page"],
        raw["total"],
    )


def _encode_value(value: Any) -> Any:
    """A record value as JSON; dates and lists keep their kind (tagged), nothing is dropped."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, list):
        return {"list": [_encode_value(v) for v in value]}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"record value {value!r}: a {type(value).__name__} cannot be kept warm")


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        ((kind, inner),) = value.items()
        if kind == "datetime":
            return dt.datetime.fromisoformat(inner)
        if kind == "date":
            return dt.date.fromisoformat(inner)
        return [_decode_value(v) for v in inner]
    return value
