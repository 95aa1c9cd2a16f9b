"""Whether an answer will still reach the person who asked.

A request runs under a deadline (federation/gateway/limits.py); when it passes, the client
is told TIMEOUT while the search may still be running in a worker thread. Such a search
must not be charged to a privacy budget nor audited as answered: nobody received it. So a
search claims delivery once its backend round is done, before it spends or records
anything, and the request's waiter either honours the claim (waits for the answer) or,
when it gave up first, makes the claim fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class AnswerWindow(Protocol):
    """The time within which an answer still reaches its asker."""

    def claim(self) -> bool:
        """True when the answer will be delivered; False when the asker stopped waiting."""

    def error(self) -> Exception:
        """What the search raises when its claim fails."""


_window: ContextVar[AnswerWindow | None] = ContextVar("biofed_answer_window", default=None)


@contextmanager
def answering_within(window: AnswerWindow) -> Iterator[None]:
    """Searches run inside this block claim delivery from `window`."""
    token = _window.set(window)
    try:
        yield
    finally:
        _window.reset(token)


def claim_delivery() -> None:
    """Raise the window's error when the answer can no longer be delivered."""
    window = _window.get()
    if window is not None and not window.claim():
        raise window.error()
