"""The independent oracle counts hand-made sources the way a person would."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml

from federation.demo.generator import generate_network
from tests.support.source_truth import SourceTruth

CSV_COLUMNS = {
    "collections": {"id": "COLLECTION_ID", "name": "NAME", "types": "TYPE"},
    "donors": {
        "id": "DONOR_ID",
        "sex": "SEX",
        "birth_year": "YEAR_OF_BIRTH",
        "diagnoses": "DIAGNOSIS",
        "consent_withdrawn": "WITHDRAWN",
    },
    "samples": {
        "id": "SAMPLE_ID",
        "donor_id": "DONOR_ID",
        "collection_id": "COLLECTION_ID",
        "material_type": "MATERIAL_TYPE",
        "collection_date": "SAMPLING_DATE",
        "age_at_collection": "AGE",
        "diagnoses": "DIAGNOSIS",
    },
}
# Rows by hand: S1, S2, S6 and S9 (without its non-WHO C50.99) are the countable samples
# of `hand-csv`.
CSV_FILES = {
    "collections.csv": "COLLECTION_ID,NAME,TYPE\nC1,Cohort,COHORT;LONGITUDINAL\n",
    "donors.csv": (
        "DONOR_ID,SEX,YEAR_OF_BIRTH,DIAGNOSIS,WITHDRAWN\n"
        "D1,FEMALE,1970,C50.9,false\n"
        "D2,MALE,1950,ICD10:I10,false\n"
        "D3,X,1960,,false\n"  # unknown sex: D3 and its sample S4 are rejected
        "D4,FEMALE,1980,,true\n"  # withdrew: S5 is valid but never counted
    ),
    "samples.csv": (
        "SAMPLE_ID,DONOR_ID,COLLECTION_ID,MATERIAL_TYPE,SAMPLING_DATE,AGE,DIAGNOSIS\n"
        "S1,D1,C1,TISSUE_FROZEN,2019-06-10,49,C509\n"
        "S2,D1,C1,Serum,2021-03-01,51,\n"
        "S3,D2,C1,DNA,2019-13-45,69,\n"
        "S4,D3,C1,PLASMA,2020-01-01,60,\n"
        "S5,D4,C1,SERUM,2020-01-01,40,\n"
        "S6,D2,C1,DNA,2019-05-05,69,\n"
        "S7,D2,C1,BLOOD_SPOT,2019-05-05,69,\n"
        "S8,D9,C1,DNA,2019-05-05,69,\n"
        "S9,D1,C1,DNA,2019-05-05,49,C50.99\n"
        "S10,D1,C1,,2019-05-05,49,\n"
    ),
}


@pytest.fixture
def hand_made(tmp_path: Path) -> Path:
    """Two biobanks: a CSV one covering every rejection, an XLSX one with recoded values."""
    folder = tmp_path / "sources" / "hand-csv"
    folder.mkdir(parents=True)
    for name, text in CSV_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    book = openpyxl.Workbook()
    sheets = {
        "collections": [["Collection ID", "Type"], ["K1", "RD"]],
        "donors": [
            ["Donor ID", "Sex", "Diagnoses", "Withdrawn"],
            ["P1", "F", "", "N"],
            ["P2", "M", "E119", "Y"],
        ],
        "samples": [
            ["Sample ID", "Donor ID", "Collection", "Material", "Age"],
            ["T1", "P1", "K1", "WHOLE_BLOOD", 32],
            ["T2", "P2", "K1", "PLASMA", 60],
        ],
    }
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(tmp_path / "sources" / "hand.xlsx")
    network = {
        "biobanks": [
            {
                "id": "hand-csv",
                "connector": {
                    "type": "tabular",
                    "options": {
                        "path": "sources/hand-csv",
                        "format": "csv",
                        "files": {s: f"{s}.csv" for s in CSV_COLUMNS},
                        "list_separator": ";",
                        "columns": CSV_COLUMNS,
                    },
                },
            },
            {
                "id": "hand-xlsx",
                "connector": {
                    "type": "tabular",
                    "options": {
                        "path": "sources/hand.xlsx",
                        "format": "xlsx",
                        "files": {s: s for s in CSV_COLUMNS},
                        "list_separator": ";",
                        "columns": {
                            "collections": {"id": "Collection ID", "types": "Type"},
                            "donors": {
                                "id": "Donor ID",
                                "sex": "Sex",
                                "diagnoses": "Diagnoses",
                                "consent_withdrawn": "Withdrawn",
                            },
                            "samples": {
                                "id": "Sample ID",
                                "donor_id": "Donor ID",
                                "collection_id": "Collection",
                                "material_type": "Material",
                                "age_at_collection": "Age",
                            },
                        },
                        "values": {
                            "sex": {"F": "FEMALE", "M": "MALE"},
                            "consent_withdrawn": {"Y": "true", "N": "false"},
                        },
                    },
                },
            },
        ]
    }
    (tmp_path / "network.yaml").write_text(yaml.safe_dump(network), encoding="utf-8")
    return tmp_path


def test_rejected_rows_and_their_reasons(hand_made: Path) -> None:
    truth = SourceTruth(hand_made)
    assert truth.rejected("hand-csv") == {
        "D3": "unknown_sex",
        "S3": "invalid_date",
        "S4": "donor_rejected",
        "S7": "unknown_material",
        "S8": "unknown_donor",
        "S10": "missing_required",
    }
    assert truth.partial("hand-csv") == {"S9": "invalid_diagnosis"}
    assert truth.rejected("hand-xlsx") == {}
    assert truth.withdrawn("hand-csv") == {"D4"}
    assert truth.withdrawn("hand-xlsx") == {"P2"}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"hand-csv": (2, 4), "hand-xlsx": (1, 1)}),
        # S2 and S9 have no valid diagnosis of their own: they match through D1's C50.9.
        ({"diseases": ["C50"]}, {"hand-csv": (1, 3)}),
        ({"diseases": ["II"]}, {"hand-csv": (1, 3)}),
        ({"diseases": ["C50-C50"]}, {"hand-csv": (1, 3)}),
        ({"diseases": ["C50.4"]}, {}),
        ({"diseases": ["IX"]}, {"hand-csv": (1, 1)}),
        ({"diseases": ["E11"]}, {}),  # P2 withdrew
        ({"materials": ["serum"]}, {"hand-csv": (1, 1)}),
        ({"materials": ["DNA", "WHOLE_BLOOD"]}, {"hand-csv": (2, 2), "hand-xlsx": (1, 1)}),
        ({"sexes": ["FEMALE"]}, {"hand-csv": (1, 3), "hand-xlsx": (1, 1)}),
        ({"sexes": ["MALE"], "age_min": 60}, {"hand-csv": (1, 1)}),
        ({"age_min": 50}, {"hand-csv": (2, 2)}),
        ({"age_max": 49}, {"hand-csv": (1, 2), "hand-xlsx": (1, 1)}),
        ({"age_min": 49, "age_max": 49}, {"hand-csv": (1, 2)}),
        ({"biobanks": ["hand-xlsx"]}, {"hand-xlsx": (1, 1)}),
    ],
)
def test_counts_by_hand(hand_made: Path, filters: dict[str, Any], expected: object) -> None:
    assert SourceTruth(hand_made).counts(**filters) == expected


def test_an_unknown_filter_code_is_an_error(hand_made: Path) -> None:
    with pytest.raises(ValueError, match=r"C50\.99"):
        SourceTruth(hand_made).counts(diseases=["C50.99"])


def test_agrees_with_what_the_generator_says_it_wrote(tmp_path: Path) -> None:
    summary = generate_network(tmp_path, biobanks=7, samples=2_500, seed=9)
    truth = SourceTruth(tmp_path)
    counts = truth.counts()
    assert {b.format for b in summary.biobanks} == {"csv", "tsv", "xlsx"}
    for biobank in summary.biobanks:
        assert counts[biobank.id] == (biobank.searchable_donors, biobank.searchable_samples)
        kinds = collections.Counter(truth.rejected(biobank.id).values())
        assert kinds.pop("donor_rejected") + sum(kinds.values()) - kinds["unknown_sex"] == (
            biobank.rejected_samples
        )
        kept = collections.Counter(truth.partial(biobank.id).values())
        assert sum(kept.values()) == biobank.partial_samples
        assert dict(kinds + kept) == biobank.dirty
