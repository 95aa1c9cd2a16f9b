"""A small synced network served under gunicorn, and headless Chromium driving the web UI.

The browser is Debian's `chromium` (`/usr/bin/chromium`, installed by `.ci/run`), driven
through Playwright's Python API; Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation import PROJECT_ROOT
from federation.gateway.auth import issue_api_key
from federation.runtime import Runtime
from federation.sync.run import SyncFailed, sync_biobank
from tests.conftest import make_settings
from tests.support.network import TabularBiobank, write_network
from tests.support.server import gunicorn

CHROMIUM = Path(os.environ.get("BIOFED_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "web"
CATALOGUES = PROJECT_ROOT / "federation" / "web" / "static"

# Kyoto releases rounded counts and withholds small ones from anonymous users; Tohoku
# tells them only whether it has matches. Both open up to signed-in (registered) users.
KYOTO_DISCLOSURE = {"anonymous": {"granularity": "count", "min_count": 3, "rounding": 5}}
TOHOKU_DISCLOSURE = {"anonymous": {"granularity": "boolean"}}
# What osaka's page says about it and how to apply (the network file's words).
OSAKA_ABOUT = {
    "description": "Serum, plasma and tissue from patients of the university hospital.",
    "url": "https://biobank.osaka.example.org",
    "contact_email": "biobank@osaka.example.org",
    "access": {
        "url": "https://biobank.osaka.example.org/apply",
        "conditions": "Academic research with ethics approval; samples are shipped frozen.",
        "conditions_ja": "倫理審査の承認を受けた学術研究に限ります。試料は凍結で発送します。",
    },
}


@dataclass(frozen=True)
class WebNetwork:
    """The served network: its URL, and API keys of osaka's admin, a researcher, an operator."""

    url: str
    admin_key: str
    researcher_key: str
    operator_key: str
    root: Path


@dataclass
class Tab:
    """A browser page and the script errors it raised (a page must run without any)."""

    page: Any
    errors: list[str]


def _donors_and_samples(
    biobank: TabularBiobank, plan: list[tuple[str, str, int, str, str]]
) -> None:
    """plan rows: (diagnoses, sex, age at collection, material, consent)."""
    for n, (diagnoses, sex, age, material, consent) in enumerate(plan, start=1):
        donor = f"D{n:03d}"
        biobank.donor(donor, sex=sex, birth_year=2020 - age, diagnoses=diagnoses, consent=consent)
        biobank.sample(f"S{n:03d}", donor, material=material, age_at_collection=age)
        if n % 3 == 0:  # every third donor gave a second sample
            biobank.sample(f"S{n:03d}b", donor, material="DNA", age_at_collection=age)


