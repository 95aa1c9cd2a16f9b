"""The federation as a GA4GH Beacon v2 node (framework v2.x, default model; docs/beacon.md).

Beacon requests are read into the same query model GraphQL uses (`filters`), answered by
the same search service under the same disclosure policy (`answer`), and written back as
Beacon framework responses (`responses`) with default-model records (`documents`). The
HTTP edge is the thin blueprint in `federation/gateway/beacon.py`.
"""

from __future__ import annotations

from federation.errors import FederationError

# The framework version this node speaks: v2.0 shapes plus v2.2's `countPrecision` and
# `countAdjustedTo` in count summaries.
API_VERSION = "v2.2.0"
# Entry types served, as the framework names them (singular) and as paths (plural).
ENTRY_TYPES = {"individuals": "individual", "biosamples": "biosample", "datasets": "dataset"}


class BeaconRequestError(FederationError, ValueError):
    """A Beacon request that cannot be answered as asked; names the field and the value."""

    code = "BAD_USER_INPUT"

    def __init__(self, field: str, value: object, reason: str, status: int = 400) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.status = status
        super().__init__(f"{field}: {reason} (got {value!r})")
