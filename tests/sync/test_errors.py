"""Sync-side errors share the federation's root and keep the builtin base callers catch."""

from __future__ import annotations

import pytest

from federation.demo.profiles import ProfileError
from federation.errors import FederationError
from federation.settings import SettingsError
from federation.sync.connector import ConfigError, RecordRejected, SourceError
from federation.sync.locks import SyncAlreadyRunning
from federation.sync.run import SyncFailed
from federation.sync.schedule import ScheduleError

CODES = {
    SyncFailed: ("SYNC_FAILED", RuntimeError),
    SyncAlreadyRunning: ("SYNC_ALREADY_RUNNING", RuntimeError),
    RecordRejected: ("RECORD_REJECTED", Exception),
    SourceError: ("SOURCE_FAILED", Exception),
    ConfigError: ("CONNECTOR_CONFIG_INVALID", ValueError),
    ScheduleError: ("SCHEDULE_INVALID", ValueError),
    SettingsError: ("SETTINGS_INVALID", ValueError),
    ProfileError: ("PROFILE_INVALID", ValueError),
}


@pytest.mark.parametrize("error", list(CODES), ids=lambda e: e.__name__)
def test_sync_errors_are_federation_errors_with_a_stable_code(error: type[Exception]) -> None:
    code, builtin = CODES[error]
    assert issubclass(error, FederationError)
    assert issubclass(error, builtin)
    assert error.code == code


def test_codes_are_distinct() -> None:
    codes = [code for code, _ in CODES.values()]
    assert len(set(codes)) == len(codes)
