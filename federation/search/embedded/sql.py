"""Questions compiled to DuckDB SQL: filter trees, and one statement for counts and facets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from federation.model import expr as ex
from federation.model import icd10
from federation.search.documents import COLUMNS, CONSENT_COLUMNS
from federation.search.facets import FACET, FacetDefinition
from federation.search.fingerprint import donor_key_sql
from federation.search.query import Criteria

# The snapshot's column of each row's donor key (`search.fingerprint.donor_key`).
DONOR_KEY_COLUMN = "donor_key"

NOT_WITHDRAWN = ex.In("withdrawn", (False,))
# Up to this many terms, a list filter is an OR of list_contains (several times faster than
# list_has_any at 1M rows, measured); beyond it, one list_has_any keeps the SQL small.
MAX_CONTAINS_TERMS = 16
# The facets with a per-donor table in a snapshot (`donor_tables_sql`): all but those on the
# biobank column, which the backend copies from the per-biobank counts when unfiltered.
PER_DONOR_FACETS = tuple(f.key for f in FACET.values() if f.column != "biobank_id")


def donor_table(table: str, facet: str | None = None) -> str:
    """The name of the per-donor table of `table`: donors' rows, or per facet bucket."""
    # Named apart from the first layout (`_donors`, without each donor's key): a snapshot
    # built with that one is searched row by row, never with a missing key column.
    return f"{table}_by_donor" if facet is None else f"{table}_by_donor_{facet}"


def consent_table(table: str) -> str:
    """The name of the table of `table`'s rows per donor and consent (`donor_tables_sql`)."""
    return f"{table}_by_donor_and_consent"


def donor_tables_sql(table: str) -> list[tuple[str, list[Any]]]:
    """Statements creating the per-donor tables of `table`, built once with a snapshot.

    Each holds the first step of the unfiltered question's count (`summary_sql`): rows per
    donor, and rows per donor and facet bucket, of the rows no withdrawal hides. The
    unfiltered question (the landing page) then groups these few rows by biobank and bucket
    instead of grouping every row by donor: at 10M rows that grouping had millions of groups
    per facet, spilled past the reader's memory limit and took most of the landing's time
    (docs/performance.md, "Embedded at 10M").
    """
    params: list[Any] = []
    where = to_sql(NOT_WITHDRAWN, params)
    # Each donor's key, stored: summed as it is by the landing's statement (worked out
    # there from the ordinal it cost +66 % of that statement at 1M: 64 -> 107 ms).
    key_column = f"CAST({donor_key_sql('donor_ord')} AS INTEGER) AS dk"
    statements = [
        (
            f"CREATE TABLE {donor_table(table)} AS SELECT bb, donor_ord, {key_column}, n "
            f"FROM (SELECT key_biobank_id AS bb, donor_ord, count(*) AS n FROM {table} "
            f"WHERE {where} GROUP BY bb, donor_ord)",
            params,
        )
    ]
    # Rows per donor and consent (the columns a consent outcome reads: grouped by them, a
    # donor's rows split by a purpose's outcomes as the rows do). Nearly always one consent
    # per donor (every donor of the 10M bench network), so about one row per donor, marked
    # `one` when it is the donor's only one. The landing page asked with a purpose splits
    # these instead of every row (at 10M rows that statement took 5 s).
    consent = ", ".join(CONSENT_COLUMNS)
    statements.append(
        (
            f"CREATE TABLE {consent_table(table)} AS SELECT bb, donor_ord, {key_column}, "
            f"{consent}, n, count(*) OVER (PARTITION BY bb, donor_ord) = 1 AS one "
            f"FROM (SELECT key_biobank_id AS bb, donor_ord, {consent}, count(*) AS n "
            f"FROM {table} WHERE {where} GROUP BY ALL)",
            params,
        )
    )
    for facet in PER_DONOR_FACETS:
        definition = FACET[facet]
        key = _facet_key(definition)
        key = f"unnest({key})" if definition.is_list else key
        statements.append(
            (
                f"CREATE TABLE {donor_table(table, facet)} AS SELECT bb, k, donor_ord, "
                f"{key_column}, n FROM (SELECT bb, k, donor_ord, count(*) AS n FROM "
                f"(SELECT key_biobank_id AS bb, donor_ord, {key} AS k FROM {table} "
                f"WHERE {where}) WHERE k IS NOT NULL GROUP BY bb, donor_ord, k)",
                params,
            )
        )
    return statements


