"""Schema migrations of the state store: Alembic, with the scripts inside the package.

`biofed migrate` upgrades a store to the newest revision. Every process checks the
revision when it opens the store: a PostgreSQL store that is behind is refused with a
message that says to run `biofed migrate` (several hosts share it, so one deliberate step
upgrades it); the embedded SQLite file belongs to one host and is upgraded in place.
"""

from __future__ import annotations

import functools
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from federation.errors import FederationError
from federation.state.database import POSTGRESQL, SQLITE_BEGIN, shown

# Any fixed number: PostgreSQL advisory locks are keyed by a 64-bit integer.
_MIGRATION_LOCK = 0x62696F666564  # "biofed"


class SchemaOutOfDate(FederationError, RuntimeError):
    """The store's schema is not the revision this version of biofed needs."""

    code = "STATE_SCHEMA_OUT_OF_DATE"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    location = resources.files("federation.state") / "migrations"
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The newest revision this version of biofed knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    """The store's revision; None for a store never migrated."""
    with engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the store to the newest revision; (revision before, revision after)."""
    with engine.begin() as connection:
        if engine.dialect.name == POSTGRESQL:
            # Two hosts starting `biofed migrate` at once take turns.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(_config(connection), "head")
    return before, head()


def check(engine: Engine) -> None:
    """Raise SchemaOutOfDate unless the store is at the newest revision."""
    found, wanted = current(engine), head()
    if found == wanted:
        return
    where = shown(engine.url)
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if found is not None and found not in known:
        raise SchemaOutOfDate(
            f"the state store {where} is at schema revision {found}, newer than this version "
            f"of biofed knows ({wanted}); upgrade biofed on this host"
        )
    raise SchemaOutOfDate(
        f"the state store {where} is at schema revision {found or 'none (empty)'}, and this "
        f"version of biofed needs {wanted}: run `biofed migrate` once (it upgrades the "
        "shared database for every host), then start again"
    )
