"""The generic REST connector: every paging style, field mapping, tombstones, bookmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.rest import RestConnector
from federation.sync.connector import (
    Checkpoint,
    ConfigError,
    IncompleteRead,
    SourceRecord,
    Tombstone,
)
from tests.connectors.sources import fill_rest, rest_options
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import Reply, Request, RestApp, serving


@pytest.mark.parametrize("style", ["page", "offset", "cursor", "link"])
def test_every_paging_style_reads_every_record_once(style: str) -> None:
    app = RestApp(style, size_param="limit" if style == "offset" else "per_page")
    fill_rest(app, donors=4, samples_per_donor=2)
    with serving(app) as server:
        connector = RestConnector(
            "bb", rest_options(server.url, style, **FAST_RETRIES), base_dir="."
        )
        items = list(connector.pull(connector.streams[2], None))
    ids = [i.source_id for i in items if isinstance(i, SourceRecord)]
    assert sorted(ids) == sorted(f"S{n}-{k}" for n in range(4) for k in range(2))
    assert len(ids) == len(set(ids))
    assert isinstance(items[-1], Checkpoint) and items[-1].state["since"].startswith("2026-02-01")
    assert sum(isinstance(i, Checkpoint) for i in items) >= 3  # one per page, and the last


def test_fields_follow_paths_and_values_are_recoded() -> None:
    app = RestApp("cursor")
    fill_rest(app, donors=2)
    with serving(app) as server:
        connector = RestConnector("bb", rest_options(server.url, "cursor"), base_dir=".")
        donor = next(i for i in connector.pull(connector.streams[1], None))
    assert isinstance(donor, SourceRecord)
    assert connector.map(donor) == {
        "biobank_id": "bb",
        "id": "D0",
        "sex": "MALE",
        "diagnoses": ["C50.9"],
    }


def test_a_config_without_an_id_mapping_is_refused() -> None:
    options = rest_options("http://127.0.0.1:1", "page")
    del options["streams"]["samples"]["fields"]["id"]
    with pytest.raises(ConfigError, match=r"fields.*canonical `id`"):
        RestConnector("bb", options, base_dir=".")


def test_soft_deletes_are_tombstones_in_incremental_runs(tmp_path: Path) -> None:
    app = RestApp("offset", size_param="limit")
    fill_rest(app, donors=4)
    with serving(app) as server:
        options = rest_options(server.url, "offset", **FAST_RETRIES)
        network = HttpNetwork(tmp_path, [entry("bb-rest", "rest", options)])
        assert network.sync("bb-rest").indexed == 8
        app.soft_delete("samples", "S1-0")
        app.put(
            "samples", {"id": "S1-1", "donor": {"id": "D1"}, "study": "C1", "material": "SERUM"}
        )
        run = network.sync("bb-rest")
        assert (run.kind, run.deleted, run.indexed) == ("incremental", 1, 1)
        assert network.counts(materials=["SERUM"]) == {"bb-rest": (1, 1)}
        assert "S1-0" not in network.sample_ids()
        connector = RestConnector("bb", options, base_dir=".")
        items = list(connector.pull(connector.streams[2], {"since": "2026-02-01T00:00:00Z"}))
        assert any(isinstance(i, Tombstone) and i.source_id == "S1-0" for i in items)
        network.close()


@pytest.mark.parametrize("style", ["cursor", "link"])
def test_a_read_short_of_the_announced_total_fails_in_every_style(style: str) -> None:
    app = RestApp(style)
    fill_rest(app, donors=4, samples_per_donor=2)
    with serving(app) as server:
        real = server.app

        def last_page_dropped(request: Request) -> Reply:
            # The second page says it is the last (no cursor, no Link): the third is lost.
            reply = real(request)
            if request.query.get("cursor") == "3" or request.query.get("after") == "3":
                body = json.loads(reply.body)
                body["meta"]["next"] = None
                return Reply.json(body)
            return reply

        server.app = last_page_dropped
        connector = RestConnector(
            "bb", rest_options(server.url, style, **FAST_RETRIES), base_dir="."
        )
        with pytest.raises(IncompleteRead, match=r"read 6 records where the source announces 8"):
            list(connector.pull(connector.streams[2], None))
