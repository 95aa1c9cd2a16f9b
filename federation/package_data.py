"""The package's data folders and their mirrors in a source checkout.

The package carries the contracts (`federation/contracts/`) and the default configuration
(`federation/defaults/`), which is what the code reads, installed or not. A checkout keeps
copies at `schema/` (the language-neutral contract, for readers outside Python) and
`config/`; `mismatches` names every file where the two differ (a test fails on any).
"""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass
from pathlib import Path

from federation import CHECKOUT_CONFIG_DIR, CHECKOUT_SCHEMA_DIR, CONFIG_DIR, SCHEMA_DIR


@dataclass(frozen=True)
class Mirror:
    """A package data folder and its copy in a checkout (`names`: only these files)."""

    package: Path
    checkout: Path
    names: tuple[str, ...] | None = None

    def files(self, root: Path) -> set[str]:
        """Relative paths of the mirrored files under `root`."""
        if self.names is not None:
            return {name for name in self.names if (root / name).is_file()}
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


SCHEMA_MIRROR = Mirror(SCHEMA_DIR, CHECKOUT_SCHEMA_DIR)
CONFIG_MIRROR = Mirror(CONFIG_DIR, CHECKOUT_CONFIG_DIR, ("settings.yaml", "demo-profiles.yaml"))
MIRRORS = (SCHEMA_MIRROR, CONFIG_MIRROR)


def mismatches(mirror: Mirror) -> list[str]:
    """Files missing on one side or different between the package and the checkout copy."""
    ours, theirs = mirror.files(mirror.package), mirror.files(mirror.checkout)
    problems = [f"{mirror.checkout / name}: missing" for name in sorted(ours - theirs)]
    problems += [f"{mirror.package / name}: missing" for name in sorted(theirs - ours)]
    for name in sorted(ours & theirs):
        if not filecmp.cmp(mirror.package / name, mirror.checkout / name, shallow=False):
            problems.append(f"{mirror.package / name} and {mirror.checkout / name} differ")
    return problems


def refresh(mirror: Mirror) -> list[str]:
    """Copy the package's files over the checkout's copy; return the relative paths copied."""
    copied = []
    for name in sorted(mirror.files(mirror.package)):
        target = mirror.checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror.package / name, target)
        copied.append(name)
    return copied
