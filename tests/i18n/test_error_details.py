"""Error details in Japanese: the sentences the code raises are recognised and rendered
from the catalogues, and the English templates give back the very sentence raised."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from federation.disclosure.permissions import require_admin, require_operator, require_signed_in
from federation.disclosure.roles import ANONYMOUS, Identity
from federation.errors import BadInput, NotFound, check_range, check_text
from federation.gateway import create_app
from federation.gateway.error_details import MESSAGES, REASONS, detail_in
from federation.gateway.limits import (
    Deadline,
    SearchesRateLimited,
)
from federation.i18n import LANGUAGES, catalogue
from federation.model import icd10
from federation.model.query_errors import BadQuery
from federation.search.query import SampleQuery
from federation.search.service import unknown_biobank
from tests.conftest import Federation
from tests.gateway.access import with_test_access

ADMIN = Identity(
    subject="admin@bb2.example", authenticated=True, admin_of=frozenset({"bb2"}), via="api_key"
)
# Letters a Japanese sentence is written in (kana and kanji).
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def raised(action: Callable[[], object]) -> str:
    with pytest.raises(Exception) as caught:
        action()
    return str(caught.value)


def bad_query(raw: dict[str, object]) -> str:
    try:
        SampleQuery.parse(raw)
    except BadQuery as err:
        return str(BadInput(err.argument, err.value, err.reason))
    raise AssertionError(f"{raw} was accepted")


def real_messages() -> list[str]:
    """Messages as the code raises them (not typed here), one per kind of refusal."""
    icd = raised(lambda: icd10.normalise("C509999"))
    return [
        raised(lambda: check_range("records.first", 500, 1, 100)),
        raised(lambda: check_range("offset", -1, 0)),
        raised(lambda: check_text("subject", "\ud800")),
        str(BadInput("query.diseases", "C509999", icd)),
        str(BadInput("query.biobanks", "nowhere", unknown_biobank("nowhere", {"bb1"}).reason)),
        str(BadInput("query.biobanks", "x", unknown_biobank("x", set()).reason)),
        bad_query({"age_min": 200}),
        bad_query({"age_min": 70, "age_max": 40}),
        bad_query({"materials": ["BLOODY_MARY"]}),
        str(NotFound("biobank", "nowhere", "biobank in this network with id")),
        raised(lambda: require_signed_in(ANONYMOUS, "syncRuns")),
        raised(lambda: require_operator(ADMIN, "auditLog")),
        raised(lambda: require_admin(ADMIN, "bb1", "quarantine", operators=False)),
        raised(lambda: require_admin(ADMIN, "bb1", "syncRuns", operators=True)),
        str(SearchesRateLimited(12.3)),
        str(Deadline(10.0).error()),
    ]


def test_the_english_templates_give_back_the_sentence_raised() -> None:
    for message in real_messages():
        assert detail_in(message, "en") == message


def test_every_sentence_raised_reads_in_japanese() -> None:
    for message in real_messages():
        japanese = detail_in(message, "ja")
        assert japanese != message, message
        assert JAPANESE.search(japanese), japanese
        # What is left in Latin letters is values (argument names, codes), not English words.
        for word in ("must", "unknown", "only", "sign in", "not a", "try again", "longer"):
            assert word not in japanese, (word, japanese)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_pattern_key_is_in_every_catalogue(language: str) -> None:
    keys = {p.key for p in (*MESSAGES, *REASONS)}
    assert keys - set(catalogue(language)) == set()


def test_an_unknown_detail_stays_english_whole() -> None:
    odd = 'query.text: something no pattern knows (got "x")'
    assert detail_in(odd, "ja") == odd


def test_the_gateway_answers_errors_in_japanese_detail_and_all(federation: Federation) -> None:
    federation.biobank("bb1").donor("D1").sample("S1", "D1")
    federation.write()
    app = create_app({"settings": with_test_access(federation.settings), "TESTING": True})
    client = app.test_client()
    body = client.post(
        "/graphql",
        json={"query": "{ search(query: {ageMin: 200}) { donors { value } } }"},
        headers={"Accept-Language": "ja"},
    ).get_json()
    [error] = body["errors"]
    assert error["message"] == (
        "入力値を使えません：query.ageMin：0 から 150 の間で指定してください（入力値 200）"
    )
    assert (
        error["extensions"]["englishMessage"] == "query.ageMin: must be between 0 and 150 (got 200)"
    )
    runs = client.post(
        "/graphql", json={"query": "{ syncRuns { id } }"}, headers={"Accept-Language": "ja"}
    ).get_json()
    assert runs["errors"][0]["message"] == (
        "サインインが必要です：syncRuns を見るには"
        " API キーまたはベアラートークンでサインインしてください"
    )


def test_a_rate_limited_request_is_refused_in_japanese_too(federation: Federation) -> None:
    federation.biobank("bb1").donor("D1").sample("S1", "D1")
    federation.write()
    Path(federation.settings.data_dir).mkdir(parents=True, exist_ok=True)  # the bucket store
    limited = {"enabled": True, "anonymous": {"per_minute": 1, "burst": 1}}
    settings = with_test_access(federation.settings, rate_limit=limited)
    client = create_app({"settings": settings, "TESTING": True}).test_client()
    ask = {"query": "{ biobanks { id } }"}
    assert client.post("/graphql", json=ask).status_code == 200
    refused = client.post("/graphql", json=ask, headers={"Accept-Language": "ja"})
    assert refused.status_code == 429
    [error] = refused.get_json()["errors"]
    seconds = error["extensions"]["retryAfter"]
    assert error["message"] == (
        f"リクエストが多すぎます。少し待ってから再試行してください：{seconds} 秒後に再試行できます"
    )
    assert error["extensions"]["englishMessage"] == f"too many requests; try again in {seconds} s"
