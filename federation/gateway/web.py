"""The web UI: page shells rendered in the reader's language, and their static assets.

The pages are shells: the server renders the frame, the labels and the forms (so the
first paint needs no script), and small ES modules fill in results by calling the public
`/graphql` API, exactly as any other client does. There is no build step: the modules and
the stylesheet in `federation/web/static/` are served as they are.

Every string a person reads comes from a message catalogue (`messages.<lang>.json`). The
language is the one the reader picked (a cookie the language switch sets), else the best
match for the browser's `Accept-Language`, else English.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request
from flask.blueprints import BlueprintSetupState
from markupsafe import Markup

from federation.search.facets import facet_catalogue

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "biofed_lang"
# Asset URLs carry a hash of the file, so browsers may keep them for a year.
ASSET_MAX_AGE = 365 * 24 * 3600

# Scripts and styles only from this origin, no inline script, nothing framed: the pages
# hold a credential (in sessionStorage) that an injected script could read.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

# The modules each page imports, preloaded so the browser fetches them in parallel.
_SHELL = ("shell.js", "i18n.js", "api.js", "dom.js", "cart.js")
_MODULES = {
    "search": (
        "search.js",
        *_SHELL,
        "counts.js",
        "combobox.js",
        "chart.js",
        "csv.js",
        "state.js",
        "names.js",
        "biobank-links.js",
    ),
    "admin": ("admin.js", *_SHELL, "csv.js"),
    "biobank": ("biobank.js", *_SHELL, "counts.js", "names.js", "biobank-links.js"),
    "request": ("request.js", *_SHELL, "counts.js", "state.js", "biobank-links.js"),
    "requests": ("requests.js", *_SHELL, "counts.js", "biobank-links.js"),
    "queue": ("requests.js", *_SHELL, "counts.js", "biobank-links.js"),
}

# Message keys a page leaves out of the catalogue it embeds: texts that only other pages'
# scripts and templates use, so the search page's first paint does not carry the admin,
# biobank and request pages' texts (10 KB of the Japanese catalogue). The whole catalogue
# stays a static asset that a language switch fetches; tests/web/test_pages.py checks that
# every message prefix the page's own scripts and templates name is embedded whole.
_OTHER_PAGES_TEXTS: dict[str, tuple[str, ...]] = {
    "search": (
        "admin.",
        "biobank.",
        "freshness.",
        "move.",
        "part.",
        "quarantine.",
        "queue.",
        "request.",
        "requests.",
        "schedules.",
        "sync.",
        "syncrequests.",
        "thread.",
    ),
}

blueprint = Blueprint("web", __name__, template_folder=WEB_DIR / "templates")


@blueprint.record_once
def _serve_assets(state: BlueprintSetupState) -> None:
    # Flask gives every app a `/static/<path>` route; pointing it at the UI's assets is
    # simpler than a second route that the first would shadow.
    state.app.static_folder = str(STATIC_DIR)


@cache
def catalogue(language: str) -> dict[str, str]:
    """The message catalogue of a language: message key to text."""
    path = STATIC_DIR / f"messages.{language}.json"
    messages: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return messages


@cache
def asset_url(name: str) -> str:
    """The URL of a static file, with a hash of its content for caching."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


def reader_language() -> str:
    """The language of the page: the reader's choice, else the browser's, else English."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT_LANGUAGE)


def translate(messages: Mapping[str, str], key: str, **params: Any) -> str:
    """A message with its `{name}` placeholders filled; the key itself when it is missing."""
    text = messages.get(key, key)
    for name, value in params.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def _render(
    template: str, page: str, status: int = 200, extra: Mapping[str, Any] | None = None
) -> Response:
    language = reader_language()
    left_out = _OTHER_PAGES_TEXTS.get(page, ())
    every = catalogue(language)
    messages = {k: v for k, v in every.items() if not k.startswith(left_out)}
    config = {
        **(extra or {}),
        "page": page,
        "language": language,
        "languages": list(LANGUAGES),
        "catalogues": {lang: asset_url(f"messages.{lang}.json") for lang in LANGUAGES},
        "languageCookie": LANGUAGE_COOKIE,
        # The facet catalogue, from the one facet definition (federation/search/facets.py).
        "facets": facet_catalogue(),
    }
    html = render_template(
        template,
        page=page,
        language=language,
        languages=LANGUAGES,
        t=lambda key, **params: translate(every, key, **params),
        asset=asset_url,
        modules=_MODULES[page],
        # JSON in a <script type="application/json"> block: `<` escaped so no text in it
        # can close the block.
        config_json=Markup(_script_json(config)),
        messages_json=Markup(_script_json(messages)),
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Language"] = language
    response.headers["Vary"] = "Accept-Language, Cookie"
    response.headers["Cache-Control"] = "no-cache"
    return response


def _script_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@blueprint.get("/")
def search_page() -> Response:
    """The researchers' search page."""
    return _render("search.html", "search")


@blueprint.get("/admin")
def admin_page() -> Response:
    """Biobank admins' page: sync history, starting a sync, quarantined records."""
    return _render("admin.html", "admin")


@blueprint.get("/request")
def request_page() -> Response:
    """The request cart: the chosen biobanks, the purpose, the consent check, and sending."""
    return _render("request.html", "request")


@blueprint.get("/requests")
def requests_page() -> Response:
    """A researcher's access requests, each with a state and a message thread per biobank."""
    return _render("requests.html", "requests", extra={"mode": "mine"})


@blueprint.get("/admin/requests")
def queue_page() -> Response:
    """A biobank admin's queue: the parts of requests for the biobanks they administer."""
    return _render("requests.html", "queue", extra={"mode": "queue"})


@blueprint.get("/biobank/<biobank_id>")
def biobank_page(biobank_id: str) -> Response:
    """A biobank's page: description, access, data freshness, collections and holdings."""
    # The shell says "no such biobank" itself; the status tells crawlers and scripts.
    known = any(
        s.biobank.id == biobank_id for s in current_app.extensions["biofed"].network().biobanks
    )
    return _render("biobank.html", "biobank", 200 if known else 404, {"biobank": biobank_id})


@blueprint.after_request
def _page_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # Search URLs carry the query; other sites need not learn it from the Referer.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@blueprint.after_app_request
def _asset_headers(response: Response) -> Response:
    if request.endpoint == "static":
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if "v" in request.args and response.status_code == 200:
            response.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE}, immutable"
    return response
