"""The session's engine node as a fixture (a plugin: `pytest_plugins = ["tests.engine.fixtures"]`).

Kept apart from `tests/engine/node.py` because a plugin module must not be imported
before pytest loads it, and test modules import the helpers in `node`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engine.node import URL_VARIABLE, NodeUnavailable, PrivateNode, unavailable


@pytest.fixture(scope="session")
def engine_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a running engine node shared by the session's engine tests."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield given.rstrip("/")
        return
    node = PrivateNode(int(os.environ.get("BIOFED_NODE_PORT", "9250")))
    already = node.running()
    try:
        url = node.start()
    except NodeUnavailable as err:
        unavailable(request, err)
        raise
    yield url
    if not already:
        node.stop()
