"""GA4GH Data Use Ontology (DUO) terms and the consent a donor gave in them.

A consent is one permission (NRES, GRU, HMB, DS with diseases, POA) plus any modifiers
(NCU, GS with countries, TS with a date, ...). Sources spell it as text; the tabular
form this project reads and writes is `DS(C50);NCU;GS(JP,KR);TS(2030-12-31)`, and DUO
identifiers (`DUO:0000007(C50)`) are accepted wherever a shorthand is.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cache

from federation.errors import FederationError
from federation.model import icd10
from federation.model.vocab import VOCAB_DIR


@dataclass(frozen=True)
class DuoDefinition:
    """A row of `schema/vocab/duo.csv`."""

    id: str
    shorthand: str
    kind: str  # "permission" | "modifier"
    parameter: str  # "" | "diseases" | "countries" | "date"
    label: str


@cache
def definitions() -> dict[str, DuoDefinition]:
    """DUO terms by shorthand."""
    with (VOCAB_DIR / "duo.csv").open(encoding="utf-8", newline="") as handle:
        rows = [DuoDefinition(**row) for row in csv.DictReader(handle)]
    return {d.shorthand: d for d in rows}


@cache
def _by_id() -> dict[str, str]:
    return {d.id: d.shorthand for d in definitions().values()}


PERMISSIONS = ("NRES", "GRU", "HMB", "DS", "POA")


class InvalidConsent(FederationError, ValueError):
    """A consent statement that cannot be read; the message names the offending term."""

    code = "INVALID_CONSENT"


@dataclass(frozen=True)
class DuoTerm:
    """One DUO term as given for a donor, with its parameter if it takes one."""

    code: str
    diseases: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    date: dt.date | None = None

    def to_text(self) -> str:
        params: tuple[str, ...] = self.diseases or self.countries
        if self.date:
            params = (self.date.isoformat(),)
        return f"{self.code}({','.join(params)})" if params else self.code


@dataclass(frozen=True)
class Consent:
    """A donor's consent: exactly one permission and any number of modifiers."""

    permission: DuoTerm
    modifiers: tuple[DuoTerm, ...] = field(default=())

    @property
    def terms(self) -> tuple[DuoTerm, ...]:
        return (self.permission, *self.modifiers)

    def modifier(self, code: str) -> DuoTerm | None:
        return next((m for m in self.modifiers if m.code == code), None)

    def to_text(self) -> str:
        return ";".join(t.to_text() for t in self.terms)


_TERM = re.compile(r"^\s*([A-Za-z:_0-9]+)\s*(?:\((.*)\))?\s*$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def term(code: str, params: list[str] | tuple[str, ...] = ()) -> DuoTerm:
    """Build a validated term from a shorthand or DUO id and its raw parameters."""
    shorthand = _shorthand(code)
    definition = definitions()[shorthand]
    values = [p.strip() for p in params if p.strip()]
    if definition.parameter == "diseases":
        if not values:
            raise InvalidConsent(f"{shorthand} needs at least one ICD-10 disease")
        try:
            diseases = tuple(icd10.normalise(v) for v in values)
        except icd10.UnknownCode as err:
            raise InvalidConsent(f"{shorthand}: {err}") from None
        return DuoTerm(shorthand, diseases=diseases)
    if definition.parameter == "countries":
        countries = tuple(v.upper() for v in values)
        bad = [c for c in countries if not _COUNTRY.match(c)]
        if not countries or bad:
            raise InvalidConsent(f"{shorthand} needs ISO 3166 country codes, got {values!r}")
        return DuoTerm(shorthand, countries=countries)
    if definition.parameter == "date":
        if len(values) != 1:
            raise InvalidConsent(f"{shorthand} needs one date (YYYY-MM-DD), got {values!r}")
        try:
            return DuoTerm(shorthand, date=dt.date.fromisoformat(values[0]))
        except ValueError:
            raise InvalidConsent(f"{shorthand}: {values[0]!r} is not a date") from None
    if values:
        raise InvalidConsent(f"{shorthand} takes no parameters, got {values!r}")
    return DuoTerm(shorthand)


def _shorthand(code: str) -> str:
    text = code.strip()
    upper = text.upper().replace("_", ":")
    if upper.startswith("DUO:") or upper.startswith("OBO:DUO:"):
        found = _by_id().get(upper.removeprefix("OBO:"))
        if found:
            return found
    elif upper in definitions():
        return upper
    raise InvalidConsent(f"{text!r} is not a DUO permission or modifier")


def from_terms(terms: list[DuoTerm] | tuple[DuoTerm, ...]) -> Consent:
    """Assemble a consent, checking there is exactly one permission and no repeats."""
    permissions = [t for t in terms if t.code in PERMISSIONS]
    if len(permissions) != 1:
        found = ", ".join(t.code for t in permissions) or "none"
        raise InvalidConsent(f"a consent needs exactly one DUO permission, found {found}")
    modifiers = tuple(t for t in terms if t.code not in PERMISSIONS)
    codes = [m.code for m in modifiers]
    repeated = sorted({c for c in codes if codes.count(c) > 1})
    if repeated:
        raise InvalidConsent(f"modifier repeated: {', '.join(repeated)}")
    return Consent(permissions[0], modifiers)


def parse(text: str) -> Consent:
    """Read `DS(C50);NCU;GS(JP)` (also `,`-free `|` separated) into a Consent."""
    parts = [p for p in re.split(r"[;|]", text) if p.strip()]
    if not parts:
        raise InvalidConsent("empty consent")
    terms = []
    for part in parts:
        match = _TERM.match(part)
        if not match:
            raise InvalidConsent(f"cannot read DUO term {part.strip()!r}")
        params = match.group(2).split(",") if match.group(2) is not None else []
        terms.append(term(match.group(1), params))
    return from_terms(terms)
