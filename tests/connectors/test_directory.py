"""The BBMRI-ERIC Directory: a biobank's collections from the EMX2 CSV export or GraphQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.sync.run import SyncFailed
from tests.connectors.sources import directory_csv
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import DirectoryApp, Reply, Request, serving

NL_BIOBANK = "bbmri-eric:ID:NL_biobank2"


@pytest.mark.parametrize("api", ["csv", "graphql"])
def test_collections_of_one_biobank_become_its_catalogue(tmp_path: Path, api: str) -> None:
    with serving(DirectoryApp(directory_csv())) as server:
        options = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": NL_BIOBANK,
            "api": api,
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("nl-biobank2", "directory", options)])
        run = network.sync("nl-biobank2")
    assert (run.outcome, run.read, run.indexed, run.rejected) == ("succeeded", 2, 0, 1)
    published = network.runtime.backend.published()["nl-biobank2"]
    (collection,) = published.metadata["collections"]
    assert collection["id"] == "bbmri-eric:ID:NL_biobank2:collection:coll2"
    assert collection["types"] == ["CASE_CONTROL", "QUALITY_CONTROL"]
    assert collection["default_consent"] == [{"code": "GRU"}]
    # The sub-collection's data use is a publication moratorium with no date: no consent.
    (rejected,) = network.runtime.state.quarantine("nl-biobank2")
    assert (rejected.field, rejected.value) == ("data_use", "DUO_0000024")
    # The Directory holds no samples: the counts are what the collection declares.
    assert network.counts() == {"nl-biobank2": (9000, 11000)}
    assert network.runtime.backend.published()["nl-biobank2"].documents == 0
    network.close()


def test_a_withdrawn_collection_leaves_the_catalogue(tmp_path: Path) -> None:
    app = DirectoryApp(directory_csv())
    with serving(app) as server:
        options = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": NL_BIOBANK,
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("nl-biobank2", "directory", options)])
        network.sync("nl-biobank2")
        for row in app.rows:
            row["withdrawn"] = "true"
        network.sync("nl-biobank2")
    assert network.runtime.backend.published()["nl-biobank2"].metadata["collections"] == []
    network.close()


def test_a_mistyped_biobank_id_fails_naming_the_closest_one(tmp_path: Path) -> None:
    with serving(DirectoryApp(directory_csv())) as server:
        options = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": "bbmri-eric:ID:NL_biobank02",
            "api": "csv",
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("nl-biobank2", "directory", options)])
        with pytest.raises(SyncFailed) as failure:
            network.sync("nl-biobank2")
    assert "no collection of 'bbmri-eric:ID:NL_biobank02'" in str(failure.value)
    assert f"did you mean {NL_BIOBANK!r}?" in str(failure.value)
    network.close()


def test_an_export_without_a_biobank_column_fails_naming_its_headers(tmp_path: Path) -> None:
    # `Biobank` (the label an older export used as header) is read as `biobank`; an export
    # with no biobank column at all fails naming its headers.
    app = DirectoryApp(directory_csv())
    app.rows = [{k: v for k, v in row.items() if k != "biobank"} for row in app.rows]
    with serving(app) as server:
        options = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": NL_BIOBANK,
            "api": "csv",
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("nl-biobank2", "directory", options)])
        with pytest.raises(SyncFailed, match="no biobank column"):
            network.sync("nl-biobank2")
    network.close()


def test_an_export_headed_with_labels_is_read(tmp_path: Path) -> None:
    renamed = directory_csv().replace(",biobank,", ",Biobank,", 1)
    with serving(DirectoryApp(renamed)) as server:
        options = {
            "base_url": f"{server.url}/ERIC/directory",
            "biobank": NL_BIOBANK,
            "api": "csv",
            **FAST_RETRIES,
        }
        network = HttpNetwork(tmp_path, [entry("nl-biobank2", "directory", options)])
        run = network.sync("nl-biobank2")
    assert (run.outcome, run.read) == ("succeeded", 2)
    network.close()


def test_graphql_rows_are_checked_against_the_announced_count(tmp_path: Path) -> None:
    app = DirectoryApp(directory_csv())
    with serving(app) as server:
        real = server.app

        def overcounted(request: Request) -> Reply:
            body = json.loads(real(request).body)
            body["data"]["Collections_agg"]["count"] += 1
            return Reply.json(body)

        server.app = overcounted
        options = {"base_url": f"{server.url}/ERIC/directory", "biobank": NL_BIOBANK}
        network = HttpNetwork(tmp_path, [entry("nl-biobank2", "directory", options)])
        with pytest.raises(SyncFailed) as failure:
            network.sync("nl-biobank2")
    rows = len(app.rows)
    assert f"read {rows} records where the source announces {rows + 1} (1 lost)" in str(
        failure.value
    )
    network.close()
