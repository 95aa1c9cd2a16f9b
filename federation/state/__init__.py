"""The shared state store: SQLite by default, PostgreSQL when several hosts serve."""

from federation.state.database import StateUrlError, state_url
from federation.state.schema_version import SchemaOutOfDate
from federation.state.store import StateStore, open_state_store

__all__ = ["SchemaOutOfDate", "StateStore", "StateUrlError", "open_state_store", "state_url"]
