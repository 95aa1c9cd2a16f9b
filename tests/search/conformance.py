"""The conformance suite every search backend passes: same network, same expected answers.

A backend's test module subclasses `BackendConformance` and provides the `federation`
fixture built on that backend; every test here then runs against it.
"""

from __future__ import annotations

from typing import Any

import pytest

from federation.model.query_errors import BadQuery
from federation.search.query import RECORD_ORDERS, PageRequest, SampleQuery, sort_position
from federation.search.result import SearchResult
from tests.conftest import Federation


def build_network(fed: Federation) -> None:
    """Two biobanks with diseases at several ICD-10 levels, materials, ages and a withdrawal."""
    a = fed.biobank("alpha")
    a.collections["C2"] = {
        "id": "C2",
        "name": "Cohort",
        "types": "POPULATION_BASED;COHORT",
        "default_consent": "HMB",
    }
    a.donor("A1", "FEMALE", 1970, diagnoses="C50.9")  # breast cancer
    a.donor("A2", "FEMALE", 1980, diagnoses="C50.4;E11.9")
    a.donor("A3", "MALE", 1950, diagnoses="C61")  # prostate
    a.donor("A4", "FEMALE", 1990)  # healthy
    a.donor("A5", "FEMALE", 1960, diagnoses="C50.9", consent_withdrawn="true")
    a.sample("a1", "A1", "PLASMA", "2020-03-01", data_categories="MEDICAL_RECORDS")
    a.sample("a2", "A1", "DNA", "2021-03-01")
    a.sample("a3", "A2", "PLASMA", "2020-05-01", diagnoses="I10")
    a.sample("a4", "A3", "SERUM", "2015-01-01")
    a.sample("a5", "A4", "PLASMA", "2019-01-01", collection_id="C2")
    a.sample("a6", "A4", "URINE", "2019-01-01", collection_id="C2")
    a.sample("a7", "A5", "PLASMA", "2020-01-01")
    b = fed.biobank("beta", country="DE")
    b.donor("B1", "FEMALE", 1955, diagnoses="C50")
    b.donor("B2", "MALE", 1945, diagnoses="I21.0")
    b.sample("b1", "B1", "TISSUE_FROZEN", "2010-06-01")
    b.sample("b2", "B1", "PLASMA", "2011-06-01", age_at_collection="56")
    b.sample("b3", "B2", "PLASMA", "2012-06-01")
    fed.sync("alpha")
    fed.sync("beta")


def per_biobank(result: SearchResult) -> dict[str, tuple[int | None, int | None]]:
    return {b.biobank_id: (b.donors.value, b.samples.value) for b in result.by_biobank}


def facet(result: SearchResult, name: str) -> dict[str, tuple[int | None, int | None]]:
    found = next(f for f in result.facets if f.name == name)
    return {b.key: (b.donors.value, b.samples.value) for b in found.buckets}


