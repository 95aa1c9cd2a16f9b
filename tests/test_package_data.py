"""The package carries its contracts and defaults; the checkout's copies match them."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation import CONFIG_DIR, SCHEMA_DIR
from federation.package_data import MIRRORS, Mirror, mismatches


def test_package_data_is_inside_the_package() -> None:
    import federation

    package = SCHEMA_DIR.parent
    assert package.samefile(federation.__file__.rsplit("/", 1)[0])
    assert (SCHEMA_DIR / "schema.graphql").is_file()
    assert (SCHEMA_DIR / "vocab" / "sex.csv").is_file()
    assert (CONFIG_DIR / "settings.yaml").is_file()


@pytest.mark.parametrize("mirror", MIRRORS, ids=lambda m: m.checkout.name)
def test_checkout_mirror_matches_the_package(mirror: Mirror) -> None:
    problems = mismatches(mirror)
    assert not problems, (
        "the package data and its checkout copy differ (the package is what the code "
        "reads; `biofed schema export` refreshes schema/):\n" + "\n".join(problems)
    )


def test_a_changed_mirror_is_reported(tmp_path: Path) -> None:
    from federation.package_data import refresh

    checkout = tmp_path / "schema"
    mirror = Mirror(SCHEMA_DIR, checkout)
    assert refresh(mirror)
    assert mismatches(mirror) == []
    sex = checkout / "vocab" / "sex.csv"
    sex.write_text(sex.read_text(encoding="utf-8") + "EXTRA,extra\n", encoding="utf-8")
    (checkout / "stray.json").write_text("{}", encoding="utf-8")
    problems = mismatches(mirror)
    assert any("sex.csv" in p and "differ" in p for p in problems)
    assert any("stray.json" in p and "missing" in p for p in problems)
