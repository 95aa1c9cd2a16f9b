"""The web UI in a real headless Chromium against the app under gunicorn.

Every count the page shows is checked against the GraphQL answer to the same query, asked
directly over HTTP. Screenshots land in `test-artifacts/web/`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.server import graphql, gunicorn
from tests.web.conftest import ARTIFACTS, Tab, WebNetwork, catalogue, screenshot

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api").expect

COUNT = "value precision reason exists"
SEARCH = f"""
query($q: SampleQuery!, $p: ResearchPurpose) {{
  search(query: $q, purpose: $p) {{
    donors {{ {COUNT} }}
    samples {{ {COUNT} }}
    byBiobank {{
      biobank {{ id }}
      donors {{ {COUNT} }}
      samples {{ {COUNT} }}
      access {{ explanation }}
      consent {{ outcome donors {{ {COUNT} }} samples {{ {COUNT} }} }}
    }}
    facets {{ name buckets {{ key samples {{ {COUNT} }} }} }}
    consent {{ outcome donors {{ {COUNT} }} samples {{ {COUNT} }} }}
    textDiseases {{ code }}
  }}
}}"""
RUNS = """{ syncRuns(first: 50) { id biobankId outcome read indexed rejected error } }"""
EN, JA = catalogue("en"), catalogue("ja")
Tabs = Callable[..., Tab]


def api_search(
    net: WebNetwork,
    query: Mapping[str, Any],
    purpose: Mapping[str, Any] | None = None,
    key: str | None = None,
    language: str = "en",
) -> dict[str, Any]:
    headers = {"Accept-Language": language}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = graphql(net.url, SEARCH, {"q": dict(query), "p": purpose}, headers)
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["search"]
    return answer


def shown(count: Mapping[str, Any], messages: Mapping[str, str]) -> str:
    """What the page shows for a released count."""
    if count["value"] is not None:
        return f"{count['value']:,}"
    if count["precision"] == "BOOLEAN":
        return messages["count.some" if count["exists"] else "count.none"]
    if count["precision"] == "BELOW_THRESHOLD":
        return messages["count.few"]
    return messages["count.hidden"]


def rendered(page: Any) -> str:
    """How many times the page has rendered an answer (to wait for the next one)."""
    return str(page.locator("body").get_attribute("data-rendered") or "0")


def settle(page: Any, since: str | None = None) -> None:
    """Wait until the page has rendered its latest request (and a render after `since`)."""
    if since is not None:
        expect(page.locator("body")).not_to_have_attribute("data-rendered", since)
    page.wait_for_selector("body[data-state=ready]")


def check_cell(cell: Any, count: Mapping[str, Any], messages: Mapping[str, str], rule: str) -> None:
    assert cell.locator(".count-value").inner_text() == shown(count, messages)
    marker = cell.locator(".marker")
    if count["precision"] == "EXACT":
        assert marker.count() == 0
        return
    # Every count that is not the true number is marked, and says why.
    assert marker.count() == 1
    label = marker.get_attribute("aria-label")
    assert label == marker.get_attribute("data-tip")
    assert messages[f"precision.{count['precision']}"] in label
    if count["reason"]:
        assert count["reason"] in label
    if rule:
        assert rule in label


def check_table(page: Any, answer: Mapping[str, Any], messages: Mapping[str, str]) -> None:
    """The per-biobank table shows exactly the API's released counts, markers included."""
    table = page.locator("#biobank-results")
    assert table.locator("tbody tr").count() == len(answer["byBiobank"])
    for row in answer["byBiobank"]:
        line = table.locator(f'tbody tr[data-biobank="{row["biobank"]["id"]}"]')
        for field in ("donors", "samples"):
            check_cell(
                line.locator(f'td[data-field="{field}"]'),
                row[field],
                messages,
                row["access"]["explanation"],
            )
        for split in row["consent"] or ():
            cell = line.locator(f'td[data-field="consent-{split["outcome"]}"]')
            check_cell(cell, split["samples"], messages, row["access"]["explanation"])
    total = table.locator("tfoot tr")
    for field in ("donors", "samples"):
        check_cell(total.locator(f'td[data-field="{field}"]'), answer[field], messages, "")


