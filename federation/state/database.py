"""Where the state store lives: a SQLite file by default, PostgreSQL when hosts share it.

`state_url` is empty for the embedded default (`state.db` in the data folder), a
`sqlite:///path` for another file, or `postgresql://user@host:port/database` for a shared
database. The password never sits in a settings file: it comes from BIOFED_STATE_PASSWORD
(or libpq's own PGPASSWORD), and a URL that carries one is refused.

SQLite write transactions start with BEGIN IMMEDIATE, so a read-modify-write (a rate-limit
bucket, a privacy budget) holds the database's one write lock from its first read and two
processes cannot both spend the same tokens. On PostgreSQL the same code locks the row
with SELECT ... FOR UPDATE.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from federation.errors import FederationError
from federation.sqlite_wal import use_wal

STATE_FILE = "state.db"
PASSWORD_VARIABLES = ("BIOFED_STATE_PASSWORD", "PGPASSWORD")
# Raw quarantine payloads and the audit log are personal data: owner only.
FILE_MODE = 0o600
FOLDER_MODE = 0o700
# A writer waits this long for another process's write lock before giving up.
SQLITE_BUSY_SECONDS = 30
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
SQLITE, POSTGRESQL = "sqlite", "postgresql"
# An execution option: the SQLite BEGIN a transaction starts with (reads use DEFERRED).
SQLITE_BEGIN = "biofed_sqlite_begin"


class StateUrlError(FederationError, ValueError):
    """A `state_url` setting that names no usable store; the message quotes it."""

    code = "BAD_SETTING"


def state_url(value: str | None, data_dir: Path, environ: Mapping[str, str] | None = None) -> URL:
    """The SQLAlchemy URL of the store named by the `state_url` setting."""
    env = os.environ if environ is None else environ
    if value is None or not str(value).strip():
        return URL.create("sqlite", database=str(Path(data_dir) / STATE_FILE))
    text = str(value).strip()
    try:
        url = make_url(text)
    except ArgumentError:
        raise StateUrlError(
            f"state_url: {text!r} is not a URL (postgresql://user@host:port/database "
            "or sqlite:///path)"
        ) from None
    if url.password is not None:
        raise StateUrlError(
            f"state_url: {url.render_as_string(hide_password=True)!r} carries a password; "
            f"take it out and set {PASSWORD_VARIABLES[0]} in the environment instead"
        )
    backend = url.get_backend_name()
    if backend == SQLITE:
        if not url.database or url.database == ":memory:":
            raise StateUrlError(
                f"state_url: {text!r} names no file; a state store must outlive the process"
            )
        return URL.create("sqlite", database=url.database)
    if backend in (POSTGRESQL, "postgres"):
        if not url.database:
            raise StateUrlError(f"state_url: {text!r} names no database (…/database)")
        password = next((env[v] for v in PASSWORD_VARIABLES if env.get(v)), None)
        return url.set(drivername="postgresql+psycopg", password=password)
    raise StateUrlError(
        f"state_url: {text!r} is neither sqlite:///path nor postgresql://user@host:port/database"
    )


def shown(url: URL) -> str:
    """The URL for messages and logs: never the password, nor the driver's name."""
    plain = URL.create(url.get_backend_name(), url.username, None, url.host, url.port, url.database)
    return plain.render_as_string(hide_password=True)


def create_state_engine(url: URL) -> Engine:
    """An engine for the store, with each engine's settings for safe concurrent writers."""
    if url.get_backend_name() == SQLITE:
        assert url.database is not None
        _private_file(Path(url.database))
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={
                "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
                "application_name": "biofed",
            },
        )
    # A pooled connection must never be used by two processes: a forked child starts
    # with an empty pool (SQLAlchemy's documented recipe for multiprocessing).
    ref = weakref.ref(engine)

    def _after_fork() -> None:
        forked = ref()
        if forked is not None:
            forked.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork)
    return engine


def _private_file(path: Path) -> None:
    """Create the SQLite file (and a missing folder) readable by its owner only."""
    if not path.parent.exists():
        path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    # Opened only when missing: closing any descriptor of a file drops every POSIX lock this
    # process holds on it, so opening an open database once more would silently release the
    # locks of this process's pooled SQLite connections; another process closing its last
    # connection would then delete the -wal and -shm files under them ("disk I/O error",
    # seen when a worker's sync ended while the gateway's store was open).
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
        os.close(fd)
    # A file made world-readable by an older version is tightened too; SQLite gives its
    # -wal and -shm files the mode of the database file.
    if path.stat().st_mode & 0o077:
        path.chmod(FILE_MODE)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would issue a deferred BEGIN; we issue ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    use_wal(dbapi_connection)
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    # An acknowledged audit row or ledger entry must survive a power cut.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: BEGIN IMMEDIATE on SQLite, committed at the end of the block."""
    with engine.begin() as connection:
        yield connection


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read transaction that takes no write lock."""
    with (
        engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as connection,
        connection.begin(),
    ):
        yield connection


def upsert(connection: Connection, table: Table) -> Any:
    """INSERT ... ON CONFLICT for the connection's engine (both spell it the same way)."""
    if connection.dialect.name == SQLITE:
        return sqlite_insert(table)
    return postgresql_insert(table)


def stored_json(value: Any) -> str:
    """A JSON column's text: compact, keys sorted, non-ASCII kept as it is."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