def build_network(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Write and sync three biobanks (and a broken fourth); return the network file."""
    osaka = TabularBiobank(root, "osaka")
    _donors_and_samples(
        osaka,
        [
            ("C50.9", "FEMALE", 52, "PLASMA", "GRU"),
            ("C50.4", "FEMALE", 47, "SERUM", "DS(C50);NCU"),
            ("C50.9", "FEMALE", 61, "TISSUE_FROZEN", "HMB;COL"),
            ("C50.9;E11.9", "FEMALE", 66, "PLASMA", "GRU;IRB"),
            ("C34.9", "MALE", 71, "PLASMA", "GRU"),
            ("E11.9", "MALE", 58, "SERUM", "HMB"),
            ("I21.9", "MALE", 63, "PLASMA", "GRU"),
            ("C50.1", "FEMALE", 39, "PLASMA", "DS(C50)"),
            ("C18.7", "MALE", 68, "TISSUE_FROZEN", "GRU;NPU"),
            ("E11.9;I10", "FEMALE", 55, "SERUM", "POA"),
            ("C50.9", "FEMALE", 44, "PLASMA", "GRU;COL"),
            ("C16.9", "MALE", 75, "PLASMA", "HMB;IRB"),
        ],
    )
    # A sample the source exports with a material no vocabulary knows: quarantined.
    osaka.sample("S900", "D001", material="BLOODY_MARY")
    kyoto = TabularBiobank(root, "kyoto")
    _donors_and_samples(
        kyoto,
        [
            ("C50.9", "FEMALE", 49, "PLASMA", "GRU"),
            ("C50.9", "FEMALE", 53, "SERUM", "GRU"),
            ("C50.2", "FEMALE", 58, "PLASMA", "HMB"),
            ("C50.9", "FEMALE", 62, "PLASMA", "DS(C50)"),
            ("C50.9", "FEMALE", 41, "DNA", "GRU"),
            ("C50.9", "FEMALE", 57, "PLASMA", "GRU;COL"),
            ("G35", "FEMALE", 33, "SERUM", "GRU"),
            ("G35", "MALE", 36, "PLASMA", "GRU"),
            ("E11.9", "MALE", 64, "SERUM", "HMB"),
        ],
    )
    tohoku = TabularBiobank(root, "tohoku")
    _donors_and_samples(
        tohoku,
        [
            ("E11.9", "MALE", 45, "SERUM", "GRU"),
            ("I10", "FEMALE", 67, "PLASMA", "GRU"),
            ("C50.9", "FEMALE", 59, "PLASMA", "GRU"),
            ("J45.9", "MALE", 28, "SERUM", "GRU"),
        ],
    )
    names = {
        "osaka": ("Osaka University Biobank", "大阪大学バイオバンク", None),
        "kyoto": ("Kyoto Disease Biobank", "京都疾患バイオバンク", KYOTO_DISCLOSURE),
        "tohoku": ("Tohoku Community Cohort", "東北地域住民コホート", TOHOKU_DISCLOSURE),
    }
    broken = {
        "id": "nagoya",
        "name": "Nagoya Hospital Biobank",
        "name_ja": "名古屋病院バイオバンク",
        "country": "JP",
        "connector": {"type": "tabular", "options": {"path": "sources/nagoya-missing"}},
    }
    network = write_network(root, [osaka, kyoto, tohoku], extra=[broken])
    document = yaml.safe_load(network.read_text(encoding="utf-8"))
    for entry in document["biobanks"]:
        if entry["id"] in names:
            name, name_ja, disclosure = names[entry["id"]]
            entry.update(name=name, name_ja=name_ja)
            if disclosure:
                entry["disclosure"] = disclosure
        if entry["id"] == "osaka":
            entry.update(OSAKA_ABOUT)
    network.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "utf-8")

    runtime = Runtime(make_settings(root, network))
    try:
        for source in runtime.network().biobanks:
            try:
                sync_biobank(
                    source, runtime.backend, runtime.state, locks_dir=runtime.settings.locks_dir
                )
            except SyncFailed:
                if source.biobank.id != "nagoya":  # its source is missing: a FAILED run
                    raise
    finally:
        runtime.backend.close()
    return network, document["biobanks"]


@pytest.fixture(scope="session")
def web_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebNetwork]:
    """The network under gunicorn, with an admin of osaka and a registered researcher."""
    root = tmp_path_factory.mktemp("web")
    network, _ = build_network(root)
    admin = issue_api_key("admin@osaka", admin_of=["osaka"])
    researcher = issue_api_key("researcher@example.org")
    operator = issue_api_key("ops@network", operator=True)
    keys = [admin.entry, researcher.entry, operator.entry]
    env = {
        "BIOFED_AUTH": json.dumps({"api_keys": keys}),
        # The browser tests send a few hundred requests in a minute from one address.
        "BIOFED_LIMITS": json.dumps({"rate_limit": {"enabled": False}}),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with gunicorn(root / "data", network, ARTIFACTS / "server.log") as url:
            yield WebNetwork(url, admin.key, researcher.key, operator.key, root)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_tab(browser: Any, locale: str = "en-US", width: int = 1366, height: int = 900) -> Tab:
    """A page in a fresh context (no cookies, no sessionStorage) with the given locale."""
    context = browser.new_context(
        locale=locale, viewport={"width": width, "height": height}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    tab = Tab(page, [])
    page.on("pageerror", lambda error: tab.errors.append(str(error)))

    def console(message: Any) -> None:
        # Chromium logs every 4xx response as a console error; those are expected answers
        # (a refused key is a 401), not script failures.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            tab.errors.append(message.text)

    page.on("console", console)
    return tab


@pytest.fixture
def tabs(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Open tabs in fresh contexts; after the test, close them and check no script failed."""
    opened: list[Tab] = []

    def open_tab(locale: str = "en-US", width: int = 1366, height: int = 900) -> Tab:
        tab = new_tab(browser, locale, width, height)
        opened.append(tab)
        return tab

    yield open_tab
    for tab in opened:
        tab.page.context.close()
    assert [e for tab in opened for e in tab.errors] == []


def catalogue(language: str) -> dict[str, str]:
    messages: dict[str, str] = json.loads(
        (CATALOGUES / f"messages.{language}.json").read_text(encoding="utf-8")
    )
    return messages


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artifact (`test-artifacts/web/<name>.png`)."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