def check_facet(
    page: Any, answer: Mapping[str, Any], name: str, messages: Mapping[str, str]
) -> None:
    facet = next(f for f in answer["facets"] if f["name"] == name)
    section = page.locator(f'.facet[data-facet="{name}"]')
    for bucket in facet["buckets"][:8]:
        item = section.locator(f'li:has(button[data-key="{bucket["key"]}"])')
        assert item.locator(".bucket-count .count-value").inner_text() == shown(
            bucket["samples"], messages
        )


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def suggest(page: Any, text: str) -> list[str]:
    """Type into the disease box; the codes it suggests, best first."""
    page.fill("#disease-input", text)
    page.wait_for_selector(f'#disease-options[data-query="{text}"] [role=option]')
    codes: list[str] = page.locator("#disease-options .option .code").all_inner_texts()
    return codes


# --- researchers' search ---------------------------------------------------------------


def test_search_by_japanese_disease_name(web_network: WebNetwork, tabs: Tabs) -> None:
    page = tabs("ja-JP").page
    page.goto(web_network.url + "/")
    settle(page)
    # The browser's language decides: a Japanese browser gets the Japanese page.
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("#biobanks-heading").inner_text() == JA["biobanks.heading"]

    # Kana reading, kanji with kana, English and the code all find breast cancer (C50).
    assert suggest(page, "にゅうがん")[0] == "C50"
    assert suggest(page, "乳がん")[0] == "C50"
    assert "C50" in suggest(page, "breast")
    assert suggest(page, "C50")[0] == "C50"

    codes = suggest(page, "にゅうがん")
    combobox = page.locator("#disease-input")
    assert combobox.get_attribute("role") == "combobox"
    assert combobox.get_attribute("aria-expanded") == "true"
    first = page.locator("#disease-options .option").first
    # The suggestion is named in Japanese and shows its place in the hierarchy.
    assert "乳癌" in first.locator(".name").inner_text()
    assert "II 新生物" in first.locator(".option-path").inner_text()
    page.keyboard.press("ArrowDown")
    assert combobox.get_attribute("aria-activedescendant") == "disease-option-0"
    assert first.get_attribute("aria-selected") == "true"
    screenshot(page, "search-ja-autocomplete", full_page=False)
    mark = rendered(page)
    page.keyboard.press("Enter")
    settle(page, since=mark)

    assert codes[0] == "C50"
    assert query_of(page.url)["disease"] == ["C50"]
    # Reasons and rules are written by the server in the page's language (issue 19).
    answer = api_search(web_network, {"diseases": ["C50"]}, language="ja")
    check_table(page, answer, JA)
    assert not [r for r in answer["byBiobank"] if re.search("[A-Za-z]", r["access"]["explanation"])]
    check_facet(page, answer, "material_type", JA)
    assert page.locator("#filter-list .chip").first.inner_text().startswith("疾患: C50 乳房の悪性")
    # The live region states the result in Japanese.
    summary = page.locator("#summary")
    assert summary.get_attribute("aria-live") == "polite"
    assert "見つかりました" in summary.inner_text()
    screenshot(page, "search-ja-results")


@pytest.mark.parametrize(
    ("locale", "text", "messages"), [("en-US", "breast cancer", EN), ("ja-JP", "乳がん", JA)]
)
def test_free_text_shows_the_codes_it_became_each_removable(
    web_network: WebNetwork, tabs: Tabs, locale: str, text: str, messages: Mapping[str, str]
) -> None:
    page = tabs(locale).page
    page.goto(web_network.url + "/")
    settle(page)
    page.fill("#disease-input", text)
    mark = rendered(page)
    page.keyboard.press("Enter")
    settle(page, since=mark)
    assert query_of(page.url)["text"] == [text]
    became = page.locator("#filter-list .chip.text-disease")
    # The words became breast cancer (C50) and nothing else, named in the page's language.
    assert became.count() == 1
    label = became.first.inner_text()
    assert label.startswith(f"{messages['filters.text.became']}: C50 "), label
    answer = api_search(web_network, {"text": text}, language=locale[:2])
    assert [d["code"] for d in answer["textDiseases"]] == ["C50"]
    check_table(page, answer, messages)
    screenshot(page, f"search-{locale[:2]}-free-text")

    mark = rendered(page)
    became.first.locator(".chip-remove").click()
    settle(page, since=mark)
    assert query_of(page.url)["text_exclude"] == ["C50"]
    assert page.locator("#filter-list .chip.text-disease").count() == 0
    assert page.locator("#summary").inner_text() == messages["summary.none"]


