"""Named fault points for fault-injection tests: kill the process, or fail a write, here.

A test sets `BIOFED_FAULT_POINT` to a point's name in a sync's environment; when the sync
reaches that point it SIGKILLs itself, as a crash or `kill -9` would. `BIOFED_FAULT_ENOSPC`
names a write that fails with ENOSPC (a full disk) where no small filesystem can be mounted.
Unset (always, outside tests) both cost one environment lookup.
"""

from __future__ import annotations

import errno
import os
import signal

KILL_VARIABLE = "BIOFED_FAULT_POINT"
ENOSPC_VARIABLE = "BIOFED_FAULT_ENOSPC"

# Where a sync may be killed, in the order a full sync passes them.
KILL_POINTS = (
    "after_start",  # the run is recorded as running; nothing read yet
    "after_pull",  # every record read and written to the new generation, not published
    "before_publish",  # the run's pending generation and quarantine are recorded
    "after_publish",  # the new generation serves; the run's record is not finished
    "after_record",  # the run is recorded as finished; the process has not exited
)


def reached(point: str) -> None:
    """Kill this process with SIGKILL when `BIOFED_FAULT_POINT` names `point`."""
    if os.environ.get(KILL_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def writing(point: str, path: os.PathLike[str] | str) -> None:
    """Fail with ENOSPC, naming `path`, when `BIOFED_FAULT_ENOSPC` names `point`."""
    if os.environ.get(ENOSPC_VARIABLE) == point:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
