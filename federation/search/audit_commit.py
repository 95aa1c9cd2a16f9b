"""Group commit for the audit log, and waiting for it at the last moment before answering.

Every answered search writes one row, and the write ends in a commit the database makes
durable (an fsync of SQLite's WAL, PostgreSQL's WAL flush and a network round trip). On a
busy disk that commit was most of the gateway's own time per request (8 to 30 ms of a
15 to 35 ms overhead, docs/performance.md). Two things take it off the answer's path
without weakening the promise that a search the log cannot record is not answered:

- one writer thread per process writes every row queued meanwhile in one transaction, so
  concurrent searches share a commit instead of queueing for the write lock one by one;
- a request may let the write run while it builds its answer (the release step's Python,
  GraphQL's completion of the result, the JSON) and wait for the commit only before the
  answer leaves (`deferred_audit`). If the commit fails, the answer is replaced by the
  refusal, so nothing unrecorded reaches the asker. Without a deferral (the CLI, the
  Beacon endpoint, mutations that store what a search found) `record` waits at once.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from federation.state.audit_trail import AuditRecord

log = logging.getLogger(__name__)

# Rows one transaction writes at most: a bound on what one failed commit refuses.
MAX_BATCH = 64
# A receipt nobody settles in this long means the writer is stuck: refuse the answer.
COMMIT_WAIT_SECONDS = 30.0
# A writer thread with nothing to write for this long ends; the next row starts another.
WRITER_IDLE_SECONDS = 2.0


class CommitFailed(Exception):
    """The batch holding a row could not be committed (the cause is logged)."""


@dataclass
class Receipt:
    """One queued row: settled with its id once committed, or with the failure."""

    record: AuditRecord
    _done: threading.Event = field(default_factory=threading.Event)
    row_id: int | None = None
    failed: bool = False

    def settle(self, row_id: int | None) -> None:
        """Mark the row committed (with its id) or failed (None)."""
        self.row_id, self.failed = row_id, row_id is None
        self._done.set()

    def wait(self, timeout: float = COMMIT_WAIT_SECONDS) -> int:
        """The committed row's id; CommitFailed when it was not written in time."""
        if not self._done.wait(timeout) or self.failed or self.row_id is None:
            raise CommitFailed()
        return self.row_id


class GroupCommit:
    """One writer thread per process committing every queued row in one transaction."""

    def __init__(self, write_many: Callable[[Sequence[AuditRecord]], list[int]]) -> None:
        self.write_many = write_many
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
        # The process whose writer thread is running, if one is.
        self._writer_pid: int | None = None

    def submit(self, record: AuditRecord) -> Receipt:
        """Queue a row for the next commit; the receipt says when it is written."""
        receipt = Receipt(record)
        with self._lock:
            if self._writer_pid != os.getpid():
                # None running here (idle, first use, or a forked child: threads do not
                # survive a fork, and a child forgets the parent's queue): start one.
                if self._writer_pid is not None:
                    self._queue = queue.SimpleQueue()
                self._writer_pid = os.getpid()
                writer = threading.Thread(target=self._write_queued, args=(self._queue,))
                writer.name, writer.daemon = "biofed-audit", True
                writer.start()
            self._queue.put(receipt)
        return receipt

    def _write_queued(self, pending: queue.SimpleQueue[Receipt]) -> None:
        """Write batches until the queue has stayed empty for WRITER_IDLE_SECONDS, then end
        (so an idle log holds no thread, and a dropped one no database connection)."""
        while True:
            try:
                batch = [pending.get(timeout=WRITER_IDLE_SECONDS)]
            except queue.Empty:
                with self._lock:
                    if pending.empty():  # `submit` queues under this lock: nothing is lost
                        self._writer_pid = None
                        return
                continue
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[Receipt]) -> None:
        try:
            ids = self.write_many([r.record for r in batch])
        except (SQLAlchemyError, OSError):
            log.exception(
                "writing %d audit rows failed; their searches are not answered", len(batch)
            )
            for receipt in batch:
                receipt.settle(None)
            return
        except BaseException:
            # Never leave a request waiting for a writer that died on an unexpected error.
            for receipt in batch:
                receipt.settle(None)
            raise
        for receipt, row_id in zip(batch, ids, strict=True):
            receipt.settle(row_id)


_deferred: ContextVar[list[Receipt] | None] = ContextVar("biofed_deferred_audit", default=None)


class AuditReceipts:
    """The rows a request's searches queued, to be committed before its answer leaves."""

    def __init__(self, receipts: list[Receipt]) -> None:
        self.receipts = receipts

    def all_written(self) -> bool:
        """Wait for every queued row; False when any of them could not be written."""
        written = True
        for receipt in self.receipts:
            try:
                receipt.wait()
            except CommitFailed:
                written = False
        return written


@contextmanager
def deferred_audit() -> Iterator[AuditReceipts]:
    """Searches inside this block queue their audit rows instead of waiting for them; the
    caller must check `all_written()` before anything it answers leaves the process."""
    receipts: list[Receipt] = []
    token = _deferred.set(receipts)
    try:
        yield AuditReceipts(receipts)
    finally:
        _deferred.reset(token)


def defer(receipt: Receipt) -> bool:
    """Hand the receipt to the enclosing `deferred_audit` block; False when there is none."""
    receipts = _deferred.get()
    if receipts is None:
        return False
    receipts.append(receipt)
    return True