def test_a_facet_refines_the_counts(web_network: WebNetwork, tabs: Tabs) -> None:
    page = tabs("en-US").page
    page.goto(web_network.url + "/?disease=C50")
    settle(page)
    before = api_search(web_network, {"diseases": ["C50"]})
    check_table(page, before, EN)
    check_facet(page, before, "material_type", EN)

    plasma = page.locator('button[data-facet="material_type"][data-key="PLASMA"]')
    assert plasma.get_attribute("aria-pressed") == "false"
    mark = rendered(page)
    plasma.click()
    settle(page, since=mark)
    assert query_of(page.url)["material"] == ["PLASMA"]
    after = api_search(web_network, {"diseases": ["C50"], "materials": ["PLASMA"]})
    check_table(page, after, EN)
    assert after["samples"]["value"] < before["samples"]["value"]
    assert (
        page.locator('button[data-facet="material_type"][data-key="PLASMA"]').get_attribute(
            "aria-pressed"
        )
        == "true"
    )

    # An age bucket refines by age at collection.
    mark = rendered(page)
    page.locator('button[data-facet="age"][data-key="50-59"]').click()
    settle(page, since=mark)
    params = query_of(page.url)
    assert (params["age_min"], params["age_max"]) == (["50"], ["59"])
    check_table(
        page,
        api_search(
            web_network, {"diseases": ["C50"], "materials": ["PLASMA"], "ageMin": 50, "ageMax": 59}
        ),
        EN,
    )
    screenshot(page, "search-en-facets")


def test_language_switch(web_network: WebNetwork, tabs: Tabs) -> None:
    page = tabs("en-US").page
    page.goto(web_network.url + "/?disease=C50")
    settle(page)
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#biobanks-heading").inner_text() == EN["biobanks.heading"]

    mark = rendered(page)
    page.locator('.lang-button[data-lang="ja"]').click()
    settle(page, since=mark)
    labelled = page.evaluate(
        "Array.from(document.querySelectorAll('[data-i18n]'), e => [e.dataset.i18n, e.textContent])"
    )
    assert labelled
    assert [(key, text) for key, text in labelled if text != JA[key]] == []
    assert page.locator('.lang-button[data-lang="ja"]').get_attribute("aria-pressed") == "true"
    assert page.locator("#biobanks-heading").inner_text() == JA["biobanks.heading"]
    assert "見つかりました" in page.locator("#summary").inner_text()
    # Data labels follow too: vocabulary terms and ICD-10 names in Japanese.
    assert "血漿" in page.locator('.facet[data-facet="material_type"]').inner_text()
    assert "新生物" in page.locator('.facet[data-facet="chapter"]').inner_text()
    check_table(page, api_search(web_network, {"diseases": ["C50"]}, language="ja"), JA)
    screenshot(page, "search-language-switched-ja")

    # The choice sticks: the server renders the next page in Japanese.
    page.reload()
    settle(page)
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("#facets-heading .facets-title").inner_text() == JA["facets.heading"]

    page.locator('.lang-button[data-lang="en"]').click()
    page.wait_for_selector("html[lang=en]")
    assert page.locator("#biobanks-heading").inner_text() == EN["biobanks.heading"]


def test_a_shared_url_restores_the_search(web_network: WebNetwork, tabs: Tabs) -> None:
    shared = (
        "/?disease=C50&material=PLASMA&age_min=40&age_max=69&purpose=DISEASE&ethics=1&country=JP"
    )
    page = tabs("en-US").page
    page.goto(web_network.url + shared)
    settle(page)
    query = {"diseases": ["C50"], "materials": ["PLASMA"], "ageMin": 40, "ageMax": 69}
    purpose = {"kind": "DISEASE", "diseases": ["C50"], "ethicsApproval": True, "country": "JP"}
    answer = api_search(web_network, query, purpose)

    chips = page.locator("#filter-list .chip").all_inner_texts()
    assert len(chips) == 3, chips
    assert page.locator("#purpose-kind").input_value() == "DISEASE"
    assert page.locator('#purpose-form input[name="ethicsApproval"]').is_checked()
    assert page.locator("#purpose-country").input_value() == "JP"
    check_table(page, answer, EN)
    for outcome in answer["consent"]:
        card = page.locator(f'.outcome[data-outcome="{outcome["outcome"]}"]')
        assert card.locator(".outcome-count .count-value").inner_text() == shown(
            outcome["samples"], EN
        )
    # Records come with the conditions the donors' consent sets (osaka D011: GRU;COL).
    records = page.locator("#records")
    assert EN["obligation.COL"] in records.inner_text()
    assert EN["outcome.CONDITIONAL"] in records.inner_text()
    screenshot(page, "search-shared-url-purpose")

    # Removing a filter is a new history entry; Back restores the shared search.
    mark = rendered(page)
    page.get_by_role("button", name=re.compile("Remove filter Material type")).click()
    settle(page, since=mark)
    assert "material" not in query_of(page.url)
    mark = rendered(page)
    page.go_back()
    settle(page, since=mark)
    assert query_of(page.url)["material"] == ["PLASMA"]
    check_table(page, answer, EN)


