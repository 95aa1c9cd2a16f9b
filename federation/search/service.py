"""The search service: a researcher's question in, a consent-aware, policy-released answer out.

One search is one backend round: exact counts per biobank, the consent outcomes of a
declared purpose (compiled into the same query), facets and a page of records. The exact
figures never leave this module: each is released under the asking role's rule for that
biobank before it reaches a result.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import difflib
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from federation.consent import OUTCOMES, ConsentRules, ResearchPurpose, compile_purpose
from federation.disclosure.budget import BudgetStatus, PrivacyBudgets
from federation.disclosure.ledger import BudgetLedger
from federation.disclosure.policy import (
    DisclosurePolicy,
    Granularity,
    explain_rule,
    rule_messages,
)
from federation.disclosure.release import (
    total,
)
from federation.disclosure.roles import ANONYMOUS, Identity
from federation.i18n import Message, render_all
from federation.model import expr as ex
from federation.model import icd10
from federation.model.disease_names import DiseaseNames, NameMatch, default_names
from federation.search import metrics
from federation.search.asker import Asker, PolicyLookup, keyed_biobanks
from federation.search.audit import AnsweredSearch, SearchAudit
from federation.search.backend import IncompleteAnswer, SearchBackend, decode_cursor
from federation.search.declared import (
    DeclaredCollection,
    bucket_order_samples,
    declared_cells,
    declared_collections,
    declared_facet_cells,
    summed_declared,
)
from federation.search.delivery import claim_delivery
from federation.search.documents import record_view
from federation.search.facets import FACET
from federation.search.query import (
    FACETS,
    MAX_PAGE_SIZE,
    RECORD_ORDERS,
    BackendAnswer,
    BadQuery,
    Cell,
    Criteria,
    PageRequest,
    SampleQuery,
)
from federation.search.result import (
    Access,
    BiobankResult,
    Count,
    Declared,
    Facet,
    FacetBucket,
    OutcomeCounts,
    RecordConnection,
    SearchResult,
)
from federation.search.spending import ReleaseMemory, spend
from federation.search.warm import PublishedAnswers

# How long the set of biobanks every answer must cover is trusted before it is read again
# (a sync's state database query; a newly published biobank shows up in answers anyway).
LIVE_BIOBANKS_TTL_S = 2.0

# Up to this many biobanks an unknown id is answered with all known ids; beyond, the closest.
BIOBANKS_LISTED_IN_FULL = 20
CLOSEST_BIOBANKS_SHOWN = 5


def unknown_biobank(value: str, known: set[str]) -> BadQuery:
    """The error for a biobank id the network does not have, naming the known ones."""
    ids = sorted(known)
    if not ids:
        return BadQuery("biobanks", value, "unknown biobank; no biobank is known yet")
    if len(ids) <= BIOBANKS_LISTED_IN_FULL:
        return BadQuery("biobanks", value, f"unknown biobank; known: {', '.join(ids)}")
    closest = difflib.get_close_matches(value, ids, n=CLOSEST_BIOBANKS_SHOWN, cutoff=0.4)
    shown = closest or ids[:CLOSEST_BIOBANKS_SHOWN]
    return BadQuery(
        "biobanks",
        value,
        f"unknown biobank; {'closest' if closest else 'for example'}: {', '.join(shown)} "
        f"({len(ids)} biobanks known)",
    )


class SearchService:
    """Consent-aware search over one backend, released under per-biobank policies."""

    def __init__(
        self,
        backend: SearchBackend,
        names: DiseaseNames | None = None,
        *,
        policies: PolicyLookup | None = None,
        secret: str = "",
        record_biobanks: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.backend = backend
        # Where answers and published generations are read: the backend, or the backend
        # through its publication counter with warm answers (runtime wires that).
        self.source: SearchBackend | PublishedAnswers = backend
        self.names = names or default_names()
        self.policies: PolicyLookup = policies or (lambda _biobank: DisclosurePolicy())
        self.secret = secret
        # The biobanks of the network, to decide where a role may see records.
        self.record_biobanks = record_biobanks or (lambda: list(backend.published()))
        # Privacy budgets per role and the ledger they are spent in; no ledger: no budget.
        self.budgets: Callable[[], PrivacyBudgets] = lambda: PrivacyBudgets({})
        self.ledger: BudgetLedger | None = None
        # Each biobank's country (from the network file), for the country filter and facet.
        self.countries: Callable[[], Mapping[str, str | None]] = lambda: {}
        # Charges this process has seen the ledger accept (shared by `audited` copies): a
        # search whose figures are all among them skips the ledger's write transaction.
        self._released = ReleaseMemory()
        # The biobanks an answer must cover (every live generation); None: not checked.
        self.live_biobanks: Callable[[], set[str]] | None = None
        self._live: tuple[float, frozenset[str]] | None = None
        # Where every answered search is recorded (see `audited`); None: not audited.
        self.audit: SearchAudit | None = None
        self.client_ip: str | None = None

    def audited(self, audit: SearchAudit, client_ip: str | None = None) -> SearchService:
        """This service recording every answered search in `audit`, as asked from `client_ip`.

        A copy, so one request's client address never reaches another's audit row.
        """
        bound = copy.copy(self)
        bound.audit, bound.client_ip = audit, client_ip
        return bound

    def criteria(self, query: SampleQuery) -> tuple[Criteria, tuple[str, ...]]:
        """Resolve a query to backend criteria; also return the codes its free text found."""
        groups: list[tuple[str, ...]] = []
        if query.diseases:
            groups.append(query.diseases)
        text_codes: tuple[str, ...] = ()
        if query.text:
            text_codes = tuple(
                c for c in self.names.codes_for_text(query.text) if c not in query.text_exclude
            )
            groups.append(text_codes)  # an empty group matches nothing, as it should
        return (
            Criteria(
                disease_terms=tuple(groups),
                diagnoses=query.exact_diseases,
                material_type=query.materials,
                sex=query.sexes,
                age_min=query.age_min,
                age_max=query.age_max,
                biobank_id=query.biobanks,
                collection_types=query.collection_types,
                data_categories=query.data_categories,
                country_biobanks=self._in_countries(query.countries),
                collection_id=query.collections,
            ),
            text_codes,
        )

    def _in_countries(self, countries: tuple[str, ...]) -> tuple[str, ...] | None:
        """The biobanks in the asked countries; None when no country is asked."""
        if not countries:
            return None
        return tuple(sorted(bb for bb, c in self.countries().items() if c in countries))

    def search(
        self,
        query: SampleQuery,
        *,
        identity: Identity = ANONYMOUS,
        purpose: ResearchPurpose | None = None,
        facets: Sequence[str] = FACETS,
        page: PageRequest | None = None,
    ) -> SearchResult:
        """Released counts per biobank, consent outcomes, facets and a page of records."""
        unknown = [f for f in facets if f not in FACETS]
        if unknown:
            raise BadQuery("facets", unknown[0], f"unknown facet; known: {', '.join(FACETS)}")
        if page is not None and not 1 <= page.first <= MAX_PAGE_SIZE:
            raise BadQuery("first", page.first, f"must be between 1 and {MAX_PAGE_SIZE}")
        if page is not None and page.order_by not in RECORD_ORDERS:
            known = ", ".join(RECORD_ORDERS)
            raise BadQuery("order_by", page.order_by, f"unknown column; known: {known}")
        if page is not None and page.after is not None:
            # A bad cursor (or one of another order) is bad input, whoever asks.
            decode_cursor(page.after, len(page.sort_keys()))
        self._check_biobanks(query.biobanks)
        started = time.perf_counter()
        criteria, text_codes = self.criteria(query)
        asker = Asker(identity, self.policies, self.secret, {})
        rules = compile_purpose(purpose) if purpose else None
        segments = rules.outcome_filters() if rules else None

        # Records only from biobanks whose policy gives this role record access, and with
        # a purpose only for donors whose consent permits it: both go into the query, so
        # paging never skips or repeats what a filter applied afterwards would.
        record_page, page_filter = None, None
        records_note: tuple[Message, ...] = ()
        if page is not None:
            allowed = tuple(
                bb
                for bb in self.record_biobanks()
                if asker.rule(bb).granularity.allows(Granularity.RECORD)
            )
            if allowed:
                page_filter = ex.all_of(
                    ex.In("biobank_id", allowed), rules.usable if rules else ex.TRUE
                )
                record_page = page
            else:
                records_note = (Message.of("records.none"),)
        # Fingerprints only key noise: only the biobanks that noise this asker's figures
        # need them (none: no cost at all).
        keyed = keyed_biobanks(asker, self.record_biobanks())
        answer = self.source.answer(
            criteria,
            facets=facets,
            page=record_page,
            segments=segments,
            page_filter=page_filter,
            fingerprints=keyed,
        )
        if keyed is not True and any(
            asker.noised(bb) and not (keyed and bb in keyed) for bb in answer.by_biobank
        ):
            # A biobank outside the network file (still published) noises this asker's
            # figures: its noise must be keyed on real fingerprints, so ask again with them.
            answer = self.source.answer(
                criteria,
                facets=facets,
                page=record_page,
                segments=segments,
                page_filter=page_filter,
            )
        self._check_coverage(answer)
        # Past this point the search is charged and audited: only if it reaches the asker.
        claim_delivery()
        published = self.source.published()
        generations = {bb: info.generation for bb, info in published.items()}
        asker = dataclasses.replace(asker, generations={**generations, **answer.generation})
        budget: tuple[BudgetStatus, ...] = ()
        if self.ledger is not None:
            asker, budget = spend(answer, asker, self.ledger, self.budgets(), self._released)
        collections = declared_collections(published)
        result = self._result(answer, asker, facets, text_codes, rules, records_note)
        if collections:
            result = self._with_declared(result, asker, criteria, facets, collections)
        result = dataclasses.replace(result, budget=budget)
        if self.audit is not None:
            # Fail-closed: a search the sink cannot record raises here and is not answered.
            self.audit.record(AnsweredSearch(identity, self.client_ip, query, purpose, result))
        metrics.searched(self.backend, time.perf_counter() - started, len(asker.refused))
        return result

    def _check_coverage(self, answer: BackendAnswer) -> None:
        """Refuse an answer that leaves out a biobank some sync published (its index, alias
        or generation gone behind the server's back): never a silent undercount."""
        if answer.covered is None or self.live_biobanks is None:
            return
        now = time.monotonic()
        if self._live is None or now - self._live[0] > LIVE_BIOBANKS_TTL_S:
            self._live = (now, frozenset(self.live_biobanks()))
        missing = self._live[1] - answer.covered
        if not missing:
            return
        # A generation published empty has nothing to search; one that is gone does.
        published = self.source.published()
        gone = [b for b in missing if b not in published or published[b].documents > 0]
        if gone:
            raise IncompleteAnswer(gone)

    def budget_status(self, identity: Identity) -> tuple[BudgetStatus, ...]:
        """What is left of each budget the identity has spent from in the current period."""
        if self.ledger is None or not identity.authenticated:
            return ()
        now = dt.datetime.now(dt.UTC)
        subject = f"{identity.via}:{identity.subject}"
        out = []
        seen: set[tuple[str, str]] = set()
        for role in identity.roles:
            budget = self.budgets().rule(role)
            if budget is None:
                continue
            period, refills = budget.period.window(now)
            for scope, spent in sorted(self.ledger.budgets(subject, period).items()):
                if (scope, period) in seen:
                    continue  # the ledger keys a budget by subject, not role: list it once
                seen.add((scope, period))
                out.append(
                    BudgetStatus(
                        role.value,
                        scope,
                        period,
                        spent,
                        budget.epsilon,
                        refills.isoformat(timespec="seconds"),
                    )
                )
        return tuple(out)

    def _check_biobanks(self, biobank_ids: Sequence[str]) -> None:
        """Refuse an id no biobank has: a typo must not read as "no samples there"."""
        if not biobank_ids:
            return
        known = set(self.record_biobanks())
        if all(b in known for b in biobank_ids):
            return
        # A biobank still published but since dropped from the network is searchable too.
        known |= set(self.source.published())
        for biobank_id in biobank_ids:
            if biobank_id not in known:
                raise unknown_biobank(biobank_id, known)

    def _result(
        self,
        answer: BackendAnswer,
        asker: Asker,
        facets: Sequence[str],
        text_codes: tuple[str, ...],
        rules: ConsentRules | None,
        records_note: tuple[Message, ...],
    ) -> SearchResult:
        rows: list[BiobankResult] = []
        outcome_cells: dict[str, list[tuple[Count, Count]]] = defaultdict(list)
        for biobank_id, cell in sorted(answer.by_biobank.items()):
            rule = asker.rule(biobank_id)
            if rule.granularity is Granularity.NONE:
                continue  # not even the presence of matches is told
            donors, samples = asker.release(biobank_id, cell)
            consent = None
            if rules is not None:
                split = answer.segments.get(biobank_id, {})
                consent = tuple(
                    OutcomeCounts(
                        name,
                        *asker.release(biobank_id, split.get(name, Cell(0, 0))),
                    )
                    for name in OUTCOMES
                )
                for item in consent:
                    outcome_cells[item.outcome].append((item.donors, item.samples))
            rows.append(
                BiobankResult(
                    biobank_id,
                    donors,
                    samples,
                    answer.generation.get(biobank_id),
                    Access(
                        asker.identity.role_for(biobank_id).value,
                        rule.granularity.value,
                        explain_rule(rule),
                        rule_messages(rule),
                    ),
                    consent,
                )
            )
        network_consent = None
        if rules is not None:
            network_consent = tuple(
                OutcomeCounts(
                    name,
                    total(d for d, _ in outcome_cells[name]),
                    total(s for _, s in outcome_cells[name]),
                )
                for name in OUTCOMES
            )
        records = None
        if answer.page is not None:
            views = []
            for row in answer.page.records:
                view = record_view(row)
                if rules is not None:
                    outcome, _, conditions = rules.explain(row)
                    view["consent_outcome"] = outcome
                    view["obligations"] = [
                        {"code": r.code, "description": r.description, "until": _until(r.code, row)}
                        for r in conditions
                    ]
                views.append(view)
            records = RecordConnection(
                tuple(views), answer.page.end_cursor, answer.page.has_next_page, answer.page.total
            )
        return SearchResult(
            donors=total(r.donors for r in rows),
            samples=total(r.samples for r in rows),
            by_biobank=tuple(rows),
            facets=self._facets(answer, asker, facets),
            records=records,
            text_diseases=text_codes,
            consent=network_consent,
            records_note=render_all(records_note),
            records_note_messages=records_note,
        )

    def _with_declared(
        self,
        result: SearchResult,
        asker: Asker,
        criteria: Criteria,
        facets: Sequence[str],
        collections: Sequence[DeclaredCollection],
    ) -> SearchResult:
        """The result with what matching collection-level collections declare: per biobank
        (a biobank with only those shows them as its counts), per facet bucket, and as a
        network sum kept apart from the sample-level one."""
        rows = {r.biobank_id: r for r in result.by_biobank}
        parts = []
        for biobank_id, found in sorted(declared_cells(collections, criteria).items()):
            rule = asker.rule(biobank_id)
            if rule.granularity is Granularity.NONE:
                continue
            part = asker.release_declared(biobank_id, found)
            parts.append(part)
            row = rows.get(biobank_id)
            if row is None:
                access = Access(
                    asker.identity.role_for(biobank_id).value,
                    rule.granularity.value,
                    explain_rule(rule),
                    rule_messages(rule),
                )
                generation = asker.generations.get(biobank_id)
                row = BiobankResult(biobank_id, part.donors, part.samples, generation, access)
                row = dataclasses.replace(row, declared_only=True)
            rows[biobank_id] = dataclasses.replace(row, declared=part)
        buckets: dict[tuple[str, str], list[Declared]] = defaultdict(list)
        for facet, key, biobank_id, found in declared_facet_cells(collections, criteria, facets):
            if asker.rule(biobank_id).granularity is not Granularity.NONE:
                buckets[(facet, key)].append(asker.release_declared(biobank_id, found))
        return dataclasses.replace(
            result,
            by_biobank=tuple(rows[bb] for bb in sorted(rows)),
            facets=tuple(self._declared_facet(f, buckets) for f in result.facets),
            declared=summed_declared(parts),
        )

    def _declared_facet(
        self, facet: Facet, declared_parts: Mapping[tuple[str, str], list[Declared]]
    ) -> Facet:
        """A facet whose buckets also say what collections declare for each value."""
        buckets = {b.key: b for b in facet.buckets}
        for (name, key), parts in declared_parts.items():
            if name != facet.name:
                continue
            bucket = buckets.get(key) or FacetBucket(
                key, self.label(name, key), total(()), total(())
            )
            buckets[key] = dataclasses.replace(bucket, declared=summed_declared(parts))
        ordered = sorted(buckets.values(), key=lambda b: (-bucket_order_samples(b), b.key))
        return Facet(facet.name, tuple(ordered))

    def _facets(
        self, answer: BackendAnswer, asker: Asker, facets: Sequence[str]
    ) -> tuple[Facet, ...]:
        released: dict[str, dict[str, list[tuple[Count, Count]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        countries = self.countries() if "country" in facets else {}
        for cell in answer.facets:
            if asker.rule(cell.biobank_id).granularity is Granularity.NONE:
                continue
            key = cell.key
            if cell.facet == "country":
                # The backends count the country facet per biobank (its key is the biobank);
                # a biobank that has left the network file has no country to count under.
                key = countries.get(cell.biobank_id) or ""
                if not key:
                    continue
            released[cell.facet][key].append(asker.release(cell.biobank_id, cell.cell))
        out = []
        for name in facets:
            buckets = [
                FacetBucket(
                    key,
                    self.label(name, key),
                    total(d for d, _ in pairs),
                    total(s for _, s in pairs),
                )
                for key, pairs in released[name].items()
            ]
            buckets.sort(key=lambda b: (-(b.samples.value or 0), b.key))
            out.append(Facet(name, tuple(buckets)))
        return tuple(out)

    def label(self, facet: str, key: str, language: str = "en") -> str:
        """A human label for a facet bucket key."""
        definition = FACET.get(facet)
        if definition is None:
            return key
        if definition.label == "disease":
            return self.names.name(key, language) if icd10.is_code(key) else key
        if definition.vocabulary is not None:
            return definition.vocabulary().label(key)
        return key

    def diseases(self, text: str, first: int = 10) -> list[NameMatch]:
        """Autocomplete over ICD-10 codes and names."""
        if not 1 <= first <= MAX_PAGE_SIZE:
            raise BadQuery("first", first, f"must be between 1 and {MAX_PAGE_SIZE}")
        return self.names.find(text, first)


def _until(code: str, row: Mapping[str, Any]) -> str | None:
    if code == "MOR" and row.get("duo_mor_date") is not None:
        return str(row["duo_mor_date"])
    return None