class BackendConformance:
    @pytest.fixture
    def network(self, federation: Federation) -> Federation:
        build_network(federation)
        return federation

    def search(self, fed: Federation, **query: Any) -> SearchResult:
        return fed.runtime.search.search(SampleQuery.parse(query))

    def test_unfiltered_counts_are_exact_and_exclude_withdrawn(self, network: Federation) -> None:
        result = self.search(network)
        assert per_biobank(result) == {"alpha": (4, 6), "beta": (2, 3)}
        assert (result.donors.value, result.samples.value) == (6, 9)

    @pytest.mark.parametrize(
        ("diseases", "expected"),
        [
            (["C50.9"], {"alpha": (1, 2)}),
            (["C50"], {"alpha": (2, 3), "beta": (1, 2)}),
            (["C50-C50"], {"alpha": (2, 3), "beta": (1, 2)}),
            (["II"], {"alpha": (3, 4), "beta": (1, 2)}),
            (["IX"], {"alpha": (1, 1), "beta": (1, 1)}),  # I10 on a sample, I21.0 on a donor
            (["C50", "C61"], {"alpha": (3, 4), "beta": (1, 2)}),
            (["E11"], {"alpha": (1, 1)}),
            (["Z00"], {}),
        ],
    )
    def test_disease_filter_includes_descendants(
        self, network: Federation, diseases: list[str], expected: dict[str, tuple[int, int]]
    ) -> None:
        assert per_biobank(self.search(network, diseases=diseases)) == expected

    @pytest.mark.parametrize(
        ("codes", "expected"),
        [
            (["C50"], {"beta": (1, 2)}),  # B1 is recorded as C50 itself; A1, A2 below it
            (["C50.9"], {"alpha": (1, 2)}),  # A1 (A5 withdrew)
            (["I10"], {"alpha": (1, 1)}),  # on sample a3 only
            (["II"], {}),  # nobody is recorded as a chapter
        ],
    )
    def test_exact_diseases_leave_out_descendants(
        self, network: Federation, codes: list[str], expected: dict[str, tuple[int, int]]
    ) -> None:
        assert per_biobank(self.search(network, exact_diseases=codes)) == expected

    def test_filters_combine(self, network: Federation) -> None:
        result = self.search(network, diseases=["C50"], sexes=["female"], materials=["PLASMA"])
        assert per_biobank(result) == {"alpha": (2, 2), "beta": (1, 1)}
        assert per_biobank(self.search(network, age_min=40, age_max=60)) == {
            "alpha": (2, 3),
            "beta": (1, 2),
        }
        assert per_biobank(self.search(network, biobanks=["beta"])) == {"beta": (2, 3)}
        assert per_biobank(self.search(network, collection_types=["COHORT"])) == {"alpha": (1, 2)}
        assert per_biobank(self.search(network, data_categories=["MEDICAL_RECORDS"])) == {
            "alpha": (1, 1)
        }

    def test_free_text_finds_disease_names(self, network: Federation) -> None:
        result = self.search(network, text="breast")
        assert per_biobank(result) == {"alpha": (2, 3), "beta": (1, 2)}
        assert "C50" in result.text_diseases
        assert per_biobank(self.search(network, text="prostate cancer")) == {"alpha": (1, 1)}
        assert per_biobank(self.search(network, text="no such disease anywhere")) == {}

    def test_facets_count_per_bucket_and_show_alternatives(self, network: Federation) -> None:
        result = self.search(network, materials=["PLASMA"])
        assert per_biobank(result) == {"alpha": (3, 3), "beta": (2, 2)}
        # The material facet ignores its own filter, so the other materials stay visible.
        assert facet(result, "material_type") == {
            "PLASMA": (5, 5),
            "DNA": (1, 1),
            "SERUM": (1, 1),
            "URINE": (1, 1),
            "TISSUE_FROZEN": (1, 1),
        }
        assert facet(result, "sex") == {"FEMALE": (4, 4), "MALE": (1, 1)}
        assert facet(result, "chapter") == {"II": (3, 3), "IV": (1, 1), "IX": (2, 2)}
        assert facet(result, "block") == {
            "C50-C50": (3, 3),
            "E10-E14": (1, 1),
            "I10-I15": (1, 1),
            "I20-I25": (1, 1),
        }
        assert facet(result, "biobank") == {"alpha": (3, 3), "beta": (2, 2)}
        # Ages at collection of the plasma samples: 50, 40, 29, 56 (stated), 67.
        assert facet(result, "age") == {
            "20-29": (1, 1),
            "40-49": (1, 1),
            "50-59": (2, 2),
            "60-69": (1, 1),
        }
        assert facet(result, "collection_type") == {
            "HOSPITAL": (4, 4),
            "POPULATION_BASED": (1, 1),
            "COHORT": (1, 1),
        }

    def test_country_filter_and_facet_count_the_biobanks_of_each_country(
        self, network: Federation
    ) -> None:
        # alpha is in JP, beta in DE (the network file says so; the index does not).
        result = self.search(network, materials=["PLASMA"])
        assert facet(result, "country") == {"JP": (3, 3), "DE": (2, 2)}
        chosen = self.search(network, materials=["PLASMA"], countries=["de"])
        assert per_biobank(chosen) == {"beta": (2, 2)}
        # The country facet drops only its own clause: the alternatives stay, and a chosen
        # biobank still narrows it.
        assert facet(chosen, "country") == {"JP": (3, 3), "DE": (2, 2)}
        assert facet(chosen, "biobank") == {"beta": (2, 2)}
        narrowed = self.search(network, biobanks=["alpha"], materials=["PLASMA"])
        assert facet(narrowed, "country") == {"JP": (3, 3)}
        # A country and a biobank elsewhere: nothing, not everything.
        assert per_biobank(self.search(network, biobanks=["alpha"], countries=["DE"])) == {}
        assert per_biobank(self.search(network, countries=["FR"])) == {}
        with pytest.raises(BadQuery) as err:
            self.search(network, countries=["Japan"])
        assert (err.value.argument, err.value.value) == ("countries", "Japan")

    def test_collection_filter_counts_one_collection(self, network: Federation) -> None:
        assert per_biobank(self.search(network, biobanks=["alpha"], collections=["C2"])) == {
            "alpha": (1, 2)
        }
        result = self.search(network, biobanks=["alpha"], collections=["C1"])
        assert per_biobank(result) == {"alpha": (3, 4)}
        assert facet(result, "material_type") == {
            "PLASMA": (2, 2),
            "DNA": (1, 1),
            "SERUM": (1, 1),
        }

    def test_records_page_through_every_match_once(self, network: Federation) -> None:
        seen: list[str] = []
        after = None
        while True:
            result = network.runtime.search.search(
                SampleQuery(), facets=(), page=PageRequest(first=4, after=after)
            )
            assert result.records is not None
            seen.extend(str(r["sample_id"]) for r in result.records.records)
            if not result.records.has_next_page:
                break
            after = result.records.end_cursor
        assert seen == ["a1", "a2", "a3", "a4", "a5", "a6", "b1", "b2", "b3"]
        record = network.runtime.search.search(
            SampleQuery(biobanks=("beta",)), facets=(), page=PageRequest(1)
        ).records
        assert record is not None
        assert record.records[0] == {
            "biobank_id": "beta",
            "sample_id": "b1",
            "collection_id": "C1",
            "donor_id": "B1",
            "sex": "FEMALE",
            "age": 55,
            "material_type": "TISSUE_FROZEN",
            "collection_date": "2010-06-01",
            "storage_temperature": None,
            "availability": "available",
            "diagnoses": ["C50"],
            "data_categories": [],
            "consent": "GRU",
            "last_updated": None,
        }

    @pytest.mark.parametrize("descending", [False, True])
    def test_records_ordered_by_any_column_page_through_every_match_once(
        self, network: Federation, descending: bool
    ) -> None:
        search = network.runtime.search
        everything = search.search(SampleQuery(), facets=(), page=PageRequest(first=100))
        assert everything.records is not None
        rows = everything.records.records
        assert everything.records.total_count == len(rows) == 9
        for column in RECORD_ORDERS:
            keys = PageRequest(order_by=column).sort_keys()
            expected = [
                r["sample_id"]
                for r in sorted(rows, key=lambda r: sort_position(r, keys), reverse=descending)
            ]
            seen: list[str] = []
            after = None
            while True:
                page = PageRequest(first=2, after=after, order_by=column, descending=descending)
                records = search.search(SampleQuery(), facets=(), page=page).records
                assert records is not None
                assert records.total_count == 9  # every page tells the whole number
                seen.extend(str(r["sample_id"]) for r in records.records)
                if not records.has_next_page:
                    break
                after = records.end_cursor
            assert seen == expected, column
        narrowed = search.search(SampleQuery(biobanks=("beta",)), facets=(), page=PageRequest(1))
        assert narrowed.records is not None and narrowed.records.total_count == 3

    def test_unknown_order_and_a_cursor_of_another_order_are_bad_queries(
        self, network: Federation
    ) -> None:
        search = network.runtime.search
        with pytest.raises(BadQuery, match="order_by"):
            search.search(SampleQuery(), page=PageRequest(5, order_by="diagnoses"))
        by_age = search.search(SampleQuery(), facets=(), page=PageRequest(2, order_by="age"))
        assert by_age.records is not None and by_age.records.end_cursor is not None
        with pytest.raises(BadQuery, match="after"):
            search.search(SampleQuery(), page=PageRequest(2, by_age.records.end_cursor))

    def test_bad_cursor_is_a_bad_query(self, network: Federation) -> None:
        with pytest.raises(BadQuery, match="after"):
            network.runtime.search.search(SampleQuery(), page=PageRequest(5, "not-a-cursor"))

    def test_deletion_at_source_disappears(self, network: Federation) -> None:
        network.biobanks["beta"].samples.pop("b3")
        network.biobanks["beta"].donors.pop("B2")
        network.sync("beta")
        assert per_biobank(self.search(network)) == {"alpha": (4, 6), "beta": (1, 2)}

    def test_unpublished_generation_is_invisible(self, network: Federation) -> None:
        backend = network.runtime.backend
        before = per_biobank(self.search(network))
        with backend.generation_writer("beta") as writer:
            writer.add([])
            assert per_biobank(self.search(network)) == before
        # Left without publish: aborted, the old generation serves on.
        assert per_biobank(self.search(network)) == before
        assert backend.published()["beta"].documents == 3
