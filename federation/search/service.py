"""The search service: turns a researcher's query into backend criteria and a result."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from federation.model import icd10, vocab
from federation.model.disease_names import DiseaseNames, NameMatch, default_names
from federation.search.backend import SearchBackend
from federation.search.documents import record_view
from federation.search.query import (
    FACETS,
    MAX_PAGE_SIZE,
    BackendAnswer,
    BadQuery,
    Criteria,
    PageRequest,
    SampleQuery,
)
from federation.search.result import (
    BiobankResult,
    Count,
    Facet,
    FacetBucket,
    RecordConnection,
    SearchResult,
)


class SearchService:
    """One search = one backend round of counts, facets and (optionally) records."""

    def __init__(self, backend: SearchBackend, names: DiseaseNames | None = None) -> None:
        self.backend = backend
        self.names = names or default_names()

    def criteria(self, query: SampleQuery) -> tuple[Criteria, tuple[str, ...]]:
        """Resolve a query to backend criteria; also return the codes its free text found."""
        groups: list[tuple[str, ...]] = []
        if query.diseases:
            groups.append(query.diseases)
        text_codes: tuple[str, ...] = ()
        if query.text:
            text_codes = self.names.codes_for_text(query.text)
            groups.append(text_codes)  # an empty group matches nothing, as it should
        return (
            Criteria(
                disease_terms=tuple(groups),
                material_type=query.materials,
                sex=query.sexes,
                age_min=query.age_min,
                age_max=query.age_max,
                biobank_id=query.biobanks,
                collection_types=query.collection_types,
                data_categories=query.data_categories,
            ),
            text_codes,
        )

    def search(
        self,
        query: SampleQuery,
        *,
        facets: Sequence[str] = FACETS,
        page: PageRequest | None = None,
    ) -> SearchResult:
        """Exact counts per biobank, facets and a page of records for the query."""
        unknown = [f for f in facets if f not in FACETS]
        if unknown:
            raise BadQuery("facets", unknown[0], f"unknown facet; known: {', '.join(FACETS)}")
        if page is not None and not 1 <= page.first <= MAX_PAGE_SIZE:
            raise BadQuery("first", page.first, f"must be between 1 and {MAX_PAGE_SIZE}")
        criteria, text_codes = self.criteria(query)
        answer = self.backend.answer(criteria, facets=facets, page=page)
        return self._result(answer, facets, text_codes)

    def _result(
        self, answer: BackendAnswer, facets: Sequence[str], text_codes: tuple[str, ...]
    ) -> SearchResult:
        by_biobank = tuple(
            BiobankResult(
                bb, Count.exact(c.donors), Count.exact(c.samples), answer.generation.get(bb)
            )
            for bb, c in sorted(answer.by_biobank.items())
        )
        sums: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for cell in answer.facets:
            bucket = sums[cell.facet][cell.key]
            bucket[0] += cell.donors  # donors are biobank-scoped, so per-biobank sums are exact
            bucket[1] += cell.samples
        facet_list = tuple(
            Facet(
                name,
                tuple(
                    FacetBucket(key, self.label(name, key), Count.exact(d), Count.exact(s))
                    for key, (d, s) in sorted(sums[name].items(), key=lambda kv: (-kv[1][1], kv[0]))
                ),
            )
            for name in facets
        )
        records = None
        if answer.page is not None:
            records = RecordConnection(
                tuple(record_view(r) for r in answer.page.records),
                answer.page.end_cursor,
                answer.page.has_next_page,
            )
        return SearchResult(
            donors=Count.exact(sum(c.donors for c in answer.by_biobank.values())),
            samples=Count.exact(sum(c.samples for c in answer.by_biobank.values())),
            by_biobank=by_biobank,
            facets=facet_list,
            records=records,
            text_diseases=text_codes,
        )

    def label(self, facet: str, key: str, language: str = "en") -> str:
        """A human label for a facet bucket key."""
        if facet in ("chapter", "block"):
            return self.names.name(key, language) if icd10.is_code(key) else key
        table = {
            "material_type": vocab.material_types(),
            "sex": vocab.sexes(),
            "collection_type": vocab.collection_types(),
        }.get(facet)
        return table.label(key) if table else key

    def diseases(self, text: str, first: int = 10) -> list[NameMatch]:
        """Autocomplete over ICD-10 codes and names."""
        if not 1 <= first <= MAX_PAGE_SIZE:
            raise BadQuery("first", first, f"must be between 1 and {MAX_PAGE_SIZE}")
        return self.names.find(text, first)
