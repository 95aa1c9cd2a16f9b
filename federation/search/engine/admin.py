"""Index administration for the generation writer: names, schema, aliases, locks, retries."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from federation.search.engine.client import (
    EngineClient,
    EngineError,
    EngineUnavailable,
)
from federation.search.engine.config import EngineConfig
from federation.search.engine.layout import IndexNames, load_index_schema
from federation.search.engine.locks import EngineLocks, Lease, TakeoverRecorder
from federation.state import open_state_store

log = logging.getLogger(__name__)

T = TypeVar("T")

# Retries of engine writes (bulk, create, alias swap) back off from this, doubling.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 15.0


def _takeover_recorder(state: tuple[str, Path]) -> TakeoverRecorder:
    """Record takeovers in the state store, where /metrics counts them for every host."""

    def record(biobank_id: str, holder: dict[str, Any]) -> None:
        store = open_state_store(*state)
        try:
            pid = holder.get("pid")
            store.lock_takeovers.record(
                biobank_id, holder.get("host"), pid if isinstance(pid, int) else None
            )
        finally:
            store.close()

    return record


class IndexAdmin:
    """The index administration a generation writer needs: the write client, index names,
    the mappings for the engine's version, alias reads and swaps, the biobank locks and
    retries with backoff. Narrower than the backend: no searches, no incremental changes."""

    def __init__(self, config: EngineConfig, client: EngineClient) -> None:
        self.config = config
        self.client = client
        self.names = IndexNames(config.engine.index_prefix)
        self.locks = EngineLocks(
            client,
            self.names.locks,
            config.engine.lock_ttl,
            config.engine.replicas,
            on_takeover=_takeover_recorder(config.state) if config.state else None,
        )
        self._held: dict[str, tuple[Lease, int]] = {}
        self._held_lock = threading.Lock()
        self._schema: dict[str, Any] | None = None

    def index_schema(self) -> dict[str, Any]:
        """Settings and mappings for the engine's version (asked once, on first write)."""
        if self._schema is None:
            info = self.retrying("read the engine version", self.client.info)
            version = info.get("version", {})
            distribution = str(version.get("distribution", "elasticsearch"))
            if distribution != self.config.distribution:
                raise EngineError(
                    f"backend is {self.config.distribution} but {self.config.engine.urls[0]} runs "
                    f"{distribution}; set backend: {distribution}"
                )
            major = int(str(version.get("number", "0")).split(".")[0])
            self._schema = load_index_schema(distribution, major)
        return self._schema

    def live_indices(self, biobank_id: str) -> list[str]:
        """The index (normally one) behind the biobank's alias."""
        alias = self.names.biobank_alias(biobank_id)
        found = self.retrying(
            "read aliases", lambda: self.client.aliases(self.names.generations(biobank_id))
        )
        return sorted(index for index, aliases in found.items() if alias in aliases)

    def drop_orphans(self, biobank_id: str) -> list[str]:
        """Delete the biobank's indices that no alias serves: left by a crashed sync.

        Safe only under the biobank's lock, when no other sync is building one.
        """
        alias = self.names.biobank_alias(biobank_id)
        found = self.retrying(
            "read aliases", lambda: self.client.aliases(self.names.generations(biobank_id))
        )
        orphans = sorted(index for index, aliases in found.items() if alias not in aliases)
        if orphans:
            log.warning("deleting indices a failed sync of %s left behind: %s", biobank_id, orphans)
            self.retrying("delete orphans", lambda: self.client.delete_indices(orphans))
        return orphans

    def swap_aliases(
        self, biobank_id: str, index: str, actions: Sequence[Mapping[str, Any]]
    ) -> None:
        """Apply the alias swap once, even when an answer is lost and the call retried."""

        def attempt() -> None:
            try:
                self.client.update_aliases(actions)
            except (EngineUnavailable, EngineError):
                # The change may have been applied before the connection dropped.
                with contextlib.suppress(EngineUnavailable, EngineError):
                    if index in self.client.aliases(self.names.biobank_alias(biobank_id)):
                        return
                raise

        self.retrying("swap aliases", attempt)

    def acquire_lock(self, biobank_id: str) -> Lease:
        """Take (or re-enter, in this process) the biobank's sync lock."""
        with self._held_lock:
            held = self._held.get(biobank_id)
            if held is not None:
                self._held[biobank_id] = (held[0], held[1] + 1)
                return held[0]
        lease = self.retrying("take the sync lock", lambda: self.locks.acquire(biobank_id))
        with self._held_lock:
            self._held[biobank_id] = (lease, 1)
        return lease

    def release_lock(self, biobank_id: str) -> None:
        """Leave the lock; the outermost holder releases it."""
        with self._held_lock:
            lease, depth = self._held[biobank_id]
            if depth > 1:
                self._held[biobank_id] = (lease, depth - 1)
                return
            del self._held[biobank_id]
        lease.release()

    @contextlib.contextmanager
    def lock(self, biobank_id: str) -> Iterator[Lease]:
        """Hold the biobank's sync lock for the block (across hosts; re-entrant here)."""
        lease = self.acquire_lock(biobank_id)
        try:
            yield lease
        finally:
            self.release_lock(biobank_id)

    def retrying(self, what: str, operation: Callable[[], T]) -> T:
        """Run an engine write, retrying outages with exponential backoff, then give up."""
        delay = BACKOFF_FIRST_S
        attempts = self.config.engine.bulk_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return operation()
            except EngineUnavailable as err:
                if attempt == attempts:
                    raise EngineUnavailable(
                        f"{what}: gave up after {attempts} attempts: {err}"
                    ) from err
                log.warning(
                    "%s failed (%s); retry %d/%d in %.1fs", what, err, attempt, attempts - 1, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release every lease still held."""
        with self._held_lock:
            leases = [lease for lease, _ in self._held.values()]
            self._held.clear()
        for lease in leases:
            lease.release()
