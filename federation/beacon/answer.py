"""Beacon questions answered by the search service, as GraphQL's `search` asks it.

Every figure comes from `SearchService.search`: the per-biobank counts released under the
asking role's policy (and whatever else that release path applies), and record pages only
from biobanks where the role may see records. Nothing here counts or applies a policy.

Paging: Beacon counts `skip` in pages of `limit` records, the service pages by cursor. A
process remembers the cursor at each offset a client has reached, per identity and
question, so a harvester reading page after page costs one service call per page; a jump
to a page nobody reached walks there in service pages. Individuals are donors, whose
sample rows are spread over the order samples are paged in, so an individuals page is cut
from the whole list of a question's donors, built once per identity and question.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from federation.beacon import BeaconRequestError
from federation.beacon.documents import biosample, individuals
from federation.disclosure.roles import Identity
from federation.search.query import MAX_PAGE_SIZE, PageRequest, SampleQuery
from federation.search.result import RecordConnection, SearchResult
from federation.search.service import SearchService

# Questions whose cursors a process keeps, and offsets kept per question.
CURSOR_QUESTIONS = 256
CURSORS_PER_QUESTION = 1024
# Donor lists a process keeps, and the most sample rows one list is built from: past this
# a record-level individuals question must be narrowed (biosamples page without limit).
DONOR_LISTS = 8
MAX_INDIVIDUAL_ROWS = 200_000

_Key = tuple[Identity, SampleQuery]


@dataclass(frozen=True)
class EntryPage:
    """The released figures of a question and, when the role may see records, one page."""

    result: SearchResult
    records: tuple[tuple[str, dict[str, Any]], ...] | None  # (dataset id, document)
    has_more: bool = False


class BeaconSearch:
    """Counts and record pages for Beacon requests, and the paging memo of one process.

    Every call goes to `service`, the search service as the request's edge holds it (bound
    to the request's audit log, as GraphQL's is): a walk to a deep page or the gathering of
    an individuals list is several searches, each recorded like any other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: OrderedDict[_Key, dict[int, str]] = OrderedDict()
        self._donors: OrderedDict[
            tuple[Identity, SampleQuery, tuple[tuple[str, str], ...]],
            tuple[tuple[str, dict[str, Any]], ...],
        ] = OrderedDict()

    @staticmethod
    def counts(service: SearchService, query: SampleQuery, identity: Identity) -> EntryPage:
        """The released figures of a question, without records (boolean and count)."""
        return EntryPage(service.search(query, identity=identity, facets=()), None)

    def biosamples(
        self,
        service: SearchService,
        query: SampleQuery,
        identity: Identity,
        offset: int,
        limit: int,
    ) -> EntryPage:
        """Sample records offset..offset+limit-1, as sample views turned biosamples."""
        key = (identity, query)
        position, cursor = self._nearest(key, offset)
        while position < offset:
            step = min(MAX_PAGE_SIZE, offset - position)
            result = _page(service, query, identity, PageRequest(step, cursor))
            if result.records is None:
                return EntryPage(result, None)
            cursor = result.records.end_cursor
            position += len(result.records.records)
            if not result.records.has_next_page or cursor is None:
                # The page asked for lies past the last record: the figures, no records.
                figures = service.search(query, identity=identity, facets=())
                return EntryPage(replace(figures, records=_NO_RECORDS), ())
            self._remember(key, position, cursor)
        result = _page(service, query, identity, PageRequest(limit, cursor))
        if result.records is None:
            return EntryPage(result, None)
        page = result.records
        if page.end_cursor is not None:
            self._remember(key, offset + len(page.records), page.end_cursor)
        docs = tuple((str(v["collection_id"]), biosample(v)) for v in page.records)
        return EntryPage(result, docs, page.has_next_page)

    def individuals(
        self,
        service: SearchService,
        query: SampleQuery,
        identity: Identity,
        offset: int,
        limit: int,
    ) -> EntryPage:
        """Donors offset..offset+limit-1 of the question, as individuals."""
        first = _page(service, query, identity, PageRequest(MAX_PAGE_SIZE))
        if first.records is None:
            return EntryPage(first, None)
        # A publish changes the donors: the list is kept per generation of every biobank.
        generations = tuple(sorted((r.biobank_id, r.generation or "") for r in first.by_biobank))
        key = (identity, query, generations)
        with self._lock:
            donors = self._donors.get(key)
        if donors is None:
            rows = _all_rows(service, query, identity, first.records)
            donors = tuple(individuals(rows))
            with self._lock:
                self._donors[key] = donors
                while len(self._donors) > DONOR_LISTS:
                    self._donors.popitem(last=False)
        window = donors[offset : offset + limit]
        return EntryPage(first, window, offset + limit < len(donors))

    def _nearest(self, key: _Key, offset: int) -> tuple[int, str | None]:
        with self._lock:
            known = self._cursors.get(key)
            if not known:
                return 0, None
            self._cursors.move_to_end(key)
            below = [p for p in known if p <= offset]
            if not below:
                return 0, None
            position = max(below)
            return position, known[position]

    def _remember(self, key: _Key, position: int, cursor: str) -> None:
        with self._lock:
            known = self._cursors.setdefault(key, {})
            self._cursors.move_to_end(key)
            if len(known) < CURSORS_PER_QUESTION:
                known[position] = cursor
            while len(self._cursors) > CURSOR_QUESTIONS:
                self._cursors.popitem(last=False)


_NO_RECORDS = RecordConnection((), None, False)


def _page(
    service: SearchService, query: SampleQuery, identity: Identity, page: PageRequest
) -> SearchResult:
    return service.search(query, identity=identity, facets=(), page=page)


def _all_rows(
    service: SearchService, query: SampleQuery, identity: Identity, page: RecordConnection
) -> list[dict[str, Any]]:
    rows = list(page.records)
    while page.has_next_page and page.end_cursor is not None:
        if len(rows) > MAX_INDIVIDUAL_ROWS:
            raise BeaconRequestError(
                "filters",
                query.normalised(),
                f"matches more than {MAX_INDIVIDUAL_ROWS} samples: narrow the question to "
                "page individuals at record level (biosamples page without this limit)",
            )
        result = _page(service, query, identity, PageRequest(MAX_PAGE_SIZE, page.end_cursor))
        if result.records is None:
            break
        page = result.records
        rows.extend(page.records)
    return rows
