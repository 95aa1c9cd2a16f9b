"""The web UI shows collection-level biobanks beside sample-level ones, in real Chromium
against the app under gunicorn: declared counts carry their own marker, which says why, in
the table, the facets and the summary, and stay out of the total of counted samples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.search.test_declared import synced
from tests.support.server import graphql, gunicorn
from tests.web.conftest import ARTIFACTS, catalogue, screenshot
from tests.web.test_browser import SEARCH, Tabs, check_cell, settle, shown

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def declared_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("declared-web")
    synced(root, None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with gunicorn(root / "data", root / "network.yaml", ARTIFACTS / "declared-server.log") as url:
        yield url


DECLARED = """query($q: SampleQuery!) { search(query: $q) {
  declared { donors { value precision reason exists } samples { value precision reason exists } }
  facets(names: ["material_type"]) {
    buckets { key declared { samples { value precision reason exists } } }
  }
} }"""


def answer(url: str, query: dict[str, Any], language: str) -> tuple[Any, Any]:
    headers = {"Accept-Language": language}
    full = graphql(url, SEARCH, {"q": query}, headers)
    declared = graphql(url, DECLARED, {"q": query}, headers)
    assert "errors" not in full and "errors" not in declared, (full, declared)
    return full["data"]["search"], declared["data"]["search"]


@pytest.mark.parametrize("locale", ["en-US", "ja-JP"])
def test_declared_counts_are_marked(declared_url: str, tabs: Tabs, locale: str) -> None:
    language = locale[:2]
    messages = catalogue(language)
    page = tabs(locale).page
    page.goto(declared_url + "/?disease=C50&material=PLASMA")
    settle(page)
    search, declared = answer(
        declared_url, {"diseases": ["C50"], "materials": ["PLASMA"]}, language
    )
    table = page.locator("#biobank-results")
    rows = {row["biobank"]["id"]: row for row in search["byBiobank"]}
    assert rows["de-bcb"]["samples"]["precision"] == "DECLARED"
    for biobank_id, row in rows.items():
        line = table.locator(f'tbody tr[data-biobank="{biobank_id}"]')
        for field in ("donors", "samples"):
            check_cell(
                line.locator(f'td[data-field="{field}"]'),
                row[field],
                messages,
                row["access"]["explanation"],
            )
    # The declared marker: its own sign, and the words say what a declared count is.
    marker = table.locator('tbody tr[data-biobank="de-bcb"] td[data-field="samples"] .marker')
    assert marker.inner_text() == "≤"
    assert messages["precision.DECLARED"] in str(marker.get_attribute("aria-label"))
    # The total counts sample rows only; the declared sum is a line of its own.
    total = table.locator("tfoot tr.total:not(.declared)")
    check_cell(total.locator('td[data-field="samples"]'), search["samples"], messages, "")
    line = table.locator('tfoot tr[data-total="declared"]')
    check_cell(
        line.locator('td[data-field="samples"]'), declared["declared"]["samples"], messages, ""
    )
    assert search["samples"]["value"] < declared["declared"]["samples"]["value"]
    # The PLASMA bucket shows the declared part beside the counted samples, marked.
    bucket = next(b for b in declared["facets"][0]["buckets"] if b["key"] == "PLASMA")
    item = page.locator('.facet[data-facet="material_type"] li:has(button[data-key="PLASMA"])')
    part = item.locator(".bucket-declared")
    assert part.locator(".count-value").inner_text() == shown(
        bucket["declared"]["samples"], messages
    )
    assert part.locator(".marker").inner_text() == "≤"
    summary = page.locator("#summary").inner_text()
    assert shown(declared["declared"]["samples"], messages) in summary
    screenshot(page, f"declared-{language}")
