"""Issue 15 in Chromium: biobank pages, the request cart and the request views, in English
and Japanese, on a laptop (1440 px) and a phone (390 px).

Every figure on a page is compared with the GraphQL answer to the same question asked
directly over HTTP with the same credential; request states are read back from the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from tests.support.server import graphql
from tests.web.conftest import WebNetwork, screenshot
from tests.web.test_browser import EN, JA, Tabs, check_cell, settle, shown

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api").expect

LAPTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
TAP = 44  # CSS px, WCAG 2.5.5
VIEWS = [
    ("en-US", EN, LAPTOP),
    ("ja-JP", JA, LAPTOP),
    ("en-US", EN, PHONE),
    ("ja-JP", JA, PHONE),
]
IDS = ["en-1440", "ja-1440", "en-390", "ja-390"]

COUNT = "value precision reason exists"
BUCKET = f"key samples {{ {COUNT} }}"
HOLDINGS = f"""query($id: ID!) {{
  biobank(id: $id) {{ name nameJa country accessUrl accessConditions
    freshness {{ status lastSuccessfulSync }} collections {{ id name }} }}
  holdings(biobank: $id) {{
    donors {{ {COUNT} }} samples {{ {COUNT} }} access {{ explanation }}
    materials {{ {BUCKET} }}
    collections {{ collection {{ id }} donors {{ {COUNT} }} samples {{ {COUNT} }}
      materials {{ {BUCKET} }} }}
  }}
}}"""
PREVIEW = f"""query($q: SampleQuery!, $p: ResearchPurpose!, $b: [ID!]!, $l: String) {{
  previewAccessRequest(query: $q, purpose: $p, biobanks: $b, language: $l) {{
    question nothingPermits warning
    checks {{ biobank {{ id }} donors {{ {COUNT} }} samples {{ {COUNT} }}
      permitted {{ samples {{ {COUNT} }} }} conditional {{ samples {{ {COUNT} }} }}
      notPermitted {{ samples {{ {COUNT} }} }} }}
  }}
}}"""
SUBMIT = """mutation($input: AccessRequestInput!) { submitAccessRequest(input: $input) { id } }"""
REQUEST = """query($id: ID!) { accessRequest(id: $id) {
  id title parts { biobank { id } state events { toState message } } } }"""


def api(
    net: WebNetwork,
    query: str,
    variables: Mapping[str, Any],
    key: str | None = None,
    language: str = "en",
) -> dict[str, Any]:
    headers = {"Accept-Language": language}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = graphql(net.url, query, variables, headers)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def box(locator: Any) -> dict[str, float]:
    found: dict[str, float] | None = locator.bounding_box()
    assert found is not None, locator
    return found


def check_phone(page: Any, selectors: list[str]) -> None:
    """Nothing wider than the phone; every control named is a 44 px tap target."""
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > 391).slice(0, 5)"
        ".map(e => e.tagName + '#' + e.id + '.' + e.className)"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], wide
    for selector in selectors:
        found = page.locator(selector)
        assert found.count() > 0, selector
        for n in range(found.count()):
            if not found.nth(n).is_visible():
                continue
            size = box(found.nth(n))
            assert size["height"] >= TAP - 0.5, (selector, size)


def sign_in(page: Any, key: str) -> None:
    page.locator("#signin summary").click()
    page.fill("#credential", key)
    page.locator("#signin-form button[type=submit]").click()
    # Kept once the server accepted it (the panel closes, its sign-out button shows).
    page.wait_for_selector("#signout:not([hidden])", state="attached")


def ready(page: Any) -> None:
    page.wait_for_selector("body[data-state=ready]")


# --- the biobank page --------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "messages", "size"), VIEWS, ids=IDS)
def test_biobank_page_from_a_result(
    web_network: WebNetwork,
    tabs: Tabs,
    locale: str,
    messages: dict[str, str],
    size: dict[str, int],
) -> None:
    page = tabs(locale, **size).page
    language = locale[:2]
    page.goto(web_network.url + "/?disease=C50")
    settle(page)
    # The biobank's name in the results leads to its page.
    link = page.locator('#biobank-results tbody tr[data-biobank="osaka"] a.biobank-link')
    assert link.get_attribute("href") == "/biobank/osaka"
    link.click()
    page.wait_for_url("**/biobank/osaka")
    ready(page)
    data = api(web_network, HOLDINGS, {"id": "osaka"}, language=language)
    bb, holdings = data["biobank"], data["holdings"]
    name = bb["nameJa"] if language == "ja" else bb["name"]
    assert page.locator("h1#biobank-name").inner_text() == name
    assert page.title().startswith(name)
    assert ("日本" if language == "ja" else "Japan") in page.locator("#biobank-facts").inner_text()
    assert page.locator("#access-conditions").inner_text() == bb["accessConditions"]
    assert ("倫理審査" in bb["accessConditions"]) == (language == "ja")
    apply = page.locator("#access-apply a")
    assert apply.get_attribute("href") == bb["accessUrl"]
    assert apply.inner_text() == messages["biobank.access.apply"]
    website = page.locator('#biobank-facts a[href="https://biobank.osaka.example.org"]')
    assert website.get_attribute("rel") == "noopener noreferrer"
    # Data freshness: the sync that built the network just succeeded.
    badge = page.locator("#freshness .badge")
    assert badge.get_attribute("data-status") == bb["freshness"]["status"] == "FRESH"
    assert badge.inner_text() == messages["freshness.FRESH"]
    when = page.locator('#freshness [data-field="last-success"] time')
    assert when.get_attribute("datetime") == bb["freshness"]["lastSuccessfulSync"]
    # Holdings: exactly the released figures of the API for this (anonymous) reader.
    rule = holdings["access"]["explanation"]
    for field in ("samples", "donors"):
        check_cell(
            page.locator(f'#holdings-totals [data-field="{field}"]'),
            holdings[field],
            messages,
            rule,
        )
    for bucket in holdings["materials"]:
        item = page.locator(f'#holdings-materials li[data-key="{bucket["key"]}"]')
        assert item.locator(".count-value").inner_text() == shown(bucket["samples"], messages)
    rows = page.locator("#collections tbody tr")
    assert rows.count() == len(bb["collections"]) == len(holdings["collections"])
    for held in holdings["collections"]:
        row = page.locator(f'#collections tr[data-collection="{held["collection"]["id"]}"]')
        for field in ("donors", "samples"):
            check_cell(row.locator(f'td[data-field="{field}"]'), held[field], messages, rule)
    if size is PHONE:
        check_phone(page, [".cart-toggle", "#access-apply a", ".breadcrumb a", "#search-biobank"])
    screenshot(page, f"biobank-{language}-{size['width']}")

    # "Search this biobank" goes back to the search with the biobank chosen.
    page.locator("#search-biobank").click()
    page.wait_for_url(re.compile(r"/\?biobank=osaka$"))


def test_biobank_page_of_a_never_synced_and_an_unknown_biobank(
    web_network: WebNetwork, tabs: Tabs
) -> None:
    page = tabs("ja-JP").page
    page.goto(web_network.url + "/biobank/nagoya")
    ready(page)
    # nagoya's only sync failed: nothing to search, and the page says so.
    badge = page.locator("#freshness .badge")
    assert badge.get_attribute("data-status") == "NEVER"
    assert badge.inner_text() == JA["freshness.NEVER"]
    assert page.locator("#biobank-status").inner_text() == JA["biobank.summary.none"]
    assert page.locator('#freshness [data-field="last-attempt"] .warn').is_visible()
    response = page.goto(web_network.url + "/biobank/atlantis")
    assert response is not None and response.status == 404
    page.wait_for_selector("body[data-state=failed]")
    assert page.locator("h1").inner_text() == JA["biobank.notfound.heading"]
    assert "atlantis" in page.locator("#biobank-error").inner_text()


def test_country_facet_names_countries_and_filters(web_network: WebNetwork, tabs: Tabs) -> None:
    page = tabs("ja-JP").page
    page.goto(web_network.url + "/?disease=C50")
    settle(page)
    bucket = page.locator('button[data-facet="country"][data-key="JP"]')
    assert "日本" in bucket.inner_text()
    mark = page.locator("body").get_attribute("data-rendered")
    bucket.click()
    settle(page, since=mark)
    assert "biobank_country=JP" in page.url
    assert (
        page.locator("#filter-list .chip")
        .last.inner_text()
        .startswith(f"{JA['facets.country']}: 日本")
    )


# --- the request cart and submitting -------------------------------------------------------


@pytest.mark.parametrize(("locale", "messages", "size"), VIEWS, ids=IDS)
def test_cart_preview_and_submit(
    web_network: WebNetwork,
    tabs: Tabs,
    locale: str,
    messages: dict[str, str],
    size: dict[str, int],
) -> None:
    page = tabs(locale, **size).page
    language = locale[:2]
    search = "/?disease=C50&purpose=DISEASE&purpose_disease=C50"
    page.goto(web_network.url + search)
    settle(page)
    sign_in(page, web_network.researcher_key)
    settle(page)
    for biobank in ("osaka", "kyoto"):
        toggle = page.locator(f'#biobank-results [data-cart="{biobank}"]')
        assert toggle.get_attribute("aria-pressed") == "false"
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        assert toggle.inner_text() == messages["cart.in"]
    assert page.locator("#cart-count").inner_text() == "2"
    assert page.locator("#cart-status").inner_text() != ""
    if size is PHONE:
        check_phone(page, [".cart-toggle", ".brand nav a"])

    page.locator('nav a[href="/request"]').click()
    page.wait_for_url("**/request")
    page.wait_for_selector("#request-check-table")
    assert page.locator("#request-biobanks > li").count() == 2
    # The purpose comes from the search; the consent check is the server's, per biobank.
    assert page.locator("#request-kind").input_value() == "DISEASE"
    purpose = {
        "kind": "DISEASE",
        "diseases": ["C50"],
        "commercial": False,
        "forProfit": False,
        "ethicsApproval": False,
        "genetic": False,
    }
    preview = api(
        web_network,
        PREVIEW,
        {"q": {"diseases": ["C50"]}, "p": purpose, "b": ["osaka", "kyoto"], "l": language},
        key=web_network.researcher_key,
        language=language,
    )["previewAccessRequest"]
    assert preview["nothingPermits"] is False
    assert page.locator("#request-question").inner_text() == preview["question"]
    assert page.locator("#request-warning").is_hidden()
    assert page.locator("#request-acknowledge-row").is_hidden()  # nothing to confirm
    for check in preview["checks"]:
        row = page.locator(f'#request-check-table tr[data-biobank="{check["biobank"]["id"]}"]')
        check_cell(row.locator('td[data-field="samples"]'), check["samples"], messages, "")
        for field, outcome in (
            ("permitted", "PERMITTED"),
            ("conditional", "CONDITIONAL"),
            ("notPermitted", "NOT_PERMITTED"),
        ):
            check_cell(
                row.locator(f'td[data-field="consent-{outcome}"]'),
                check[field]["samples"],
                messages,
                "",
            )

    # Sending without a title says so at the field and goes there.
    page.locator("#request-submit").click()
    expect(page.locator("#request-title")).to_be_focused()
    assert page.locator("#request-title").get_attribute("aria-invalid") == "true"
    assert (
        page.locator("#request-title-problem").inner_text()
        == messages["request.projectTitle.missing"]
    )
    title = f"Breast cancer plasma study {language} {size['width']}"
    page.fill("#request-title", title)
    expect(page.locator("#request-title-problem")).to_be_hidden()
    page.fill("#request-description", "Proteomics of plasma from breast cancer patients.")
    if size is PHONE:
        check_phone(
            page,
            ["#request-submit", "#request-preview", "#request-kind", "#request-biobanks button"],
        )
    screenshot(page, f"request-{language}-{size['width']}")
    page.locator("#request-submit").click()
    page.wait_for_url(re.compile(r"/requests\?sent="))
    ready(page)
    sent = re.search(r"sent=([^&#]+)", page.url)
    assert sent is not None
    article = page.locator(f'article[data-request="{sent.group(1)}"]')
    assert article.locator("h2").inner_text() == title
    assert article.locator(".part").count() == 2
    for part in ("osaka", "kyoto"):
        state = article.locator(f'.part[data-biobank="{part}"] .badge')
        assert state.get_attribute("data-state") == "SUBMITTED"
        assert state.inner_text() == messages["part.state.SUBMITTED"]
    assert page.locator("#cart-count").is_hidden()  # the cart is empty once sent
    stored = api(web_network, REQUEST, {"id": sent.group(1)}, key=web_network.researcher_key)
    assert stored["accessRequest"]["title"] == title
    assert sorted(p["biobank"]["id"] for p in stored["accessRequest"]["parts"]) == [
        "kyoto",
        "osaka",
    ]


@pytest.mark.parametrize(("locale", "messages"), [("en-US", EN), ("ja-JP", JA)])
def test_a_purpose_nothing_permits_warns_before_sending(
    web_network: WebNetwork, tabs: Tabs, locale: str, messages: dict[str, str]
) -> None:
    # osaka's only I10 donor consented to ancestry research only (POA): a disease study
    # of I10 is permitted by no one there.
    purpose = {
        "kind": "DISEASE",
        "diseases": ["I10"],
        "commercial": False,
        "forProfit": False,
        "ethicsApproval": False,
        "genetic": False,
    }
    language = locale[:2]
    preview = api(
        web_network,
        PREVIEW,
        {"q": {"diseases": ["I10"]}, "p": purpose, "b": ["osaka"], "l": language},
        key=web_network.researcher_key,
        language=language,
    )["previewAccessRequest"]
    assert preview["nothingPermits"] is True
    page = tabs(locale).page
    page.goto(web_network.url + "/?disease=I10&purpose=DISEASE&purpose_disease=I10")
    settle(page)
    sign_in(page, web_network.researcher_key)
    settle(page)
    page.locator('#biobank-results [data-cart="osaka"]').click()
    page.goto(web_network.url + "/request")
    page.wait_for_selector("#request-check-table")
    warning = page.locator("#request-warning")
    expect(warning).to_be_visible()
    assert warning.get_attribute("role") == "alert"
    assert warning.inner_text() == preview["warning"]
    page.fill("#request-title", "Hypertension")
    page.fill("#request-description", "Blood pressure study.")
    page.locator("#request-submit").click()
    # Not sent until the researcher confirms.
    expect(page.locator("#request-acknowledge")).to_be_focused()
    assert page.locator("#request-status").inner_text() == messages["request.acknowledge.needed"]
    assert "/request" in page.url and "sent=" not in page.url
    screenshot(page, f"request-{language}-warning")
    page.locator("#request-acknowledge").check()
    page.locator("#request-submit").click()
    page.wait_for_url(re.compile(r"/requests\?sent="))


# --- after sending: the researcher's view and the biobank admin's queue ---------------------


def _submit(net: WebNetwork, title: str) -> str:
    purpose = {
        "kind": "DISEASE",
        "diseases": ["C50"],
        "commercial": False,
        "forProfit": False,
        "ethicsApproval": False,
        "genetic": False,
    }
    data = api(
        net,
        SUBMIT,
        {
            "input": {
                "query": {"diseases": ["C50"]},
                "purpose": purpose,
                "biobanks": ["osaka", "kyoto"],
                "title": title,
                "description": "Plasma proteomics.",
                "language": "en",
            }
        },
        key=net.researcher_key,
    )
    request_id: str = data["submitAccessRequest"]["id"]
    return request_id


def _part(page: Any, request_id: str, biobank: str) -> Any:
    return page.locator(f'article[data-request="{request_id}"] .part[data-biobank="{biobank}"]')


def _state(net: WebNetwork, request_id: str, biobank: str) -> str:
    data = api(net, REQUEST, {"id": request_id}, key=net.researcher_key)
    part = next(p for p in data["accessRequest"]["parts"] if p["biobank"]["id"] == biobank)
    state: str = part["state"]
    return state


@pytest.mark.parametrize(("locale", "messages", "size"), VIEWS, ids=IDS)
def test_request_views_as_biobank_admin_and_researcher(
    web_network: WebNetwork,
    tabs: Tabs,
    locale: str,
    messages: dict[str, str],
    size: dict[str, int],
) -> None:
    language = locale[:2]
    request_id = _submit(web_network, f"Queue {language} {size['width']}")

    admin = tabs(locale, **size).page
    admin.goto(web_network.url + "/admin/requests")
    ready(admin)
    assert admin.locator("#requests-notice").is_visible()  # signed out: says who may see
    sign_in(admin, web_network.admin_key)
    part = _part(admin, request_id, "osaka")
    expect(part).to_be_visible()
    # osaka's admin sees osaka's part only, never kyoto's.
    assert admin.locator(f'article[data-request="{request_id}"] .part').count() == 1
    assert _part(admin, request_id, "kyoto").count() == 0
    part.locator('button[data-move="UNDER_REVIEW"]').click()
    expect(part.locator(".badge")).to_have_attribute("data-state", "UNDER_REVIEW")
    part = _part(admin, request_id, "osaka")
    expect(part.locator("h3")).to_be_focused()
    assert part.locator(".badge").inner_text() == messages["part.state.UNDER_REVIEW"]
    # Asking for more information needs a message: said at the field, nothing sent.
    part.locator('button[data-move="MORE_INFO_NEEDED"]').click()
    textarea = part.locator("textarea")
    expect(textarea).to_be_focused()
    assert textarea.get_attribute("aria-invalid") == "true"
    assert _state(web_network, request_id, "osaka") == "UNDER_REVIEW"
    question = "Which ethics committee approved the study?"
    textarea.fill(question)
    part.locator('button[data-move="MORE_INFO_NEEDED"]').click()
    expect(_part(admin, request_id, "osaka").locator(".badge")).to_have_attribute(
        "data-state", "MORE_INFO_NEEDED"
    )
    assert _state(web_network, request_id, "osaka") == "MORE_INFO_NEEDED"
    if size is PHONE:
        check_phone(
            admin,
            [
                f'article[data-request="{request_id}"] .part button',
                "#queue-biobank",
                "#queue-state",
            ],
        )
    screenshot(admin, f"queue-{language}-{size['width']}")

    researcher = tabs(locale, **size).page
    researcher.goto(web_network.url + "/requests")
    ready(researcher)
    sign_in(researcher, web_network.researcher_key)
    osaka = _part(researcher, request_id, "osaka")
    expect(osaka).to_be_visible()
    assert osaka.locator(".badge").get_attribute("data-state") == "MORE_INFO_NEEDED"
    assert osaka.locator(".badge").inner_text() == messages["part.state.MORE_INFO_NEEDED"]
    assert question in osaka.locator(".thread").inner_text()
    kyoto = _part(researcher, request_id, "kyoto")
    assert kyoto.locator(".badge").get_attribute("data-state") == "SUBMITTED"
    # The researcher may answer and send it back for review, or close; never approve.
    moves = osaka.locator("button[data-move]").evaluate_all("els => els.map(e => e.dataset.move)")
    assert "APPROVED" not in moves and "UNDER_REVIEW" in moves
    osaka.locator("textarea").fill("The university hospital's committee, approval 2026-114.")
    osaka.locator('button[data-move="UNDER_REVIEW"]').click()
    expect(_part(researcher, request_id, "osaka").locator(".badge")).to_have_attribute(
        "data-state", "UNDER_REVIEW"
    )
    if size is PHONE:
        check_phone(researcher, [f'article[data-request="{request_id}"] .part button'])
    screenshot(researcher, f"requests-{language}-{size['width']}")

    # Back in the queue: the answer is in the thread, and the admin approves.
    admin.reload()
    ready(admin)
    part = _part(admin, request_id, "osaka")
    expect(part).to_be_visible()
    assert "approval 2026-114" in part.locator(".thread").inner_text()
    part.locator('button[data-move="APPROVED"]').click()
    expect(_part(admin, request_id, "osaka").locator(".badge")).to_have_attribute(
        "data-state", "APPROVED"
    )
    assert _state(web_network, request_id, "osaka") == "APPROVED"
    assert _state(web_network, request_id, "kyoto") == "SUBMITTED"
