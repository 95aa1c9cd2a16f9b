"""Row keys stored at index time, and the exact fingerprint of a counted row set.

Each donor and each sample gets a 63-bit key, a hash of (biobank, id). The query that
counts a cell also sums the keys of what it counts, so a cell's fingerprint is
(count, sum of keys mod 2^64): equal for every question that counts the same rows, and
different for different row sets but with negligible chance. Noise is keyed on it (see
`federation.disclosure.release`), never on the words of a question.

A key is stored as three fields of 21 bits: the engine sums numbers as doubles, exact
below 2^53, so each field's sum stays exact up to 2^32 rows per cell; DuckDB sums the
same fields exactly. Both backends then combine the three sums the same way
(`combine`), and so give identical fingerprints for the same data.

The keys need not be secret: a fingerprint never leaves the server, and the noise drawn
from it is an HMAC under the server's secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

KEY_PART_BITS = 21
KEY_PARTS = 3
_PART_MASK = (1 << KEY_PART_BITS) - 1
FINGERPRINT_MODULUS = 1 << 64
DONOR_KEY_COLUMNS = tuple(f"donor_k{n}" for n in range(KEY_PARTS))
SAMPLE_KEY_COLUMNS = tuple(f"sample_k{n}" for n in range(KEY_PARTS))


def row_key(biobank_id: str, row_id: str) -> int:
    """The 63-bit key of a donor or sample of a biobank (ids are unique per biobank)."""
    digest = hashlib.sha256(f"{biobank_id}\x1f{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - KEY_PART_BITS * KEY_PARTS)


def key_parts(key: int) -> tuple[int, ...]:
    """The key split into its stored fields, low bits first."""
    return tuple((key >> (KEY_PART_BITS * n)) & _PART_MASK for n in range(KEY_PARTS))


def key_columns(biobank_id: str, donor_id: str, sample_id: str) -> dict[str, int]:
    """The index columns of a sample row's donor and sample keys."""
    donor = key_parts(row_key(biobank_id, f"donor:{donor_id}"))
    sample = key_parts(row_key(biobank_id, f"sample:{sample_id}"))
    return {
        **dict(zip(DONOR_KEY_COLUMNS, donor, strict=True)),
        **dict(zip(SAMPLE_KEY_COLUMNS, sample, strict=True)),
    }


def donor_key_fields(biobank_id: str, donor_id: str) -> dict[str, int]:
    """The donor key fields a donor document carries at its root (the engine's donor sums)."""
    parts = key_parts(row_key(biobank_id, f"donor:{donor_id}"))
    return dict(zip(DONOR_KEY_COLUMNS, parts, strict=True))


def combine(part_sums: Sequence[int | float | None]) -> int:
    """The fingerprint from the exact sums of the key fields: sum of the keys mod 2^64."""
    total = 0
    for n, part in enumerate(part_sums):
        total += int(part or 0) << (KEY_PART_BITS * n)
    return total % FINGERPRINT_MODULUS


def embedded_key_sql(columns: Sequence[str]) -> str:
    """SQL of a row's whole key from its fields (DuckDB; HUGEINT sums stay exact)."""
    return " + ".join(
        f"(CAST(coalesce({c}, 0) AS BIGINT) << {KEY_PART_BITS * n})" for n, c in enumerate(columns)
    )