AUDIT = """query($after: String) {
  auditLog(first: 100, after: $after, subject: "researcher@example.org") {
    nodes { id recordsReturned recordCount }
    pageInfo { endCursor hasNextPage }
  }
}"""


def researcher_record_searches(net: WebNetwork) -> dict[str, int]:
    """The researcher's audited searches that returned records: entry id -> record count."""
    found: dict[str, int] = {}
    after = None
    while True:
        body = graphql(
            net.url, AUDIT, {"after": after}, {"Authorization": f"Bearer {net.operator_key}"}
        )
        assert "errors" not in body, body
        log = body["data"]["auditLog"]
        found.update({e["id"]: e["recordCount"] for e in log["nodes"] if e["recordsReturned"]})
        if not log["pageInfo"]["hasNextPage"]:
            return found
        after = log["pageInfo"]["endCursor"]


def test_records_paging_and_csv_export(web_network: WebNetwork, tabs: Tabs) -> None:
    page = tabs("en-US").page
    page.goto(web_network.url + "/")
    settle(page)
    # Anonymous: kyoto and tohoku do not show records, and the page says so.
    assert "Kyoto Disease Biobank" in page.locator("#records-note").inner_text()

    page.locator("#signin summary").click()
    page.fill("#credential", web_network.researcher_key)
    mark = rendered(page)
    page.locator("#signin-form button[type=submit]").click()
    settle(page, since=mark)
    assert "researcher@example.org" in page.locator("#signin-summary").inner_text()
    answer = api_search(web_network, {}, key=web_network.researcher_key)
    check_table(page, answer, EN)
    total = answer["samples"]["value"]
    assert total > 20
    assert page.locator("#records tbody tr").count() == 20
    first_page = page.locator("#records tbody tr").first.inner_text()
    mark = rendered(page)
    page.locator("#records-next").click()
    settle(page, since=mark)
    assert page.locator("#records tbody tr").count() == total - 20
    assert page.locator("#records-page").inner_text() == f"21–{total} of {total}"
    assert page.locator("#records-prev").is_enabled()

    # The export holds every record the role may see, not the page on screen; each of its
    # pages is an audited search of the signed-in researcher.
    audited_before = researcher_record_searches(web_network)
    with page.expect_download() as download:
        page.locator("#export-records").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))
    assert rows[0][:2] == [EN["records.biobank"], EN["records.sample"]]
    assert len(rows) == 1 + total
    assert len({tuple(row[:2]) for row in rows[1:]}) == total  # no record twice
    expect(page.locator("#records-export-status")).to_have_text(
        EN["records.export.done"].replace("{n}", str(total))
    )
    export_searches = {
        entry: count
        for entry, count in researcher_record_searches(web_network).items()
        if entry not in audited_before
    }
    assert sum(export_searches.values()) == total, export_searches

    with page.expect_download() as download:
        page.locator("#export-biobanks").click()
    table = list(csv.DictReader(io.StringIO(download.value.path().read_text("utf-8-sig"))))
    by_id = {row["id"]: row for row in table if row["id"]}
    for row in answer["byBiobank"]:
        exported = by_id[row["biobank"]["id"]]
        assert exported[EN["biobanks.samples"]] == str(row["samples"]["value"])
        assert exported[f"{EN['biobanks.samples']} precision"] == row["samples"]["precision"]
    mark = rendered(page)
    page.locator("#records-prev").click()
    settle(page, since=mark)
    assert page.locator("#records tbody tr").first.inner_text() == first_page
    screenshot(page, "search-signed-in-records")


