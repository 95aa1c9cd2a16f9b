"""A researcher's declared research purpose, in the terms DUO consent is written against."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.model import icd10
from federation.model.query_errors import BadQuery


class PurposeKind(enum.Enum):
    """What the research is for (the primary category of the DUOS research-purpose form)."""

    DISEASE = "disease"  # research on specific diseases (ICD-10 codes required)
    HEALTH = "health"  # health / medical / biomedical research, not disease-specific
    ANCESTRY = "ancestry"  # population origins or ancestry research
    METHODS = "methods"  # methods development (software, algorithms), optionally on diseases
    GENERAL = "general"  # other research: fundamental biology, social sciences
    CLINICAL_CARE = "clinical_care"  # use in clinical care, not research


@dataclass(frozen=True)
class ResearchPurpose:
    """A declared purpose: kind, diseases, and the facts DUO modifiers test."""

    kind: PurposeKind
    diseases: tuple[str, ...] = ()
    commercial: bool = False
    for_profit: bool = False
    country: str | None = None
    ethics_approval: bool = False
    genetic: bool = False
    on: dt.date | None = None  # the date of use (time limits, moratoria); today by default

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, today: dt.date | None = None) -> ResearchPurpose:
        """Validate a purpose from user input; errors name the argument and the value."""
        kind_raw = raw.get("kind")
        try:
            kind = PurposeKind(str(kind_raw).lower())
        except ValueError:
            known = ", ".join(k.value for k in PurposeKind)
            raise BadQuery("purpose.kind", kind_raw, f"not one of {known}") from None
        diseases = []
        for value in raw.get("diseases") or ():
            try:
                diseases.append(icd10.normalise(value))
            except icd10.UnknownCode as err:
                raise BadQuery("purpose.diseases", value, str(err)) from None
        if kind is PurposeKind.DISEASE and not diseases:
            raise BadQuery("purpose.diseases", [], "disease research needs ICD-10 codes")
        country = raw.get("country")
        if country is not None:
            country = str(country).upper()
            if not re.fullmatch(r"[A-Z]{2}", country):
                raise BadQuery("purpose.country", raw.get("country"), "not an ISO 3166 code")
        return cls(
            kind=kind,
            diseases=tuple(dict.fromkeys(diseases)),
            commercial=bool(raw.get("commercial", False)),
            for_profit=bool(raw.get("for_profit", False)),
            country=country,
            ethics_approval=bool(raw.get("ethics_approval", False)),
            genetic=bool(raw.get("genetic", False)),
            on=today or dt.date.today(),
        )

    def normalised(self) -> dict[str, Any]:
        """A canonical form for audit logs and the noise key."""
        return {
            "kind": self.kind.value,
            "diseases": sorted(self.diseases),
            "commercial": self.commercial,
            "for_profit": self.for_profit,
            "country": self.country,
            "ethics_approval": self.ethics_approval,
            "genetic": self.genetic,
        }