def _facet_key(facet: FacetDefinition) -> str:
    """The SQL of a row's bucket key: the ENUM copy, or a histogram bucket's lower bound."""
    if facet.bucket_width is not None:
        return f"{facet.column} // {facet.bucket_width} * {facet.bucket_width}"
    return f"key_{facet.column}"


@dataclasses.dataclass(frozen=True)
class Holds:
    """What a snapshot holds beside its rows, which the counting statement may use."""

    # A stored `donor_key` column unique per biobank (snapshot.create_samples).
    donor_keys: bool = False
    # The per-donor tables of `donor_tables_sql`.
    donor_tables: bool = False
    # Its table of rows per donor and consent (`consent_table`), built since the others.
    consent_table: bool = False


def summary_sql(
    table: str,
    criteria: Criteria,
    facets: Sequence[str],
    segments: Sequence[ex.Expr],
    *,
    fingerprints: bool = True,
    holds: Holds = Holds(),
) -> tuple[str, list[Any]]:
    """One statement for the per-biobank counts, their segment split and every facet.

    Rows: (None, biobank, None, donors, samples, donor key sum, then the same three per
    segment) for the counts, and (facet, biobank, key, donors, samples, key sum, None...)
    per facet bucket.

    A facet counts the rows matching the criteria minus its own clause. So the clauses the
    facets drop become boolean columns of one selection of the rows matching the rest, and
    each facet ANDs all of them but its own. When the rest narrows the rows, that selection
    is materialised once instead of filtering every row once per facet. Distinct donors are
    counted in two steps (rows per donor, then donors), which at 1M rows is faster than
    count(DISTINCT) and gives the segments' donor counts from the same pass.

    The fingerprint of a cell is the sum of its donors' keys (`search.fingerprint`), each
    worked out from the donor's ordinal in the second step, once per donor and cell: the
    first step groups by the ordinal as the count needs anyway, and carries no key. (Keys
    stored per row cost more: carried beside the group +53 %, grouped by instead of the
    ordinal +36 % on the age facet's branch; this way about +10 % of the statements' CPU
    time, docs/privacy.md.) Without `fingerprints` the sums are NULL literals: same row
    shape, no key worked out.

    With `holds.donor_keys` (a snapshot whose stored `donor_key` column is unique per biobank)
    donors are grouped by that key instead of the ordinal, the same groups, and the key is
    summed as it is: no arithmetic per donor and cell, and a stored INTEGER column with
    known bounds sums more cheaply than a BIGINT expression (+1.5 % against +9.5 % of the
    statements' CPU time at 100k rows; grouping by both +7 %).

    With `holds.donor_tables` (the snapshot has `donor_tables_sql`'s tables), the
    unfiltered question without segments reads its first step from them: the same
    figures, without grouping every row by donor again. With `holds.consent_table` too, so
    does the unfiltered question split by segments that read only consent columns (the
    landing page asked with a purpose): its split is made per donor and consent.
    """
    covered = set(facets) <= set(PER_DONOR_FACETS)
    consent_only = not segments or (
        holds.consent_table
        and all(read_columns(segment) <= set(CONSENT_COLUMNS) for segment in segments)
    )
    if holds.donor_tables and covered and consent_only and unfiltered(criteria):
        return _per_donor_sql(table, facets, segments, fingerprints=fingerprints)
    distinct = list(dict.fromkeys(facets))
    own: dict[str, ex.Expr] = {}
    for facet in distinct:
        clause = own_clause(criteria, facet)
        if clause is not None:
            own[facet] = clause
    rest = criteria
    for facet in own:
        rest = rest.without(facet)
    params: list[Any] = []
    donor = DONOR_KEY_COLUMN if holds.donor_keys else "donor_ord"
    columns = ["key_biobank_id AS bb", donor]
    columns += [f"{_facet_key(FACET[facet])} AS k{n}" for n, facet in enumerate(distinct)]
    flag = {facet: f"f{n}" for n, facet in enumerate(own)}
    columns += [f"{to_sql(clause, params)} AS {flag[facet]}" for facet, clause in own.items()]
    columns += [f"{to_sql(segment, params)} AS g{n}" for n, segment in enumerate(segments)]
    rest_expr = rest.to_expr()
    where = to_sql(rest_expr, params)
    narrowed = rest_expr != NOT_WITHDRAWN and bool(facets)
    how = "MATERIALIZED" if narrowed else "NOT MATERIALIZED"

    def matching(*, but: str | None = None) -> str:
        kept = [name for facet, name in flag.items() if facet != but]
        return " AND ".join(kept) if kept else "TRUE"

    def key_sum(where: str = "") -> str:
        if not fingerprints:
            return "NULL"
        summed = DONOR_KEY_COLUMN if holds.donor_keys else donor_key_sql("donor_ord")
        return f"sum({summed})" + (f" FILTER (WHERE {where})" if where else "")

    per_donor = [donor, "count(*) AS n"]
    per_donor += [f"count(*) FILTER (WHERE g{n}) AS n{n}" for n in range(len(segments))]
    split = [
        f"count(*) FILTER (WHERE n{n} > 0), sum(n{n}), {key_sum(f'n{n} > 0')}"
        for n in range(len(segments))
    ]
    blanks = "".join(", NULL, NULL, NULL" for _ in segments)
    branches = [
        f"SELECT CAST(NULL AS VARCHAR), bb, CAST(NULL AS VARCHAR), count(*), sum(n), "
        f"{key_sum()}{''.join(', ' + s for s in split)} "
        f"FROM (SELECT bb, {', '.join(per_donor)} "
        f"FROM m WHERE {matching()} GROUP BY bb, {donor}) GROUP BY bb"
    ]
    for facet in facets:
        column = f"k{distinct.index(facet)}"
        key = f"unnest({column})" if FACET[facet].is_list else column
        # The raw key per bucket; named from it in Python, once per bucket, not per row
        # (building the age label per row tripled the age facet's time at 1M rows).
        branches.append(
            f"SELECT '{facet}', bb, CAST(k AS VARCHAR), count(*), sum(n), {key_sum()}"
            f"{blanks} FROM (SELECT bb, k, {donor}, count(*) AS n FROM (SELECT bb, "
            f"{donor}, {key} AS k FROM m WHERE {matching(but=facet)}"
            f") WHERE k IS NOT NULL GROUP BY bb, {donor}, k) GROUP BY bb, k"
        )
    sql = (
        f"WITH m AS {how} (SELECT {', '.join(columns)} FROM {table} WHERE {where}) "
        + " UNION ALL ".join(branches)
    )
    return sql, params


