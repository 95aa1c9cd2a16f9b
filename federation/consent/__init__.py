"""DUO consent and research-purpose matching: which donors a declared purpose may use."""

from federation.consent.matching import (
    CONDITIONAL,
    NOT_PERMITTED,
    OUTCOMES,
    PERMITTED,
    ConsentRules,
    Rule,
    compile_purpose,
)
from federation.consent.purpose import PurposeKind, ResearchPurpose

__all__ = [
    "CONDITIONAL",
    "NOT_PERMITTED",
    "OUTCOMES",
    "PERMITTED",
    "ConsentRules",
    "PurposeKind",
    "ResearchPurpose",
    "Rule",
    "compile_purpose",
]
