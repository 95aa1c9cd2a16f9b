"""Every room's errors share one root with a stable code and keep the builtin base callers
catch."""

from __future__ import annotations

import pytest

from federation.disclosure.policy import PolicyError
from federation.errors import FederationError
from federation.model.duo import InvalidConsent
from federation.model.icd10 import UnknownCode
from federation.model.query_errors import BadQuery
from federation.search.backend import BackendUnavailable
from federation.search.engine import BiobankLockHeld, BiobankLockLost, EngineError
from federation.search.engine.client import EngineConflict, EngineUnavailable
from federation.search.query import BadQuery as BadQueryFromSearch
from federation.settings import SettingsError


@pytest.mark.parametrize(
    ("error", "builtin", "code"),
    [
        (BadQuery, ValueError, "BAD_USER_INPUT"),
        (InvalidConsent, ValueError, "INVALID_CONSENT"),
        (UnknownCode, ValueError, "UNKNOWN_CODE"),
        (PolicyError, ValueError, "INVALID_POLICY"),
        (SettingsError, ValueError, "SETTINGS_INVALID"),
        (BackendUnavailable, RuntimeError, "BACKEND_UNAVAILABLE"),
        (EngineUnavailable, ConnectionError, "ENGINE_UNAVAILABLE"),
        (EngineError, RuntimeError, "ENGINE_ERROR"),
        (EngineConflict, RuntimeError, "ENGINE_ERROR"),
        (BiobankLockHeld, BlockingIOError, "SYNC_LOCK_HELD"),
        (BiobankLockLost, BlockingIOError, "SYNC_LOCK_HELD"),
    ],
)
def test_errors_carry_a_stable_code_and_keep_their_builtin_base(
    error: type[Exception], builtin: type[Exception], code: str
) -> None:
    assert issubclass(error, FederationError) and issubclass(error, builtin)
    assert getattr(error, "code", None) == code


def test_bad_query_is_one_class_wherever_it_is_imported_from() -> None:
    assert BadQueryFromSearch is BadQuery
    err = BadQuery("first", 0, "must be between 1 and 100")
    assert str(err) == "first: must be between 1 and 100 (got 0)"
    assert (err.argument, err.value, err.code) == ("first", 0, "BAD_USER_INPUT")