def unfiltered(criteria: Criteria) -> bool:
    """Whether the criteria match every row but withdrawn donors' (the landing page)."""
    return criteria.to_expr() == NOT_WITHDRAWN


def _per_donor_sql(
    table: str, facets: Sequence[str], segments: Sequence[ex.Expr], *, fingerprints: bool
) -> tuple[str, list[Any]]:
    """`summary_sql`'s rows for the unfiltered question, from the per-donor tables; its
    segments (which read only consent columns) from the rows per donor and consent."""
    key_sum = "sum(dk)" if fingerprints else "NULL"
    params: list[Any] = []
    if segments:
        # Per donor: rows, and rows in each segment (0, not NULL, when none is: the row by
        # row statement's count(*) FILTER); then donors with any, rows and keys per biobank.
        # A donor's only row is that already; only donors with several are grouped (at 10M
        # grouping all 3.3M rows by donor was most of the statement).
        numbers = range(len(segments))

        def flagged(where: str) -> str:
            flags = ", ".join(
                f"{to_sql(segment, params)} AS g{n}" for n, segment in enumerate(segments)
            )
            return (
                f"(SELECT bb, donor_ord, dk, n, {flags} FROM {consent_table(table)} WHERE {where})"
            )

        alone = ", ".join(f"CASE WHEN g{n} THEN n ELSE 0 END AS n{n}" for n in numbers)
        alone_rows = f"SELECT bb, dk, n, {alone} FROM {flagged('one')}"
        grouped = ", ".join(f"coalesce(sum(n) FILTER (WHERE g{n}), 0) AS n{n}" for n in numbers)
        grouped_rows = (
            f"SELECT bb, dk, sum(n) AS n, {grouped} FROM {flagged('NOT one')} "
            f"GROUP BY bb, donor_ord, dk"
        )
        split = [
            f"count(*) FILTER (WHERE n{n} > 0), sum(n{n}), "
            + (f"sum(dk) FILTER (WHERE n{n} > 0)" if fingerprints else "NULL")
            for n in numbers
        ]
        counts = (
            f"SELECT CAST(NULL AS VARCHAR), bb, CAST(NULL AS VARCHAR), count(*), sum(n), "
            f"{key_sum}, {', '.join(split)} FROM ({alone_rows} UNION ALL {grouped_rows}) "
            f"GROUP BY bb"
        )
    else:
        counts = (
            f"SELECT CAST(NULL AS VARCHAR), bb, CAST(NULL AS VARCHAR), count(*), sum(n), "
            f"{key_sum} FROM {donor_table(table)} GROUP BY bb"
        )
    blanks = "".join(", NULL, NULL, NULL" for _ in segments)
    branches = [counts]
    branches += [
        f"SELECT '{facet}', bb, CAST(k AS VARCHAR), count(*), sum(n), {key_sum}{blanks} "
        f"FROM {donor_table(table, facet)} GROUP BY bb, k"
        for facet in facets
    ]
    return " UNION ALL ".join(branches), params


