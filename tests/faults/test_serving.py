"""The gateway under gunicorn never passes an incomplete answer as complete, and `/readyz`
is ready only when searches can be answered correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.search.engine import EngineBackend
from federation.search.engine.client import PartialAnswer
from federation.search.engine.client import _whole as whole_response
from tests.engine.node import engine_request, indices
from tests.faults.harness import FaultNetwork, post_search, probe, served

pytest_plugins = ["tests.engine.fixtures"]


def test_an_answer_missing_a_biobanks_shards_is_an_error_naming_it(
    tmp_path: Path, engine_url: str
) -> None:
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b"), engine_url=engine_url)
    try:
        done = network.sync()
        assert done.returncode == 0, done.stderr
        assert network.prefix is not None
        with served(network, tmp_path / "gunicorn.log") as url:
            whole = post_search(url)
            assert "errors" not in whole, whole
            assert whole["data"]["search"]["samples"]["value"] == 24
            assert probe(url)[0] == 200

            # bb-b's index as a node recovering after a restart shows it: in the cluster
            # state, behind its aliases, with shards not started. The node then answers
            # `_shards: total 3, successful 1, failed 0` (seen on this node with curl), or a
            # 503 when partial results are refused, as the backend asks.
            with network.runtime() as runtime:
                assert isinstance(runtime.backend, EngineBackend)
                (index,) = runtime.backend.live_indices("bb-b")
            mapping = engine_request(engine_url, "GET", f"/{index}/_mapping")[index]["mappings"]
            aliases = sorted(indices(engine_url, network.prefix)[index])
            engine_request(engine_url, "DELETE", f"/{index}")
            body = {
                "settings": {
                    "number_of_shards": 2,
                    "number_of_replicas": 0,
                    "index.routing.allocation.require._name": "no-such-node",
                },
                "mappings": mapping,
                "aliases": {alias: {} for alias in aliases},
            }
            engine_request(engine_url, "PUT", f"/{index}?wait_for_active_shards=0", body)

            partial = post_search(url)
            assert (partial.get("data") or {}).get("search") is None, partial
            error = partial["errors"][0]
            assert error["extensions"]["code"] == "ENGINE_UNAVAILABLE", error
            assert error["message"].endswith("try again shortly (not searchable now: bb-b)")
            logged = (tmp_path / "gunicorn.log").read_text()
            assert "an answer now would be incomplete" in logged
            status, ready = probe(url)
            assert status == 503 and "bb-b: its index has shards not started" in ready["reason"]

            # A node restarted on empty data: every index gone. Searches would say 0.
            for name in indices(engine_url, network.prefix):
                engine_request(engine_url, "DELETE", f"/{name}")
            status, ready = probe(url)
            assert status == 503, ready
            assert "missing from the search backend: bb-a, bb-b" in ready["reason"]

            resynced = network.sync()
            assert resynced.returncode == 0, resynced.stderr
            assert probe(url)[0] == 200
            assert post_search(url) == whole
    finally:
        network.close()


def test_not_ready_when_a_generation_file_is_gone(tmp_path: Path) -> None:
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b"))
    assert network.sync().returncode == 0
    with served(network, tmp_path / "gunicorn.log") as url:
        assert probe(url)[0] == 200
        manifest = json.loads((network.settings.index_dir / "manifest.json").read_text())
        generation = manifest["biobanks"]["bb-b"]["generation"]
        path = network.settings.index_dir / "generations" / "bb-b" / f"{generation}.parquet"
        path.unlink()
        status, ready = probe(url)
        assert status == 503
        assert f"bb-b: generation file {path} unreadable" in ready["reason"]


def test_shards_neither_successful_nor_failed_make_an_answer_partial() -> None:
    # The response the issue saw from a recovering node: no failure, two shards missing.
    response = {"timed_out": False, "_shards": {"total": 6, "successful": 4, "failed": 0}}
    with pytest.raises(PartialAnswer, match=r"answered from 4 of 6 shards \(0 failed\)"):
        whole_response(response)
