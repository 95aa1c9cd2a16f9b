"""The question of a request in words: a `SampleQuery` and purpose as one sentence in the
researcher's language, from the message catalogues (federation/i18n)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from federation.consent import ResearchPurpose
from federation.consent.purpose import PurposeKind
from federation.i18n import Message
from federation.search.query import SampleQuery

# A disease code and a language to its name ("C50" -> "Malignant neoplasm of breast").
DiseaseName = Callable[[str, str], str]


def _listed(values: Sequence[str], language: str) -> str:
    return Message.of("question.or").render(language).join(values)


def _diseases(codes: Sequence[str], name: DiseaseName, language: str) -> str:
    return _listed([f"{code} ({name(code, language)})" for code in codes], language)


def _conditions(query: SampleQuery, name: DiseaseName, language: str) -> list[str]:
    parts: list[Message] = []
    if query.diseases or query.exact_diseases:
        codes = [*query.diseases, *query.exact_diseases]
        parts.append(Message.of("question.diseases", values=_diseases(codes, name, language)))
    if query.text:
        parts.append(Message.of("question.text", text=query.text))
    listed = (
        ("question.materials", query.materials),
        ("question.sexes", query.sexes),
        ("question.collection_types", query.collection_types),
        ("question.data_categories", query.data_categories),
        ("question.biobanks", query.biobanks),
    )
    for key, values in listed:
        if values:
            parts.append(Message(key, (("values", _listed(values, language)),)))
    if query.age_min is not None and query.age_max is not None:
        parts.append(Message.of("question.age_range", low=query.age_min, high=query.age_max))
    elif query.age_min is not None:
        parts.append(Message.of("question.age_min", low=query.age_min))
    elif query.age_max is not None:
        parts.append(Message.of("question.age_max", high=query.age_max))
    return [part.render(language) for part in parts]


_PURPOSE_KEYS = {
    PurposeKind.DISEASE: "purpose.disease",
    PurposeKind.HEALTH: "purpose.health",
    PurposeKind.ANCESTRY: "purpose.ancestry",
    PurposeKind.METHODS: "purpose.methods",
    PurposeKind.GENERAL: "purpose.general",
    PurposeKind.CLINICAL_CARE: "purpose.clinical_care",
}


def question_sentence(
    query: SampleQuery, purpose: ResearchPurpose, name: DiseaseName, language: str
) -> str:
    """The question and purpose as one sentence in `language` (en or ja)."""
    conditions = _conditions(query, name, language)
    if conditions:
        joined = Message.of("question.and").render(language).join(conditions)
        question = Message.of("question.samples_where", conditions=joined).render(language)
    else:
        question = Message.of("question.all").render(language)
    key = _PURPOSE_KEYS[purpose.kind]
    purpose_text = Message(key, (("values", _diseases(purpose.diseases, name, language)),))
    return Message.of(
        "question.purpose", question=question, purpose=purpose_text.render(language)
    ).render(language)