def test_markers_explain_inexact_counts_at_tablet_width(
    web_network: WebNetwork, tabs: Tabs
) -> None:
    page = tabs("en-US", width=768, height=1024).page
    page.goto(web_network.url + "/?disease=C50")
    settle(page)
    # Nothing wider than the screen: wide tables scroll inside their panel.
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    check_table(page, api_search(web_network, {"diseases": ["C50"]}), EN)
    # The facets fold into a button on a tablet; it opens them.
    toggle = page.locator("#facets-toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert not page.locator("#facet-list").is_visible()
    toggle.click()
    assert page.locator("#facet-list").is_visible()

    # A keyboard user reaches a marker and reads why the count is not exact.
    marker = page.locator('#biobank-results tr[data-biobank="kyoto"] .marker').first
    marker.focus()
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible()
    assert tooltip.inner_text() == marker.get_attribute("aria-label")
    assert "rounded to the nearest 5" in tooltip.inner_text()
    screenshot(page, "search-tablet-tooltip", full_page=False)
    page.keyboard.press("Escape")
    assert not tooltip.is_visible()
    screenshot(page, "search-tablet")


# --- admins ---------------------------------------------------------------------------


def test_admin_sync_history(web_network: WebNetwork, tabs: Tabs) -> None:
    page = tabs("en-US").page
    page.goto(web_network.url + "/admin")
    settle(page)
    # Anonymous: told to sign in, nicely, not shown a raw error.
    assert (
        page.locator("#sync-table .notice")
        .inner_text()
        .startswith(EN["admin.error.UNAUTHENTICATED"])
    )
    start = page.locator("#start-sync")
    mutations = graphql(web_network.url, "{ __schema { mutationType { fields { name } } } }")
    mutation_type = mutations["data"]["__schema"]["mutationType"]
    can_start = bool(mutation_type) and "startSync" in {f["name"] for f in mutation_type["fields"]}
    # Without a biobank chosen (or without the mutation) there is nothing to start.
    assert start.is_disabled()
    help_text = "sync.start.signin" if can_start else "sync.start.unavailable"
    expect(page.locator("#start-sync-help")).to_have_text(EN[help_text])
    screenshot(page, "admin-anonymous")

    # A wrong key is refused and not kept.
    page.locator("#signin summary").click()
    page.fill("#credential", "bfk_0123456789ab_not-a-real-key")
    page.locator("#signin-form button[type=submit]").click()
    expect(page.locator("#signin-status")).to_have_text(EN["auth.rejected"])

    page.fill("#credential", web_network.operator_key)
    mark = rendered(page)
    page.locator("#signin-form button[type=submit]").click()
    settle(page, since=mark)
    runs = graphql(
        web_network.url, RUNS, headers={"Authorization": f"Bearer {web_network.operator_key}"}
    )["data"]["syncRuns"]
    assert page.locator("#sync-runs tbody tr").count() == len(runs) == 4
    # The operator is offered every biobank.
    assert page.locator("#sync-biobank").evaluate("el => el.options.length") == 1 + 4
    for run in runs:
        row = page.locator(f'#sync-runs tr[data-run="{run["id"]}"]')
        for field in ("read", "indexed", "rejected"):
            assert row.locator(f'td[data-field="{field}"]').inner_text() == str(run[field])
        assert row.locator(".badge").inner_text() == EN[f"sync.outcome.{run['outcome']}"]
        assert row.locator(".run-error").inner_text() == (run["error"] or "")
    failed = next(run for run in runs if run["biobankId"] == "nagoya")
    assert failed["outcome"] == "FAILED" and "does not exist" in failed["error"]
    # Operators see sync history but not a biobank's rejected records.
    assert (
        page.locator("#quarantine-table .notice")
        .inner_text()
        .startswith(EN["admin.error.FORBIDDEN"])
    )
    screenshot(page, "admin-sync-history")

    # The biobank's own admin sees its quarantined records, with the reasons.
    page.locator("#signin summary").click()
    mark = rendered(page)
    page.locator("#signout").click()
    settle(page, since=mark)
    page.fill("#credential", web_network.admin_key)
    mark = rendered(page)
    page.locator("#signin-form button[type=submit]").click()
    settle(page, since=mark)
    quarantined = page.locator("#quarantined tbody tr")
    assert quarantined.count() == 1
    assert "BLOODY_MARY" in quarantined.locator(".reason").inner_text()
    assert page.locator("#sync-runs tbody tr").count() == 1  # only osaka's runs
    # An admin of one biobank is offered that biobank only, in every dropdown.
    values = "el => [...el.options].map(o => o.value)"
    assert page.locator("#sync-biobank").evaluate(values) == ["", "osaka"]
    assert page.locator("#quarantine-biobank").evaluate(values) == ["osaka"]
    # No biobank of this network has a schedule: the schedules view says so.
    expect(page.locator("#schedules-table")).to_have_text(EN["schedules.empty"])
    if can_start:
        # The admin asks for a sync of their biobank; the worker queue takes it.
        page.select_option("#sync-biobank", "osaka")
        expect(page.locator("#start-sync-help")).to_have_text(EN["sync.start.ready"])
        start.click()
        expect(page.locator("#start-sync-status")).to_have_text(
            EN["sync.start.done"].replace("{biobank}", "Osaka University Biobank")
        )
        # Queued until a worker takes it (this test server runs none), and watched meanwhile.
        queued = page.locator('#sync-requests tbody tr[data-state="QUEUED"]')
        expect(queued).to_have_count(1)
        assert queued.locator(".badge").inner_text() == EN["syncrequests.state.QUEUED"]
        expect(page.locator("#requests-status")).to_have_text(
            EN["syncrequests.watching"].replace("{n}", "1")
        )
        screenshot(page, "admin-sync-queued")
    page.locator('.lang-button[data-lang="ja"]').click()
    page.wait_for_selector("html[lang=ja]")
    assert page.locator("#sync-heading").inner_text() == JA["sync.heading"]
    assert page.locator("#sync-runs .badge").first.inner_text() == JA["sync.outcome.SUCCEEDED"]
    screenshot(page, "admin-quarantine-ja")


def test_records_sort_by_a_column_across_pages(web_network: WebNetwork, tabs: Tabs) -> None:
    page = tabs("en-US").page
    page.context.add_init_script(
        f"sessionStorage.setItem('biofed.credential', {web_network.researcher_key!r})"
    )
    page.goto(web_network.url + "/")
    settle(page)
    page.wait_for_selector("#signout:not([hidden])", state="attached")
    age = page.locator('#records th button[data-sort="age"]')
    mark = rendered(page)
    age.click()
    settle(page, since=mark)
    header = page.locator("#records th", has=page.locator('button[data-sort="age"]'))
    assert header.get_attribute("aria-sort") == "ascending"
    # Focus stays on the header the reader sorted by.
    assert page.evaluate("document.activeElement.dataset.sort") == "age"
    position = page.locator("#records thead th").all_inner_texts().index(header.inner_text())

    def ages() -> list[int]:
        cells = page.locator(f"#records tbody tr > :nth-child({position + 1})").all_inner_texts()
        return [int(a) for a in cells]

    first = ages()
    mark = rendered(page)
    page.locator("#records-next").click()
    settle(page, since=mark)
    seen = first + ages()
    assert seen == sorted(seen) and len(seen) == int(
        page.locator("#records-page").inner_text().rsplit(" ", 1)[-1]
    )
    # Again: the largest first, from the first page.
    mark = rendered(page)
    page.locator('#records th button[data-sort="age"]').press("Enter")
    settle(page, since=mark)
    assert header.get_attribute("aria-sort") == "descending"
    assert ages()[0] == max(seen)
    assert page.locator("#records-page").inner_text().startswith("1–20")
    screenshot(page, "search-en-records-sorted")


def test_the_full_export_waits_out_the_rate_limit_and_goes_on(
    web_network: WebNetwork, tabs: Tabs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page of the export draws from the caller's rate limit like any search: refused,
    the export waits the time the server gives and asks again, and the file is whole."""
    # A second server on the same data, whose signed-in callers get 1 request per 2 s.
    limits = {"rate_limit": {"enabled": True, "signed_in": {"per_minute": 30, "burst": 6}}}
    monkeypatch.setenv("BIOFED_LIMITS", json.dumps(limits))
    root = web_network.root
    with gunicorn(root / "data", root / "network.yaml", ARTIFACTS / "server-limited.log") as url:
        page = tabs("en-US").page
        page.goto(url + "/")
        settle(page)
        page.locator("#signin summary").click()
        page.fill("#credential", web_network.researcher_key)
        mark = rendered(page)
        page.locator("#signin-form button[type=submit]").click()
        settle(page, since=mark)
        total = page.locator("#records-page").inner_text().rsplit(" ", 1)[-1]
        # Empty the researcher's bucket, as a burst of searches would.
        researcher = {"Authorization": f"Bearer {web_network.researcher_key}"}
        for _ in range(20):
            try:
                graphql(url, "{ me { subject } }", headers=researcher)
            except urllib.error.HTTPError as refused:
                assert refused.code == 429
                break
        else:
            raise AssertionError("the rate limit never answered")
        with page.expect_download(timeout=60_000) as download:
            page.locator("#export-records").click()
            expect(page.locator("#records-export-status")).to_contain_text(
                EN["records.export.waiting"].split("{seconds}")[0].split("; ")[-1]
            )
        text = download.value.path().read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        assert len(rows) == 1 + int(total)
