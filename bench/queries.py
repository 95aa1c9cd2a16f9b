"""The fixed query mix, as the service is asked it and as written by hand for each backend.

Every question asks the by-biobank counts and all facets, as the web UI does on each
search. The hand-written forms answer the same question straight from the backend: raw
SQL on the embedded store's DuckDB table, raw query DSL through the opensearch-py client.
They return exact counts (no disclosure rules), so "ours / raw" is the price of the query
compiler, the result reader, the consent split and the release of every count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from federation.consent import ResearchPurpose
from federation.search.query import AGE_BUCKET_YEARS, FACETS, SampleQuery

# The research purpose of the "+ purpose" questions: disease research on breast cancer,
# not commercial (the default of a declared purpose).
PURPOSE_RAW: dict[str, Any] = {"kind": "DISEASE", "diseases": ["C50"]}
PURPOSE_GRAPHQL = '{kind: DISEASE, diseases: ["C50"], commercial: false}'
# The ICD-10 items a breast-cancer disease purpose matches in `duo_diseases` (DUO:DS):
# the code and every ancestor, as the consent compiler expands it.
PURPOSE_DISEASES = ["C50", "C50-C50", "C00-C75", "C00-C97", "II"]
# Conditions that make a permitted use conditional (DUO modifiers).
CONDITIONAL_MODIFIERS = ["IRB", "COL", "PUB", "RTN", "US", "PS", "IS", "RS"]


@dataclass(frozen=True)
class Question:
    """One researcher question of the mix."""

    name: str
    query: SampleQuery
    graphql_query: str  # the SampleQuery input literal
    purpose: bool = False

    def research_purpose(self, today: dt.date) -> ResearchPurpose | None:
        """The declared purpose, if the question has one."""
        return ResearchPurpose.parse(PURPOSE_RAW, today=today) if self.purpose else None


_BASE = (
    Question(
        "selective",
        SampleQuery(diseases=("C50-C50",), sexes=("FEMALE",), age_min=40, age_max=69),
        '{diseases: ["C50-C50"], sexes: ["FEMALE"], ageMin: 40, ageMax: 69}',
    ),
    Question("landing", SampleQuery(), "{}"),
    Question("chapter", SampleQuery(diseases=("II",)), '{diseases: ["II"]}'),
    Question("free_text", SampleQuery(text="breast cancer"), '{text: "breast cancer"}'),
)
QUESTIONS: tuple[Question, ...] = _BASE + tuple(
    Question(f"{q.name}+purpose", q.query, q.graphql_query, purpose=True) for q in _BASE
)


def graphql_document(question: Question) -> str:
    """The GraphQL search a client sends for the question (counts, consent and all facets)."""
    purpose = f", purpose: {PURPOSE_GRAPHQL}" if question.purpose else ""
    consent = " consent { outcome donors { value } samples { value } }" if question.purpose else ""
    return (
        f"{{ search(query: {question.graphql_query}{purpose}) {{"
        " donors { value precision } samples { value precision }"
        " byBiobank { biobank { id } donors { value precision } samples { value precision }"
        f"{consent} }}"
        " facets { name buckets { key samples { value } donors { value } } } } }"
    )


# --- raw SQL on the embedded store --------------------------------------------------------------

# The facet key per row, by hand: a column, a list to unnest, or the 10-year age bucket.
_SQL_FACET_KEY = {
    "material_type": "material_type",
    "sex": "sex",
    "age": f"(age // {AGE_BUCKET_YEARS}) * {AGE_BUCKET_YEARS}",
    "chapter": "unnest(chapters)",
    "block": "unnest(blocks)",
    "biobank": "biobank_id",
    "country": "biobank_id",  # counted per biobank; the service names the country
    "collection_type": "unnest(collection_types)",
}


def _sql_conditions(question: Question, text_codes: tuple[str, ...]) -> dict[str, str]:
    """WHERE conditions per filter name, so a facet can drop its own filter."""
    q = question.query
    out: dict[str, str] = {}
    codes = q.diseases or (text_codes if q.text else ())
    if len(codes) == 1:
        out["disease"] = f"list_contains(disease_terms, '{codes[0]}')"
    elif codes:
        out["disease"] = "list_has_any(disease_terms, " + _sql_list(codes) + ")"
    if q.sexes:
        out["sex"] = "sex IN (" + ", ".join(f"'{s}'" for s in q.sexes) + ")"
    if q.age_min is not None or q.age_max is not None:
        out["age"] = f"age BETWEEN {q.age_min or 0} AND {q.age_max or 150}"
    return out


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]::VARCHAR[]"


def _where(conditions: dict[str, str], drop: str | None = None) -> str:
    # A facet shows the alternatives to its own filter; the disease filter stays, so the
    # chapter and block facets show where the matches sit.
    kept = [c for name, c in conditions.items() if name != drop]
    return " AND ".join(kept) if kept else "TRUE"


def sql_statements(question: Question, text_codes: tuple[str, ...], today: dt.date) -> list[str]:
    """The question as hand-written DuckDB SQL over the `samples` table."""
    conditions = _sql_conditions(question, text_codes)
    where = _where(conditions)
    columns = "biobank_id, count(DISTINCT donor_ord), count(*)"
    if question.purpose:
        allowed = (
            "(duo_permission IN ('NRES', 'GRU', 'HMB') OR (duo_permission = 'DS' AND "
            f"list_has_any(duo_diseases, {_sql_list(PURPOSE_DISEASES)})))"
            " AND NOT list_has_any(duo_modifiers, ['GS', 'GSO']::VARCHAR[])"
            f" AND coalesce(duo_ts_date >= DATE '{today}', TRUE)"
        )
        conditional = (
            f"(list_has_any(duo_modifiers, {_sql_list(CONDITIONAL_MODIFIERS)})"
            f" OR coalesce(duo_mor_date >= DATE '{today}', FALSE))"
        )
        for segment in (
            f"{allowed} AND NOT {conditional}",
            f"{allowed} AND {conditional}",
            f"NOT coalesce({allowed}, FALSE)",
        ):
            columns += (
                f", count(DISTINCT donor_ord) FILTER (WHERE {segment})"
                f", count(*) FILTER (WHERE {segment})"
            )
    statements = [f"SELECT {columns} FROM samples WHERE {where} GROUP BY biobank_id"]
    for facet in FACETS:
        key = _SQL_FACET_KEY[facet]
        statements.append(
            f"SELECT biobank_id, k, count(DISTINCT donor_ord), count(*) FROM "
            f"(SELECT biobank_id, donor_ord, {key} AS k FROM samples "
            f"WHERE {_where(conditions, facet)}) WHERE k IS NOT NULL GROUP BY biobank_id, k"
        )
    return statements


# --- raw query DSL on the engine ----------------------------------------------------------------

_DSL_FACET_FIELD = {
    "material_type": "material_type",
    "sex": "sex",
    "chapter": "chapters",
    "block": "blocks",
    "collection_type": "collection_types",
}


# The condition each facet drops so that its buckets show the alternatives (as the service
# does); the disease condition stays for the chapter and block facets.
_FACET_CONDITION = {"sex": "sex", "age": "age"}


def _dsl_conditions(question: Question, text_codes: tuple[str, ...]) -> dict[str, Any]:
    q = question.query
    out: dict[str, Any] = {}
    codes = list(q.diseases) if q.diseases else list(text_codes) if q.text else None
    if codes is not None:
        out["disease"] = {"terms": {"samples.disease_terms": codes}}
    if q.sexes:
        out["sex"] = {"terms": {"samples.sex": list(q.sexes)}}
    if q.age_min is not None or q.age_max is not None:
        out["age"] = {"range": {"samples.age": {"gte": q.age_min or 0, "lte": q.age_max or 150}}}
    return out


def _dsl_where(conditions: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    kept = [c for name, c in conditions.items() if name != drop]
    return {"bool": {"filter": kept}} if kept else {"match_all": {}}


def dsl_searches(
    question: Question, text_codes: tuple[str, ...], today: dt.date
) -> list[dict[str, Any]]:
    """The question as hand-written query DSL: one count search and one per facet.

    Donor documents hold their samples as nested documents; a donor is counted once per
    bucket by `reverse_nested`, so donor counts are exact.
    """
    conditions = _dsl_conditions(question, text_codes)

    def search(sample_filter: dict[str, Any], per_biobank: dict[str, Any]) -> dict[str, Any]:
        return {
            "size": 0,
            "track_total_hits": False,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"kind": "donor"}},
                        {"nested": {"path": "samples", "query": sample_filter}},
                    ]
                }
            },
            "aggs": {
                "samples": {
                    "nested": {"path": "samples"},
                    "aggs": {
                        "matching": {
                            "filter": sample_filter,
                            "aggs": {
                                "biobank": {
                                    "terms": {"field": "samples.biobank_id", "size": 10_000},
                                    "aggs": per_biobank,
                                }
                            },
                        }
                    },
                }
            },
        }

    donors: dict[str, Any] = {"reverse_nested": {}}
    counts: dict[str, Any] = {"donors": donors}
    if question.purpose:
        allowed = {
            "bool": {
                "filter": [
                    {
                        "bool": {
                            "should": [
                                {"terms": {"samples.duo_permission": ["NRES", "GRU", "HMB"]}},
                                {
                                    "bool": {
                                        "filter": [
                                            {"term": {"samples.duo_permission": "DS"}},
                                            {"terms": {"samples.duo_diseases": PURPOSE_DISEASES}},
                                        ]
                                    }
                                },
                            ],
                            "minimum_should_match": 1,
                        }
                    }
                ],
                "must_not": [
                    {"terms": {"samples.duo_modifiers": ["GS", "GSO"]}},
                    {"range": {"samples.duo_ts_date": {"lt": today.isoformat()}}},
                ],
            }
        }
        conditional = {
            "bool": {
                "should": [
                    {"terms": {"samples.duo_modifiers": CONDITIONAL_MODIFIERS}},
                    {"range": {"samples.duo_mor_date": {"gte": today.isoformat()}}},
                ],
                "minimum_should_match": 1,
            }
        }
        segments = {
            "permitted": {"bool": {"filter": [allowed], "must_not": [conditional]}},
            "conditional": {"bool": {"filter": [allowed, conditional]}},
            "not_permitted": {"bool": {"must_not": [allowed]}},
        }
        for name, segment in segments.items():
            counts[name] = {"filter": segment, "aggs": {"donors": donors}}
    # As an expert would write it: facets whose own condition the question does not use
    # are counted in the counts search; each other facet drops its condition in its own.
    by_drop: dict[str | None, dict[str, Any]] = {None: counts}
    for facet in FACETS:
        drop = _FACET_CONDITION.get(facet)
        aggs = by_drop.setdefault(drop if drop in conditions else None, {})
        if facet in ("biobank", "country"):  # the per-biobank buckets themselves
            aggs["donors"] = donors
        elif facet == "age":
            aggs[facet] = {
                "histogram": {
                    "field": "samples.age",
                    "interval": AGE_BUCKET_YEARS,
                    "min_doc_count": 1,
                },
                "aggs": {"donors": donors},
            }
        else:
            aggs[facet] = {
                "terms": {"field": f"samples.{_DSL_FACET_FIELD[facet]}", "size": 10_000},
                "aggs": {"donors": donors},
            }
    searches = [search(_dsl_where(conditions, drop), aggs) for drop, aggs in by_drop.items()]
    return searches


# --- the Beacon count query -------------------------------------------------------------------

# The mix's questions a Beacon can ask (free text has no Beacon filter; a declared purpose
# has no Beacon field), as Beacon v2 filters: the same SampleQuery once mapped.
BEACON_FILTERS: dict[str, list[dict[str, Any]]] = {
    "selective": [
        {"id": "ICD10:C50-C50"},
        {"id": "NCIT:C16576"},
        {"id": "age", "operator": ">=", "value": "P40Y"},
        {"id": "age", "operator": "<=", "value": "P69Y"},
    ],
    "landing": [],
    "chapter": [{"id": "ICD10:II"}],
}


def beacon_count_body(name: str) -> dict[str, Any]:
    """POST /beacon/biosamples body asking the question at count granularity."""
    return {
        "meta": {"apiVersion": "v2.0.1"},
        "query": {"filters": BEACON_FILTERS[name], "requestedGranularity": "count"},
    }


def graphql_count_document(question: Question) -> str:
    """The GraphQL search releasing the figures a Beacon count answer carries (no facets)."""
    return (
        f"{{ search(query: {question.graphql_query}) {{"
        " samples { value precision exists }"
        " byBiobank { biobank { id } samples { value precision exists } access { granularity } }"
        " } }"
    )
