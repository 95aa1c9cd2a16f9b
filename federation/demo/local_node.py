"""The local search engine node the demo runs on when no `engine_urls` is configured.

OpenSearch comes from `scripts/search-node`, Elasticsearch 8 from `scripts/es-node`; both
are assembled from Maven Central on first use and run without Docker
(docs/search-node.md). Production runs the official distributions (docker-compose.yml).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from federation import PROJECT_ROOT
from federation.errors import FederationError


@dataclass(frozen=True)
class LocalNode:
    """How to start one engine's local node."""

    product: str  # for messages
    script: str  # under scripts/

    @property
    def command(self) -> str:
        return f"scripts/{self.script}"


LOCAL_NODES = {
    "opensearch": LocalNode("OpenSearch", "search-node"),
    "elasticsearch": LocalNode("Elasticsearch", "es-node"),
}


class LocalNodeFailed(FederationError, RuntimeError):
    """The local node's script could not start it; the message carries its output."""

    code = "LOCAL_NODE_FAILED"


def start_local_node(backend: str) -> str:
    """Start (or find already running) the local node for `backend`; return its URL."""
    try:
        node = LOCAL_NODES[backend]
    except KeyError:
        raise ValueError(
            f"backend: {backend!r} has no local node (one of {sorted(LOCAL_NODES)})"
        ) from None
    script = PROJECT_ROOT / "scripts" / node.script
    if not script.exists():
        raise LocalNodeFailed(
            f"no {script}: the local {node.product} node is started by {node.command}, which "
            "only a source checkout has; with an installed package, run a node yourself and "
            "set engine_urls (BIOFED_ENGINE_URLS)"
        )
    done = subprocess.run([str(script), "start"], capture_output=True, text=True)
    if done.returncode != 0:
        raise LocalNodeFailed(f"the local {node.product} node did not start:\n{done.stderr}")
    return done.stdout.strip()
