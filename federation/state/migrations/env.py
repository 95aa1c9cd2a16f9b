"""Alembic's environment for the state store: run on the connection the caller opened.

`federation.state.schema_version.upgrade` opens the connection (one transaction: BEGIN
IMMEDIATE on SQLite, an advisory lock on PostgreSQL, so two processes that migrate at once
take turns) and hands it over in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context

from federation.state.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters tables by copying them; Alembic's batch mode does that for us.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
