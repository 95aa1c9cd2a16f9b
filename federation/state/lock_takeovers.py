"""Engine lock takeovers, recorded where every host's `/metrics` can count them."""

from __future__ import annotations

import socket

from sqlalchemy import Engine, func, insert, select

from federation.state.database import reading, writing
from federation.state.schema import lock_takeovers
from federation.state.sync_records import now


class LockTakeovers:
    """Each takeover of a biobank's sync lock from a holder that died or let it expire."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, biobank_id: str, previous_host: str | None, previous_pid: int | None) -> None:
        """Record that this host took over the biobank's lock from the previous holder."""
        with writing(self.engine) as db:
            db.execute(
                insert(lock_takeovers).values(
                    biobank_id=biobank_id,
                    taken_at=now(),
                    host=socket.gethostname(),
                    previous_host=previous_host,
                    previous_pid=previous_pid,
                )
            )

    def counts(self) -> dict[str, int]:
        """Takeovers so far, per biobank."""
        query = select(lock_takeovers.c.biobank_id, func.count()).group_by(
            lock_takeovers.c.biobank_id
        )
        with reading(self.engine) as db:
            return {str(biobank): int(n) for biobank, n in db.execute(query)}
