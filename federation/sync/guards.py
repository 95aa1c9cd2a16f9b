"""Checks a sync makes before it publishes, so a broken source never silently empties a biobank.

`check_shrink` is the generic guard of the sync layer: a full sync that would delete more
than a configured fraction of the biobank's indexed samples (or all of them) fails unless
an admin confirmed the shrink. Per-connector checks of a source's own signals sit beside it.
"""

from __future__ import annotations

from federation.errors import FederationError


class SourceShrank(FederationError, ValueError):
    """A full sync would delete more of a biobank than allowed; nothing was published."""

    code = "SOURCE_SHRANK"


def check_shrink(
    biobank_id: str, indexed_before: int, deleted: int, max_fraction: float, *, confirmed: bool
) -> None:
    """Raise SourceShrank when a full sync deletes too much of what the biobank had."""
    if confirmed or indexed_before == 0 or deleted == 0:
        return
    fraction = deleted / indexed_before
    if deleted < indexed_before and fraction <= max_fraction:
        return
    what = "every one" if deleted == indexed_before else f"{fraction:.0%}"
    raise SourceShrank(
        f"the source of {biobank_id} shrank: this full sync would delete {deleted} of its "
        f"{indexed_before} indexed samples ({what}; at most {max_fraction:.0%} may go "
        "without confirmation). Nothing was published; check the export, then rerun with "
        "`biofed sync --allow-shrink` if the shrink is real"
    )
