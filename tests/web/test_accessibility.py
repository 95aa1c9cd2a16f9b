"""axe-core in Chromium: no serious or critical violation in any state of the UI.

Every state (landing, results, records, admin, a biobank's page, the request form, the
researcher's requests, an admin's request queue) is checked at a laptop width (1440 px) and
a phone width (390 px), in English and Japanese, signed out and signed in as each demo
role (a biobank admin, a registered researcher, the network operator). axe-core's own
script (`axe.min.js`, shipped in the PyPI package `axe-playwright-python`, installed by
`scripts/setup`) runs inside the page; each state is also saved as a screenshot in
`test-artifacts/web/a11y/` for a person to look at.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from typing import Any

import pytest

from tests.web.conftest import ARTIFACTS, WebNetwork
from tests.web.test_browser import Tabs, settle

pytestmark = pytest.mark.slow

# axe's impact levels that fail a test (WCAG failures a user cannot work around).
FAILING_IMPACTS = ("serious", "critical")
WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}
LOCALES = {"en": "en-US", "ja": "ja-JP"}
WHO = ("signed-out", "admin", "researcher", "operator")
# The states of the UI: the path to open, and what must be on screen before axe looks.
STATES = {
    "landing": ("/", "#summary"),
    "results": ("/?disease=C50", "#biobank-results"),
    "records": ("/?disease=C50&purpose=DISEASE&ethics=1&country=JP", "#records-heading"),
    "admin": ("/admin", "#sync-heading"),
    "biobank": ("/biobank/osaka", "#freshness-heading"),
    "request": ("/request", "#request-heading"),
    "my-requests": ("/requests", "#requests-heading"),
    "request-queue": ("/admin/requests", "#requests-heading"),
}
SHOTS = ARTIFACTS / "a11y"


@cache
def axe_source() -> str:
    """axe-core as shipped by the axe-playwright-python package."""
    files = importlib.resources.files("axe_playwright_python")
    return files.joinpath("axe.min.js").read_text(encoding="utf-8")


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe's serious and critical violations on the page as it is now."""
    # Injected through the DevTools protocol, so the page's strict CSP does not apply to it.
    page.evaluate(axe_source())
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in FAILING_IMPACTS
    ]


def credential_of(net: WebNetwork, who: str) -> str | None:
    return {
        "signed-out": None,
        "admin": net.admin_key,
        "researcher": net.researcher_key,
        "operator": net.operator_key,
    }[who]


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("language", list(LOCALES))
@pytest.mark.parametrize("width", list(WIDTHS))
def test_no_serious_or_critical_axe_violation(
    web_network: WebNetwork, tabs: Tabs, width: str, language: str, who: str
) -> None:
    wide, high = WIDTHS[width]
    page = tabs(LOCALES[language], width=wide, height=high).page
    key = credential_of(web_network, who)
    if key is not None:
        # Signed in the way the page keeps a credential: in this tab's sessionStorage.
        page.context.add_init_script(f"sessionStorage.setItem('biofed.credential', {key!r})")
    SHOTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[dict[str, Any]]] = {}
    for state, (path, landmark) in STATES.items():
        page.goto(web_network.url + path)
        settle(page)
        page.wait_for_selector(landmark)
        if key is not None:
            page.wait_for_selector("#signout:not([hidden])", state="attached")
        assert page.evaluate("document.documentElement.lang") == language
        if state == "records":
            page.locator("#records-heading").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"{width}-{language}-{who}-{state}.png"), full_page=True)
        violations = serious_violations(page)
        if violations:
            found[state] = violations
    assert found == {}, json.dumps(found, indent=1, ensure_ascii=False)


def test_the_check_finds_a_violation_put_into_the_page(web_network: WebNetwork, tabs: Tabs) -> None:
    """The harness is not blind: an unlabelled button and an image without a text
    alternative, added to a real page, are reported."""
    page = tabs("en-US").page
    page.goto(web_network.url + "/")
    settle(page)
    assert serious_violations(page) == []
    page.evaluate(
        "document.querySelector('main').append("
        "Object.assign(document.createElement('img'), {src: '/favicon.ico'}),"
        "document.createElement('button'))"
    )
    found = {v["id"] for v in serious_violations(page)}
    assert {"image-alt", "button-name"} <= found, found
