"""Guards against a sync that reads less than the source holds and still succeeds.

Connectors check each stream against the total the source announces (`check_total` in
`federation.sync.connector`). What no source announces is that it has become empty by
mistake: a moved export folder, an expired filter, a server answering an empty list. So a
full read of zero records, where the biobank's last successful full run read some, fails
unless the admin says the source really is empty now (`biofed sync --allow-empty`, or
`allow_empty: true` on the biobank's entry in the network file).
"""

from __future__ import annotations

from federation.sync.connector import SourceError
from federation.sync.state import SyncState

FULL = "full"


class EmptyRead(SourceError):
    """A full read found nothing where the previous successful run found records."""

    code = "SOURCE_EMPTY"

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


def check_not_empty(state: SyncState, biobank_id: str, read: int, *, allow_empty: bool) -> None:
    """Raise EmptyRead for a full read of zero records after a successful one of some."""
    if read > 0 or allow_empty:
        return
    previous = state.last_success(biobank_id, FULL)
    if previous is None or previous.read == 0:
        return
    raise EmptyRead(
        f"read 0 records where the last successful full run (#{previous.id}, "
        f"{previous.started_at}) read {previous.read}: the previous data keeps serving. If "
        "the source really is empty now, confirm with `biofed sync --allow-empty` or "
        "`allow_empty: true` on the biobank's entry in the network file"
    )
