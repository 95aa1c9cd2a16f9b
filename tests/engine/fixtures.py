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
def engine_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a running engine node shared by the session's engine tests.

    The node in BIOFED_TEST_ENGINE_URL when given (never stopped here); else one this
    session starts on a free port with a state folder of its own, and stops at the end. The
    machine's default port (9250) and state folder are never used: another session's node
    there is neither borrowed nor stopped.
    """
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield given.rstrip("/")
        return
    node = PrivateNode(state_dir=tmp_path_factory.mktemp("search-node-state"))
    try:
        url = node.start()
    except NodeUnavailable as err:
        unavailable(request, err)
        raise
    try:
        yield url
    finally:
        node.stop()
