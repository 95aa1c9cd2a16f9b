"""Donor keys, and the exact fingerprint of a counted donor set.

Each donor of a biobank has a key, a 26-bit mix of its ordinal (the small integer every
index row of the donor carries, `donor_ord`, stable across incremental changes). The
query that counts a cell also sums the keys of the donors it counts, so a cell's
fingerprint is the donor count with that sum: equal for every question that counts the
same donors, and for different donor sets different but for a rare collision. Noise is
keyed on it (see `federation.disclosure.release`), never on the words of a question.

A sample figure is keyed on its donors' fingerprint with the sample count: a function of
the counted sample rows too (their donors and how many), so no sample key is summed at
all. Two different sample sets with the same donors and the same count share a noise draw:
they release the same value for the same true count, which is all a collision can do.

Why 26 bits and one field: the engine sums numbers as doubles, exact below 2^53, so a cell's
sum of keys below 2^26 is exact up to 2^27 donors per cell; DuckDB sums the same keys as
integers. Both backends thus give identical fingerprints for the same data, whatever the
shard order. The mix is a bijection of 26-bit numbers, so keys are unique per biobank up to
2^26 donors (beyond that, two donors may share a key: only collisions grow more likely).
It is a weak mix (a multiplication modulo 2^26): distinct donor sets of one size share a
key sum only by chance, and nobody outside the server sees the ordinals or the sums.
The embedded store computes the key from the ordinal inside the query (no stored column,
no per-row payload: donors are grouped by their ordinal as the count needs anyway); the
engine stores it at the root of each donor document, where `reverse_nested` sums it.

The keys need not be secret: a fingerprint never leaves the server, and the noise drawn
from it is an HMAC under the server's secret.
"""

from __future__ import annotations

KEY_BITS = 26
KEY_MASK = (1 << KEY_BITS) - 1
# An odd multiplier: multiplying by it modulo 2^26 is a bijection, so keys stay unique per
# biobank. One multiplication, because the embedded store works the key out once per donor
# and cell inside the counting query: two rounds of multiply and xor-shift took the
# fingerprints' cost on DuckDB from +10 % to +37 % of the mix's statements (CPU time,
# measured); collisions only share a noise draw, so a stronger mix buys nothing.
KEY_MULTIPLIER = 0x2A1B3C5
# The field of an engine donor document that holds its key.
DONOR_KEY_FIELD = "donor_key"


def donor_key(ordinal: int) -> int:
    """The key of the donor with `ordinal`: in 1..2^26, never 0 (an empty sum is 0)."""
    return ((ordinal & KEY_MASK) * KEY_MULTIPLIER & KEY_MASK) + 1


def donor_key_sql(ordinal: str) -> str:
    """DuckDB SQL of `donor_key` of an integer column (the same numbers, as BIGINT)."""
    return f"((((CAST({ordinal} AS BIGINT) & {KEY_MASK}) * {KEY_MULTIPLIER}) & {KEY_MASK}) + 1)"


def fingerprint(key_sum: int | float | None) -> int:
    """The fingerprint from a backend's exact sum of donor keys (None: no donor counted)."""
    return int(key_sum or 0)
