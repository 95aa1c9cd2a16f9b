"""The one facet definition: every reader (query model, both backends, service, web page)
takes its facets from `federation.search.facets`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from federation.gateway import create_app
from federation.search.documents import COLUMNS
from federation.search.facets import FACET, FACET_DEFINITIONS, FACETS, age_bucket
from federation.search.query import FACET_CLAUSE, Criteria, SampleQuery
from tests.conftest import make_settings
from tests.support.network import write_network


def test_every_facet_groups_an_index_column_and_refines_a_real_clause() -> None:
    assert FACETS == (
        "material_type",
        "sex",
        "age",
        "chapter",
        "block",
        "biobank",
        "country",
        "collection_type",
    )
    arguments = {name.replace("_", "") for name in SampleQuery.__dataclass_fields__}
    for facet in FACET_DEFINITIONS:
        assert facet.column in COLUMNS, facet.key
        assert facet.argument.replace("_", "") in arguments | {"age"}, facet.key
        if facet.clause is not None and facet.clause != "age":
            assert facet.clause in Criteria.__dataclass_fields__, facet.key
    assert FACET_CLAUSE == {
        "material_type": "material_type",
        "sex": "sex",
        "age": "age",
        "biobank": "biobank_id",
        "country": "country_biobanks",
        "collection_type": "collection_types",
    }


def test_the_age_bucket_label_is_the_same_from_an_age_and_from_a_bucket_bound() -> None:
    assert age_bucket(0) == "0-9"
    assert age_bucket(39) == "30-39"
    assert FACET["age"].bucket_key(30.0) == "30-39"  # the engine's histogram key
    assert FACET["age"].bucket_key("30") == "30-39"  # the embedded store's key
    assert FACET["sex"].bucket_key("female") == "female"


def test_the_search_page_carries_the_facet_catalogue(tmp_path: Path) -> None:
    network = write_network(tmp_path, [])
    app = create_app({"settings": make_settings(tmp_path, network), "TESTING": True})
    try:
        html = app.test_client().get("/").get_data(as_text=True)
    finally:
        app.extensions["biofed"].backend.close()
    found = re.search(r'<script type="application/json" id="config">(.*?)</script>', html)
    assert found is not None
    config = json.loads(found.group(1))
    assert [entry["key"] for entry in config["facets"]] == list(FACETS)
    by_key = {entry["key"]: entry for entry in config["facets"]}
    assert by_key["collection_type"] == {
        "key": "collection_type",
        "argument": "collectionTypes",
        "label": "vocabulary",
        "select": "values",
    }
    assert by_key["age"]["select"] == "range" and by_key["chapter"]["select"] == "diseases"
