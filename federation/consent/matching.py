"""DUO consent matching, compiled to filter trees so backends evaluate it inside the query.

A declared purpose becomes two lists of rules over the consent columns of the index
(`federation.search.documents.consent_columns`):
- denials: any one matching makes the donor `not_permitted`;
- conditions: obligations (COL, PUB, IRB, RTN, MOR, US/PS/IS/RS review) that make an
  otherwise permitted donor `conditional`.
Unknown consent is a denial: matching fails closed. The full table is docs/consent.md;
the anchor is the Broad Institute's DUOS matching rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.consent.purpose import PurposeKind, ResearchPurpose
from federation.model import expr as ex
from federation.model import icd10

PERMITTED, CONDITIONAL, NOT_PERMITTED = "permitted", "conditional", "not_permitted"
OUTCOMES = (PERMITTED, CONDITIONAL, NOT_PERMITTED)

# Permissions that allow each kind of research regardless of diseases (DS is handled
# by the disease hierarchy; CLINICAL_CARE also by the CC modifier).
_ALLOWING: dict[PurposeKind, tuple[str, ...]] = {
    PurposeKind.DISEASE: ("NRES", "GRU", "HMB"),
    PurposeKind.HEALTH: ("NRES", "GRU", "HMB"),
    PurposeKind.ANCESTRY: ("NRES", "GRU", "POA"),
    PurposeKind.METHODS: ("NRES", "GRU", "HMB"),
    PurposeKind.GENERAL: ("NRES", "GRU"),
    PurposeKind.CLINICAL_CARE: ("NRES",),
}


# The permissions the CC modifier extends to clinical care.
CLINICAL_CARE_EXTENDS = ("GRU", "HMB", "DS")


@dataclass(frozen=True)
class Rule:
    """A named consent rule: when `when` matches a donor's row, the rule applies."""

    code: str
    description: str
    when: ex.Expr


@dataclass(frozen=True)
class ConsentRules:
    """A purpose compiled: denials and conditions, and the outcome filters built from them."""

    purpose: ResearchPurpose
    denials: tuple[Rule, ...]
    conditions: tuple[Rule, ...]

    @property
    def denied(self) -> ex.Expr:
        return ex.any_of(*(r.when for r in self.denials))

    @property
    def conditioned(self) -> ex.Expr:
        return ex.any_of(*(r.when for r in self.conditions))

    def outcome_filters(self) -> dict[str, ex.Expr]:
        """One filter per outcome; every row matches exactly one of them."""
        allowed = ex.negate(self.denied)
        return {
            PERMITTED: ex.all_of(allowed, ex.negate(self.conditioned)),
            CONDITIONAL: ex.all_of(allowed, self.conditioned),
            NOT_PERMITTED: self.denied,
        }

    @property
    def usable(self) -> ex.Expr:
        """Permitted or conditional: the rows whose records may be returned."""
        return ex.negate(self.denied)

    def explain(self, row: Mapping[str, Any]) -> tuple[str, list[Rule], list[Rule]]:
        """The outcome for one row, with the denials and the conditions that apply."""
        denials = [r for r in self.denials if ex.evaluate(r.when, row)]
        conditions = [r for r in self.conditions if ex.evaluate(r.when, row)]
        if denials:
            return NOT_PERMITTED, denials, conditions
        return (CONDITIONAL if conditions else PERMITTED), [], conditions


def _modifier(*codes: str) -> ex.Expr:
    return ex.HasAny("duo_modifiers", codes)


def _covers(diseases: tuple[str, ...]) -> ex.Expr:
    """DS consent covers every purpose disease: each lies at or under a consented disease."""
    if not diseases:
        return ex.FALSE
    return ex.all_of(*(ex.HasAny("duo_diseases", icd10.with_ancestors(code)) for code in diseases))


