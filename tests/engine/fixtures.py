"""The session's engine nodes as fixtures (a plugin: `pytest_plugins = ["tests.engine.fixtures"]`).

Kept apart from `tests/engine/node.py` because a plugin module must not be imported
before pytest loads it, and test modules import the helpers in `node`.

`engine_node` is parametrised over both engines, so every test that takes it (or a
fixture built on it) runs on OpenSearch and on Elasticsearch; `engine_nodes.get(engine)`
gives one engine's node to a test about that engine only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.node import ENGINES, OPENSEARCH, Engine, RunningNode, SessionNodes


@pytest.fixture(scope="session")
def engine_nodes() -> Iterator[SessionNodes]:
    """The session's nodes, one per engine, started on demand."""
    nodes = SessionNodes()
    yield nodes
    nodes.stop_started()


@pytest.fixture(scope="session", params=ENGINES, ids=str)
def engine_node(request: pytest.FixtureRequest, engine_nodes: SessionNodes) -> RunningNode:
    """A running node of each engine in turn, shared by the session's engine tests."""
    engine: Engine = request.param
    return engine_nodes.get(request, engine)


@pytest.fixture(scope="session")
def engine_url(request: pytest.FixtureRequest, engine_nodes: SessionNodes) -> str:
    """The OpenSearch node's URL, for tests about faults around one engine (tests/faults)."""
    return engine_nodes.get(request, OPENSEARCH).url
