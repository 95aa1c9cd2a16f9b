"""Progress of a sync on a terminal: one tqdm bar per biobank, or nothing off a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from federation.sync.pipeline import Progress


class ProgressBar:
    """A tqdm bar over records read and indexed, or nothing when not on a terminal."""

    def __init__(self, label: str, show: bool) -> None:
        self._bar: Any = None
        if show:
            from tqdm import tqdm

            self._bar = tqdm(desc=label, unit=" rec", file=sys.stderr, leave=False)

    def update(self, stage: str, n: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(stage, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_bars(show: bool) -> Callable[[str], tuple[Progress | None, Callable[[], None]]]:
    """A `ProgressFor` for `sync_all`: a bar per biobank when `show`, closed when it ends."""

    def progress_for(biobank_id: str) -> tuple[Progress | None, Callable[[], None]]:
        bar = ProgressBar(biobank_id, show)
        return bar.update, bar.close

    return progress_for
