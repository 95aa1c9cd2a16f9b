"""The rows the demo generator writes invalid on purpose, and the values that make them so.

The values are chosen to be wrong by any reading, so that the project's validation and the
independent test oracle (`tests/support/source_truth.py`) cannot disagree about them: no
near-miss that a lenient parser might accept (`20191231`, `serum`, `F`).
"""

from __future__ import annotations

# Sample rows: each of these is one sample row with one field spoiled.
INVALID_DIAGNOSIS = "invalid_diagnosis"  # a diagnosis that is not WHO ICD-10
MISSING_REQUIRED = "missing_required"  # empty material type or empty donor id
UNKNOWN_MATERIAL = "unknown_material"  # a material type outside the MIABIS vocabulary
INVALID_DATE = "invalid_date"  # a collection date that is not ISO or does not exist
UNKNOWN_DONOR = "unknown_donor"  # a donor id with no donor row
# Donor rows: an unknown sex code rejects the donor, and with it all the donor's samples.
UNKNOWN_SEX = "unknown_sex"
# Not written as such: what a correct sync says of the samples of a rejected donor.
DONOR_REJECTED = "donor_rejected"

SAMPLE_KINDS = (INVALID_DIAGNOSIS, MISSING_REQUIRED, UNKNOWN_MATERIAL, INVALID_DATE, UNKNOWN_DONOR)
# Rows whose spoiled value a correct sync drops, keeping the row without it (with a
# quarantine row naming the value): a sample with one non-WHO code is still a sample.
PARTIAL_KINDS = (INVALID_DIAGNOSIS,)
DONOR_KINDS = (UNKNOWN_SEX,)
DIRTY_KINDS = (*SAMPLE_KINDS, *DONOR_KINDS)

# Shaped like codes, absent from WHO ICD-10 2019 (C50.99 and F31.81 are national extensions).
NOT_WHO_CODES = ("C50.99", "F3181", "X99.99", "I10.0", "E11.99", "C61.9")
UNKNOWN_MATERIALS = ("BLOOD_SPOT", "Serum?", "FFPE block", "PLASMA_HEPARIN", "Vollblut")
# Month 13, 30 February, and day-first spellings that ISO 8601 readers refuse.
BAD_DATES = ("2019-13-45", "2021-02-30", "31/12/2019", "12.03.2018", "2020/05/17")
# Not a code of schema/vocab/sex.csv, nor of any flavour's recoding table.
UNKNOWN_SEXES = ("9", "?", "FM", "W?")

# Share of a biobank's sample rows made dirty (each biobank draws its own rate in range);
# every kind appears at least once in every biobank whatever the rate.
DIRTY_SHARE = (0.002, 0.005)
