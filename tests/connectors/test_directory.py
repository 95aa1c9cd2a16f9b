"""The BBMRI-ERIC Directory: a biobank's collections from the EMX2 CSV export or GraphQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.connectors.sources import directory_csv
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import DirectoryApp, serving

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
    assert network.counts() == {}  # the Directory holds no samples
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
