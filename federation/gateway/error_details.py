"""The details of error messages, recognised so that a Japanese reader gets them in Japanese.

Errors are raised with an English message that names the argument and the value
(federation/errors.py, the permission checks, the request limits). Rewriting every raise
site as a catalogue message would touch every room; instead the gateway edge recognises the
sentences the code writes, by their fixed wording, and renders them from the catalogue
with the values they carried (`error.detail.*` keys; the English templates reproduce the
English sentences word for word, which tests/i18n checks). A detail no pattern knows stays
English inside the Japanese frame, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from federation.i18n import Message

# What an argument name looks like in a message: `query.ageMin`, `codes[2]`, `records.first`.
_ARGUMENT = r"(?P<argument>[\w.\[\]]+)"
_WHAT = r"(?P<what>\w+)"


@dataclass(frozen=True)
class DetailPattern:
    """An English sentence the code writes (a regular expression with named values) and the
    catalogue key of the same sentence."""

    pattern: re.Pattern[str]
    key: str


def _patterns(*pairs: tuple[str, str]) -> tuple[DetailPattern, ...]:
    return tuple(DetailPattern(re.compile(p, re.DOTALL), key) for p, key in pairs)


# Why an argument value was refused (BadInput's `reason`).
REASONS = _patterns(
    (
        r"'(?P<code>.*)' is not a WHO ICD-10 code \(not shaped like an ICD-10 code\)",
        "error.reason.icd_shape",
    ),
    (
        r"'(?P<code>.*)' is not a WHO ICD-10 code \(no such category in WHO ICD-10 2019\)",
        "error.reason.icd_category",
    ),
    (
        r"'(?P<code>.*)' is not a WHO ICD-10 code \(WHO ICD-10 has (?P<parent>\S+); a national "
        r"modification such as ICD-10-GM\?\)",
        "error.reason.icd_national",
    ),
    (r"'(?P<code>.*)' is not a WHO ICD-10 code \(empty\)", "error.reason.icd_empty"),
    (r"must be between (?P<low>-?\d+) and (?P<high>-?\d+)", "error.reason.between"),
    (r"must be at least (?P<low>-?\d+)", "error.reason.at_least"),
    (r"not a cursor this service issued", "error.reason.cursor"),
    (r"not a cursor of the audit log", "error.reason.audit_cursor"),
    (r"unknown biobank; known: (?P<known>.*)", "error.reason.biobank_known"),
    (r"unknown biobank; closest: (?P<known>.*)", "error.reason.biobank_closest"),
    (r"unknown biobank; for example: (?P<known>.*)", "error.reason.biobank_example"),
    (r"unknown biobank; no biobank is known yet", "error.reason.biobank_none"),
    (r"unknown facet; known: (?P<known>.*)", "error.reason.facet"),
    (r"unknown column; known: (?P<known>.*)", "error.reason.column"),
    (r"unknown filter", "error.reason.filter"),
    (r"not one of (?P<known>.*)", "error.reason.one_of"),
    (r"longer than (?P<n>\d+) characters", "error.reason.too_long"),
    (r"is greater than age_max (?P<age_max>\d+)", "error.reason.age_order"),
    (r"disease research needs ICD-10 codes", "error.reason.purpose_diseases"),
    (r"contains a lone UTF-16 surrogate, which is not text", "error.reason.surrogate"),
    (
        r"'(?P<value>.*)' is not in the (?P<vocabulary>\w+) vocabulary; allowed: (?P<known>.*)",
        "error.reason.vocabulary_allowed",
    ),
    (
        r"'(?P<value>.*)' is not in the (?P<vocabulary>\w+) vocabulary; closest: (?P<known>.*) "
        r"\((?P<count>\d+) codes, all in schema/vocab/(?P<file>\w+)\.csv\)",
        "error.reason.vocabulary_closest",
    ),
    (
        r"'(?P<value>.*)' is not in the (?P<vocabulary>\w+) vocabulary; for example: "
        r"(?P<known>.*) \((?P<count>\d+) codes, all in schema/vocab/(?P<file>\w+)\.csv\)",
        "error.reason.vocabulary_example",
    ),
)

# Whole messages of the other refusals.
MESSAGES = _patterns(
    (_ARGUMENT + r": (?P<reason>.*) \(got (?P<value>.*)\)", "error.detail.bad_input"),
    (
        _ARGUMENT + r": no biobank in this network with id '(?P<value>.*)'",
        "error.detail.no_biobank",
    ),
    (_WHAT + r": sign in \(an API key or a bearer token\) to see this", "error.detail.signin"),
    (_WHAT + r": only network operators may see this", "error.detail.operators"),
    (_WHAT + r": only admins of that biobank may see this", "error.detail.admins"),
    (
        _WHAT + r": only admins of that biobank and network operators may see this",
        "error.detail.admins_operators",
    ),
    (r"too many searches; try again in (?P<seconds>\d+) s", "error.detail.searches_limited"),
    (r"too many requests; try again in (?P<seconds>\d+) s", "error.detail.requests_limited"),
    (
        r"the request took longer than (?P<seconds>[\d.]+) s and was stopped; narrow the "
        r"query or ask for fewer records",
        "error.detail.timeout",
    ),
    (
        r"the query costs (?P<requested>\d+), over the budget of (?P<budget>\d+) \(search 10 "
        r"each; records, syncRuns and quarantine 1 per item asked for with `first`; facets 5 "
        r"each or 20 for all\); split it or ask for fewer items",
        "error.detail.cost",
    ),
    (
        r"the request carries (?P<sent>\d+) `search` fields \(aliases count one each\); at "
        r"most (?P<limit>\d+) are allowed per request: send the others separately",
        "error.detail.searches",
    ),
    (
        r"introspection \(__schema, __type\) is switched off on this server; the schema is "
        r"published as schema/schema.graphql",
        "error.detail.introspection",
    ),
)


def _match(patterns: tuple[DetailPattern, ...], text: str) -> tuple[str, dict[str, str]] | None:
    for known in patterns:
        found = known.pattern.fullmatch(text)
        if found is not None:
            return known.key, found.groupdict()
    return None


def detail_in(english: str, language: str) -> str:
    """An error message's detail in `language`; the English text when no pattern knows it."""
    found = _match(MESSAGES, english)
    if found is None:
        return english
    key, values = found
    if "reason" in values:
        reason = _match(REASONS, values["reason"])
        if reason is None:
            return english  # a half-translated sentence reads worse than an English one
        values["reason"] = Message.of(reason[0], **reason[1]).render(language)
    return Message.of(key, **values).render(language)
