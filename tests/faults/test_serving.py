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

# Every sample, asked with a filter: the unfiltered landing page is answered from the warm
# answer of the publication (search/warm.py), computed while the data was whole, without
# asking the backend; these tests are about what the backend can search now.
BACKEND_QUESTION = {"biobanks": ["bb-a", "bb-b"]}


def test_an_answer_missing_a_biobanks_shards_is_an_error_naming_it(
    tmp_path: Path, engine_url: str
) -> None:
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b"), engine_url=engine_url)
    try:
        done = network.sync()
        assert done.returncode == 0, done.stderr
        assert network.prefix is not None
        with served(network, tmp_path / "gunicorn.log") as url:
            whole = post_search(url, BACKEND_QUESTION)
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

            partial = post_search(url, BACKEND_QUESTION)
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
            assert post_search(url, BACKEND_QUESTION) == whole
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


def test_an_index_deleted_behind_the_gateway_is_an_error_naming_its_biobank(
    tmp_path: Path, engine_url: str
) -> None:
    """Issue 20, case 1: a biobank whose index (and with it its aliases) vanished is not
    left out of answers in silence; an empty generation is not mistaken for a lost one."""
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b", "bb-c"), engine_url=engine_url)
    try:
        # bb-c publishes a generation without samples (its first run: nothing to shrink).
        network.banks["bb-c"].samples.clear()
        network.write()
        done = network.sync()
        assert done.returncode == 0, done.stderr
        with served(network, tmp_path / "gunicorn.log") as url:
            whole = post_search(url)
            assert "errors" not in whole, whole
            assert whole["data"]["search"]["samples"]["value"] == 24
            with network.runtime() as runtime:
                assert isinstance(runtime.backend, EngineBackend)
                (index,) = runtime.backend.live_indices("bb-b")
            engine_request(engine_url, "DELETE", f"/{index}")

            for query in ({}, {"sexes": ["FEMALE"]}, {"biobanks": ["bb-a"]}):
                partial = post_search(url, query)
                assert (partial.get("data") or {}).get("search") is None, partial
                error = partial["errors"][0]
                assert error["extensions"]["code"] == "BACKEND_UNAVAILABLE", error
                assert error["message"].endswith("(not searchable now: bb-b)"), error
            logged = (tmp_path / "gunicorn.log").read_text()
            assert "does not hold: bb-b (resync them" in logged

            resynced = network.sync("bb-b")
            assert resynced.returncode == 0, resynced.stderr
            assert post_search(url) == whole
    finally:
        network.close()


def test_a_generation_gone_from_the_embedded_store_is_an_error_naming_its_biobank(
    tmp_path: Path,
) -> None:
    network = FaultNetwork(tmp_path, ("bb-a", "bb-b"))
    assert network.sync().returncode == 0
    manifest_path = network.settings.index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    with served(network, tmp_path / "gunicorn.log") as url:
        whole = post_search(url, BACKEND_QUESTION)
        assert whole["data"]["search"]["samples"]["value"] == 24
        # The manifest loses bb-b's generation (restored from an old backup, say).
        shrunk = {**manifest, "biobanks": {"bb-a": manifest["biobanks"]["bb-a"]}}
        manifest_path.write_text(json.dumps(shrunk))
        partial = post_search(url, BACKEND_QUESTION)
        assert (partial.get("data") or {}).get("search") is None, partial
        assert partial["errors"][0]["message"].endswith("(not searchable now: bb-b)")
        # The landing page too: its kept warm answer no longer stands in (search/warm.py).
        landing = post_search(url)
        assert (landing.get("data") or {}).get("search") is None, landing
        assert landing["errors"][0]["message"].endswith("(not searchable now: bb-b)")
        manifest_path.write_text(json.dumps(manifest))
        assert post_search(url, BACKEND_QUESTION) == whole
    # A server started while bb-b's generation file is gone answers nothing rather than
    # answering without bb-b.
    generation = manifest["biobanks"]["bb-b"]["generation"]
    (network.settings.index_dir / "generations" / "bb-b" / f"{generation}.parquet").unlink()
    with served(network, tmp_path / "gunicorn2.log") as url:
        refused = post_search(url, BACKEND_QUESTION)
        assert (refused.get("data") or {}).get("search") is None, refused
        assert refused["errors"][0]["extensions"]["code"] == "BACKEND_UNAVAILABLE"


def test_skipped_shards_are_searched_shards() -> None:
    # Shards the engine skipped (no document could match) count among the successful ones.
    response = {"timed_out": False, "_shards": {"total": 6, "successful": 6, "skipped": 4}}
    assert whole_response(response) == response
