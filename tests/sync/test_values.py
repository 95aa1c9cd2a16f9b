"""Reject values, not donors: a bad code leaves the record, the record stays searchable."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.conftest import Federation
from tests.connectors.sources import BEACON_MAPPING, beacon_fixtures
from tests.support.http_network import FAST_RETRIES, HttpNetwork, entry
from tests.support.loopback import BeaconApp, serving

KEPT = "(the record is kept without it)"


def test_a_donor_keeps_its_good_codes_and_the_bad_one_is_quarantined(
    federation: Federation,
) -> None:
    bb = federation.biobank("bb1")
    bb.donor("D1", "FEMALE", 1970, diagnoses="C50.9;F3181;E11.9")
    bb.donor("D2", "ALIEN", 1960, diagnoses="C50.9")
    bb.donor("D3", "MALE", 1955, diagnoses="I10", consent="DS(C50);XYZ")
    bb.sample("S1", "D1", "PLASMA").sample("S2", "D1", "DNA")
    bb.sample("S3", "D2", "PLASMA")
    bb.sample("S4", "D3", "SERUM", storage_temperature="temperature-1000")
    run = federation.sync("bb1")

    search = federation.runtime.search
    from federation.search.query import SampleQuery

    def counts(**query: object) -> dict[str, tuple[int | None, int | None]]:
        result = search.search(SampleQuery.parse(query), facets=())
        return {b.biobank_id: (b.donors.value, b.samples.value) for b in result.by_biobank}

    # D1 is found by both of its good codes, and its bad one finds nothing.
    assert counts(diseases=["C50"]) == {"bb1": (1, 2)}
    assert counts(diseases=["E11"]) == {"bb1": (1, 2)}
    assert counts(diseases=["F31"]) == {}
    # D3 lost its unreadable consent (unknown consent: never permitted for a purpose), and
    # S4 its storage temperature; both are still counted.
    assert counts(diseases=["I10"]) == {"bb1": (1, 1)}
    assert counts() == {"bb1": (2, 3)}

    rows = {q.source_id: q for q in federation.runtime.state.quarantine("bb1")}
    d1 = rows["D1"]
    assert (d1.field, d1.value, d1.kept) == ("diagnoses[1]", "F3181", 1)
    assert "'F3181' is not a WHO ICD-10 code" in d1.reason and "WHO ICD-10 has F31" in d1.reason
    assert d1.reason.endswith(KEPT)
    assert (rows["D3"].field, rows["D3"].value, rows["D3"].kept) == ("consent", "DS(C50);XYZ", 1)
    assert rows["S4"].field == "storage_temperature" and rows["S4"].kept
    # A donor that cannot be kept is rejected whole, and its sample is in the quarantine
    # naming that donor: nothing is gone without a row.
    assert (rows["D2"].field, rows["D2"].kept) == ("sex", 0)
    s3 = rows["S3"]
    assert (s3.field, s3.value, s3.kept) == ("donor_id", "D2", 0)
    assert s3.reason == (
        "donor was rejected: sex: 'ALIEN' is not in the sex vocabulary; allowed: FEMALE, MALE, "
        "NASK, NAV, UNDIFFERENTIAL, UNKNOWN"
    )
    assert (run.read, run.rejected, run.partial, run.accepted) == (8, 2, 3, 3)


def test_a_fixed_value_leaves_the_quarantine(federation: Federation) -> None:
    bb = federation.biobank("bb1")
    bb.donor("D1", "FEMALE", 1970, diagnoses="C50.9;F3181")
    bb.sample("S1", "D1", "PLASMA")
    assert federation.sync("bb1").partial == 1
    bb.donors["D1"]["diagnoses"] = "C50.9;F31.8"
    run = federation.sync("bb1")
    assert (run.partial, run.rejected) == (0, 0)
    assert federation.runtime.state.quarantine("bb1") == []


@pytest.mark.parametrize("unmapped", ["quarantine", "ignore"])
def test_a_beacon_individual_keeps_its_good_icd10_curies(tmp_path: Path, unmapped: str) -> None:
    datasets, individuals, biosamples = beacon_fixtures()
    datasets[0]["dataUseConditions"]["duoDataUse"] = [{"id": "DUO:0000042"}]
    first = copy.deepcopy(individuals[0])
    first["diseases"] = [
        {"diseaseCode": {"id": "ICD10:C50.9", "label": "breast"}},
        {"diseaseCode": {"id": "ICD10:F3181", "label": "bipolar, national code"}},
        {"diseaseCode": {"id": "ICD10:E11.9", "label": "type 2 diabetes"}},
    ]
    individuals = [first, *individuals[1:]]
    options = {**BEACON_MAPPING, "unmapped_diseases": unmapped, **FAST_RETRIES}
    with serving(BeaconApp(datasets, individuals, biosamples)) as server:
        network = HttpNetwork(
            tmp_path, [entry("bb", "beacon", {"base_url": f"{server.url}/api", **options})]
        )
        run = network.sync("bb")
    donor = first["id"]
    samples_of_donor = sum(1 for b in biosamples if b["individualId"] == donor)
    assert network.counts(diseases=["C50"]) == {"bb": (1, samples_of_donor)}
    assert network.counts(diseases=["E11"]) == {"bb": (1, samples_of_donor)}
    donor_rows = {
        q.source_id: q for q in network.runtime.state.quarantine("bb") if q.stream == "donors"
    }
    # The fixture's other individuals carry MONDO disease terms and its biosamples NCIT
    # histological diagnoses: values to drop as well, each record kept.
    with_mondo = sum(
        any(not str(d["diseaseCode"]["id"]).startswith("ICD10:") for d in i.get("diseases") or ())
        for i in individuals[1:]
    )
    with_ncit = sum(
        not str((b.get("histologicalDiagnosis") or {}).get("id", "ICD10:")).startswith("ICD10:")
        for b in biosamples
    )
    if unmapped == "ignore":  # the admin let unmapped codes go: no row, nothing rejected
        assert donor not in donor_rows
        assert run.partial == 0
    else:
        assert run.partial == with_mondo + 1 + with_ncit
        row = donor_rows[donor]
        assert (row.field, row.value, row.kept) == (
            "diseases[1].diseaseCode",
            "ICD10:F3181 (bipolar, national code)",
            1,
        )
        assert "'ICD10:F3181' is not a WHO ICD-10 code (WHO ICD-10 has F31.8" in row.reason
        assert row.reason.endswith(KEPT)
    assert run.rejected == 0
    network.close()
