"""One sync per biobank across hosts: a lease on a lock document in the engine."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from federation.errors import FederationError
from federation.search.engine.client import (
    EngineClient,
    EngineConflict,
    EngineError,
    EngineNotFound,
    EngineUnavailable,
)
from federation.search.engine.layout import ENGINE_SCHEMA_DIR, biobank_key

log = logging.getLogger(__name__)

# Called with the biobank and the previous holder's lock document after a takeover.
TakeoverRecorder = Callable[[str, dict[str, Any]], None]


class BiobankLockHeld(FederationError, BlockingIOError):
    """Another sync (on this host or another) holds the biobank's lock.

    A `BlockingIOError` (an `OSError`), as a held flock is, so the sync layer records a
    failed run for it.
    """

    code = "SYNC_LOCK_HELD"


class BiobankLockLost(BiobankLockHeld):
    """Our lock expired and another sync may hold it now: we must not publish."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _died_on_this_host(holder: dict[str, Any]) -> bool:
    """The holder ran on this host and its process is gone: its lock is stale now.

    A host sees its own processes, so a sync killed here is taken over at once instead of
    after the TTL; a holder on another host can only be judged by its expiry.
    """
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return False  # this process: its own lock is held (re-entry is the caller's business)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """A held sync lock of one biobank, renewed in the background until released."""

    def __init__(self, locks: EngineLocks, biobank_id: str, document: dict[str, Any]) -> None:
        self.locks = locks
        self.biobank_id = biobank_id
        self.document = document
        self.seq_no = -1
        self.primary_term = -1
        self.lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def doc_id(self) -> str:
        return biobank_key(self.biobank_id)

    def start_renewing(self) -> None:
        self._renewer = threading.Thread(
            target=self._renew_until_released, name=f"lock-{self.biobank_id}", daemon=True
        )
        self._renewer.start()

    def _renew_until_released(self) -> None:
        interval = self.locks.ttl / 3
        while not self._stop.wait(interval):
            try:
                self.renew()
            except EngineConflict:
                self.lost = "another sync took it over after it expired"
                log.error("sync lock of %s lost: %s", self.biobank_id, self.lost)
                return
            except (EngineUnavailable, EngineError) as err:
                # Keep trying: the engine may be back before the lease runs out.
                log.warning("could not renew the sync lock of %s: %s", self.biobank_id, err)

    def renew(self) -> None:
        """Push the expiry forward, provided nobody took the lock over meanwhile."""
        document = {**self.document, "expires_at": _now_ms() + int(self.locks.ttl * 1000)}
        self.seq_no, self.primary_term = self.locks.client.put(
            self.locks.index,
            self.doc_id,
            document,
            if_version=(self.seq_no, self.primary_term),
        )
        self.document = document

    def check(self) -> None:
        """Raise BiobankLockLost unless the lock is still ours (called before publishing)."""
        if self.lost is None and _now_ms() >= int(self.document["expires_at"]):
            self.lost = "it expired: the sync could not renew it in time"
        if self.lost is not None:
            raise BiobankLockLost(f"sync lock of {self.biobank_id} lost: {self.lost}")

    def release(self) -> None:
        """Stop renewing and delete the lock document if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if self.lost is not None:
            return
        try:
            self.locks.client.delete(
                self.locks.index,
                self.doc_id,
                if_version=(self.seq_no, self.primary_term),
            )
        except (EngineConflict, EngineNotFound):
            pass
        except (EngineUnavailable, EngineError) as err:
            log.warning(
                "sync lock of %s not released (%s); it expires by itself", self.biobank_id, err
            )


class EngineLocks:
    """One sync per biobank across hosts: a lock document per biobank in `{prefix}-locks`.

    Taking a lock creates the document with `op_type=create`, which exactly one caller
    wins. The holder renews its expiry; a lock past its expiry was left by a sync that
    died, and is taken over with a write conditional on its sequence number, which again
    exactly one caller wins. Expiry compares clocks of different hosts, so the TTL must
    be far above their skew (minutes against NTP's milliseconds).
    """

    def __init__(
        self,
        client: EngineClient,
        index: str,
        ttl: float,
        replicas: int,
        on_takeover: TakeoverRecorder | None = None,
    ) -> None:
        self.client = client
        self.index = index
        self.ttl = ttl
        self.replicas = replicas
        self.on_takeover = on_takeover
        self._index_ready = False

    def _ensure_index(self) -> None:
        if self._index_ready:
            return
        body = json.loads((ENGINE_SCHEMA_DIR / "locks.json").read_text(encoding="utf-8"))
        body.pop("description", None)
        body["settings"]["index"]["number_of_replicas"] = self.replicas
        try:
            self.client.create_index(self.index, body)
        except EngineError as err:
            if "resource_already_exists" not in str(err):
                raise
        self._index_ready = True

    def acquire(self, biobank_id: str) -> Lease:
        """Take the biobank's lock or raise BiobankLockHeld naming its holder."""
        self._ensure_index()
        now = _now_ms()
        lease = Lease(
            self,
            biobank_id,
            {
                "biobank_id": biobank_id,
                "owner": uuid.uuid4().hex,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now,
                "expires_at": now + int(self.ttl * 1000),
            },
        )
        try:
            lease.seq_no, lease.primary_term = self.client.put(
                self.index, lease.doc_id, lease.document, create=True
            )
        except EngineConflict:
            self._take_over_if_stale(lease)
        lease.start_renewing()
        return lease

    def _take_over_if_stale(self, lease: Lease) -> None:
        current = self.client.get(self.index, lease.doc_id)
        if current is None:  # released between our two calls: try once more
            lease.seq_no, lease.primary_term = self.client.put(
                self.index, lease.doc_id, lease.document, create=True
            )
            return
        holder = current["_source"]
        expires = int(holder.get("expires_at", 0))
        if expires > _now_ms() and not _died_on_this_host(holder):
            until = dt.datetime.fromtimestamp(expires / 1000, dt.UTC).isoformat(timespec="seconds")
            raise BiobankLockHeld(
                f"a sync of {lease.biobank_id} is already running on {holder.get('host')} "
                f"(pid {holder.get('pid')}); its lock expires at {until} unless renewed"
            )
        try:
            lease.seq_no, lease.primary_term = self.client.put(
                self.index,
                lease.doc_id,
                lease.document,
                if_version=(int(current["_seq_no"]), int(current["_primary_term"])),
            )
        except EngineConflict:
            raise BiobankLockHeld(
                f"a sync of {lease.biobank_id} has just started elsewhere"
            ) from None
        log.warning(
            "took over the stale sync lock of %s from %s (pid %s)",
            lease.biobank_id,
            holder.get("host"),
            holder.get("pid"),
        )
        if self.on_takeover is not None:
            try:
                self.on_takeover(lease.biobank_id, holder)
            except Exception:
                # The lock is ours either way; a count that could not be written must not
                # fail the sync that took it.
                log.exception("lock takeover of %s not recorded", lease.biobank_id)