def _permission_allows(purpose: ResearchPurpose) -> ex.Expr:
    allowing = ex.In("duo_permission", _ALLOWING[purpose.kind])
    if purpose.kind in (PurposeKind.DISEASE, PurposeKind.METHODS):
        ds = ex.all_of(ex.In("duo_permission", ("DS",)), _covers(purpose.diseases))
        return ex.any_of(allowing, ds)
    if purpose.kind is PurposeKind.CLINICAL_CARE:
        # CC extends a research permission to clinical care: only GRU, HMB and DS are
        # research permissions it can extend (docs/consent.md); POA;CC stays ancestry only.
        extendable = ex.In("duo_permission", CLINICAL_CARE_EXTENDS)
        return ex.any_of(allowing, ex.all_of(extendable, _modifier("CC")))
    return allowing


def compile_purpose(purpose: ResearchPurpose) -> ConsentRules:
    """The denial and condition rules a purpose implies (see docs/consent.md)."""
    on = purpose.on or dt.date.today()
    denials: list[Rule] = [
        Rule("UNKNOWN", "the donor's consent is not recorded", ex.IsNull("duo_permission")),
        Rule(
            "PERMISSION",
            f"the consent's permission does not cover {purpose.kind.value} research"
            + (f" on {', '.join(purpose.diseases)}" if purpose.diseases else ""),
            ex.all_of(
                ex.negate(ex.IsNull("duo_permission")), ex.negate(_permission_allows(purpose))
            ),
        ),
    ]
    if purpose.commercial:
        denials.append(
            Rule("NCU", "commercial use is excluded (NCU / NPUNCU)", _modifier("NCU", "NPUNCU"))
        )
    if purpose.for_profit:
        denials.append(
            Rule(
                "NPU",
                "use by for-profit organisations is excluded (NPU / NPUNCU)",
                _modifier("NPU", "NPUNCU"),
            )
        )
    if purpose.kind is PurposeKind.ANCESTRY:
        denials.append(
            Rule("NPOA", "population origins or ancestry research is excluded", _modifier("NPOA"))
        )
    if purpose.kind is PurposeKind.METHODS:
        within_ds = ex.all_of(ex.In("duo_permission", ("DS",)), _covers(purpose.diseases))
        denials.append(
            Rule(
                "NMDS",
                "methods development is excluded outside the consented disease (NMDS)",
                ex.all_of(_modifier("NMDS"), ex.negate(within_ds)),
            )
        )
    if not purpose.genetic:
        denials.append(Rule("GSO", "use is limited to genetic studies (GSO)", _modifier("GSO")))
    outside = (
        ex.negate(ex.HasAny("duo_countries", (purpose.country,))) if purpose.country else ex.TRUE
    )
    denials.append(
        Rule(
            "GS",
            "use is limited to other countries (GS)"
            if purpose.country
            else "use is limited to some countries (GS) and no country was declared",
            ex.all_of(_modifier("GS"), outside),
        )
    )
    denials.append(
        Rule(
            "TS",
            f"the consent's time limit (TS) ended before {on.isoformat()}",
            ex.Range("duo_ts_date", lt=on),
        )
    )

    conditions: list[Rule] = []
    if not purpose.ethics_approval:
        conditions.append(Rule("IRB", "ethics approval must be shown (IRB)", _modifier("IRB")))
    conditions += [
        Rule(
            "COL",
            "collaboration with the biobank's investigators is required (COL)",
            _modifier("COL"),
        ),
        Rule("PUB", "results must be made public (PUB)", _modifier("PUB")),
        Rule("RTN", "derived data must be returned to the biobank (RTN)", _modifier("RTN")),
        Rule("MOR", "a publication moratorium applies (MOR)", ex.Range("duo_mor_date", gte=on)),
        Rule("US", "the biobank must approve the user (US)", _modifier("US")),
        Rule("PS", "the biobank must approve the project (PS)", _modifier("PS")),
        Rule("IS", "the biobank must approve the institution (IS)", _modifier("IS")),
        Rule(
            "RS", "research-specific restrictions need the biobank's review (RS)", _modifier("RS")
        ),
    ]
    return ConsentRules(purpose, tuple(denials), tuple(conditions))
