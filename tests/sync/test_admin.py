"""The sync administration service: who may see runs and quarantine, and start a sync."""

from __future__ import annotations

import pytest

from federation.disclosure.roles import ANONYMOUS, Identity
from federation.errors import BadInput, Forbidden, NotFound, Unauthenticated
from federation.sync.admin import SyncAdministration
from tests.conftest import Federation
from tests.sync.test_sync import small_biobank

OPERATOR = Identity("ops", True, operator=True, via="api_key")
BB1_ADMIN = Identity("admin1", True, admin_of=frozenset({"bb1"}), via="api_key")
BOTH_ADMIN = Identity("admin", True, admin_of=frozenset({"bb1", "bb2"}), via="api_key")


def administration(federation: Federation) -> SyncAdministration:
    small_biobank(federation)
    small_biobank(federation, "bb2")
    federation.write()
    federation.sync("bb1")
    federation.sync("bb2")
    federation.sync("bb1")
    return SyncAdministration(federation.runtime.state, federation.runtime.network)


def test_runs_are_merged_newest_first_for_an_admin_of_several(federation: Federation) -> None:
    admin = administration(federation)
    merged = admin.runs(BOTH_ADMIN)
    assert [r.biobank_id for r in merged] == ["bb1", "bb2", "bb1"]
    assert [r.biobank_id for r in admin.runs(BOTH_ADMIN, first=2)] == ["bb1", "bb2"]
    assert {r.biobank_id for r in admin.runs(BB1_ADMIN)} == {"bb1"}
    assert len(admin.runs(OPERATOR)) == 3


def test_refusals_are_federation_errors_with_codes(federation: Federation) -> None:
    admin = administration(federation)
    with pytest.raises(Unauthenticated):
        admin.runs(ANONYMOUS)
    with pytest.raises(Forbidden) as forbidden:
        admin.runs(BB1_ADMIN, biobank="bb2")
    assert forbidden.value.code == "FORBIDDEN" and forbidden.value.extensions["biobank"] == "bb2"
    with pytest.raises(Forbidden):
        admin.quarantine(OPERATOR, "bb1")  # raw payloads: the biobank's admins only
    with pytest.raises(NotFound, match="biobank: no biobank in this network with id 'bb9'"):
        admin.runs(OPERATOR, biobank="bb9")
    with pytest.raises(BadInput, match=r"first: must be between 1 and 100 \(got 0\)"):
        admin.runs(OPERATOR, first=0)
    with pytest.raises(BadInput, match="offset: must be at least 0"):
        admin.quarantine(BB1_ADMIN, "bb1", offset=-1)
    with pytest.raises(Forbidden):
        admin.start_sync(OPERATOR, "bb1")


def test_a_second_request_while_one_waits_is_the_same_request(federation: Federation) -> None:
    admin = administration(federation)
    first = admin.start_sync(BB1_ADMIN, "bb1", full=True)
    again = admin.start_sync(BB1_ADMIN, "bb1")
    assert (first.mode, first.already_queued) == ("full", False)
    assert again.request_id == first.request_id and again.already_queued
