"""One sync per biobank at a time: an exclusive lock file per biobank in the data folder."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from federation.errors import FederationError


class SyncAlreadyRunning(FederationError, RuntimeError):
    """Another process holds this biobank's sync lock."""

    code = "SYNC_ALREADY_RUNNING"


@contextlib.contextmanager
def biobank_lock(locks_dir: Path, biobank_id: str) -> Iterator[None]:
    """Hold the biobank's lock for the block, or raise at once if another run holds it.

    flock locks die with their process, so a SIGKILLed sync never leaves a stale lock.
    """
    locks_dir.mkdir(parents=True, exist_ok=True)
    path = locks_dir / f"{biobank_id}.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncAlreadyRunning(f"a sync of {biobank_id} is already running") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