def read_columns(node: ex.Expr) -> set[str]:
    """The columns a filter tree reads."""
    if isinstance(node, ex.In | ex.HasAny | ex.Range | ex.IsNull):
        return {node.column}
    if isinstance(node, ex.And | ex.Or):
        return set().union(*(read_columns(item) for item in node.items))
    if isinstance(node, ex.Not):
        return read_columns(node.item)
    return set()


def own_clause(criteria: Criteria, facet: str) -> ex.Expr | None:
    """The clause of the criteria a facet drops (`Criteria.without`), None if it drops none."""
    without = criteria.without(facet)
    if without == criteria:
        return None
    dropped = {
        f.name: getattr(criteria, f.name)
        for f in dataclasses.fields(Criteria)
        if getattr(criteria, f.name) != getattr(without, f.name)
    }
    alone = dataclasses.replace(Criteria(), **dropped).to_expr()
    if isinstance(alone, ex.And):
        return ex.all_of(*(item for item in alone.items if item != NOT_WITHDRAWN))
    return alone


def compile_where(criteria: Criteria) -> tuple[str, list[Any]]:
    """Criteria as a DuckDB WHERE clause with bound parameters."""
    params: list[Any] = []
    return to_sql(criteria.to_expr(), params), params


def to_sql(node: ex.Expr, params: list[Any]) -> str:
    """Translate a filter tree to SQL, appending bound values to `params`."""
    if isinstance(node, ex.Const):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, ex.In):
        params.extend(node.values)
        if len(node.values) == 1:
            return f"{_column(node.column)} = ?"
        return f"{_column(node.column)} IN ({', '.join('?' for _ in node.values)})"
    if isinstance(node, ex.HasAny):
        values = list(node.values)
        if node.column == "disease_terms":
            values = _without_descendants(values)
        if len(values) == 1:
            # Half the cost of list_has_any for the common one-term case (measured).
            params.append(values[0])
            return f"list_contains({_column(node.column)}, ?)"
        if len(values) <= MAX_CONTAINS_TERMS:
            params.extend(values)
            probes = [f"list_contains({_column(node.column)}, ?)" for _ in values]
            return "(" + " OR ".join(probes) + ")"
        params.append(values)
        return f"list_has_any({_column(node.column)}, ?::VARCHAR[])"
    if isinstance(node, ex.Range):
        bounds = []
        for op, value in ((">=", node.gte), ("<=", node.lte), ("<", node.lt)):
            if value is not None:
                bounds.append(f"{_column(node.column)} {op} ?")
                params.append(value)
        return "(" + " AND ".join(bounds) + ")" if bounds else f"{_column(node.column)} IS NOT NULL"
    if isinstance(node, ex.IsNull):
        return f"{_column(node.column)} IS NULL"
    if isinstance(node, ex.Not):
        # SQL's NOT of NULL is NULL (no match); a filter tree's NOT means "not matched".
        return f"NOT coalesce({to_sql(node.item, params)}, FALSE)"
    if isinstance(node, ex.And):
        return "(" + " AND ".join(to_sql(i, params) for i in node.items) + ")"
    if isinstance(node, ex.Or):
        return "(" + " OR ".join(to_sql(i, params) for i in node.items) + ")"
    raise TypeError(f"unknown filter node {node!r}")


def _without_descendants(codes: list[str]) -> list[str]:
    """The codes minus those under another of them: the same rows match, with fewer probes.

    A row's `disease_terms` holds every ancestor of each diagnosis, so a row holding a
    code also holds the code's ancestors. A free-text search resolves to a block and all
    its categories ("breast cancer": 12 codes, of which 3 decide), and each costs a probe.
    """
    wanted = set(codes)
    return [code for code in codes if not wanted.intersection(_ancestors(code))]


def _ancestors(code: str) -> tuple[str, ...]:
    try:
        return icd10.ancestors(code)
    except ValueError:  # not a WHO code as spelled: it can only match itself
        return ()


def _column(name: str) -> str:
    if name not in COLUMNS:
        raise ValueError(f"unknown index column {name!r}")
    return name
