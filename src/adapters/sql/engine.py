"""How this service reaches each database: URLs, the SQLite engine, PostgreSQL's connection
string, and migrations.

SQLite runs in the process on one connection (`sqlite.SqliteSessions`), in WAL mode with foreign
keys on; every transaction that may write starts with ``BEGIN IMMEDIATE``, so writers take turns
from their first statement and a rule read and then written inside one transaction cannot be
skewed by another process. PostgreSQL is reached through a psycopg pool (`postgres`); Alembic
migrates it on a connection of its own, made by psycopg too.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool, StaticPool

from adapters.sql.migrations import is_current, upgrade

# how long a writer waits for another process's write to end (units of work wait on the event
# loop itself: short, and the embedded default runs one process)
SQLITE_BUSY_SECONDS = 5
CONNECT_SECONDS = 2


def backend_of(url: str | URL) -> str:
    """``postgresql`` or ``sqlite``; raises `ValueError` for anything else."""
    backend = make_url(url).get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported database {backend!r}: use postgresql or sqlite")
    return backend


def sqlite_engine(url: str | URL) -> Engine:
    """A synchronous engine on one connection to a SQLite file, which the process's units of
    work, migrations and checks take turns on. The file is made readable by its owner only."""
    parsed = make_url(url).set(drivername="sqlite+pysqlite")
    if parsed.database and parsed.database != ":memory:":
        _private_file(parsed.database)
    engine = create_sync_engine(
        parsed, poolclass=StaticPool, connect_args={"timeout": SQLITE_BUSY_SECONDS}
    )

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # only transactions that may write are begun: readers read a snapshot per statement
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _private_file(path: str) -> None:
    """Create the database file, if it is not there, with mode 0600 (SQLite's WAL and shared
    memory files take their mode from it)."""
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def postgres_conninfo(url: str | URL) -> str:
    """The libpq connection string for a ``postgresql`` URL: sessions in UTC, so that rows
    read on psycopg carry UTC timestamps, with any options the URL gives (a search_path, say)."""
    options_given, plain = _split_options(make_url(url))
    uri = plain.set(drivername="postgresql").render_as_string(hide_password=False)
    return make_conninfo(uri, options=_in_utc(options_given), connect_timeout=CONNECT_SECONDS)


def postgres_migrations_engine(url: str | URL) -> Engine:
    """A synchronous SQLAlchemy engine on psycopg for Alembic, no pool of its own."""
    options_given, plain = _split_options(make_url(url))
    return create_sync_engine(
        plain.set(drivername="postgresql+psycopg"),
        poolclass=NullPool,
        connect_args={"options": _in_utc(options_given), "connect_timeout": CONNECT_SECONDS},
    )


def migrate(connection: Connection) -> None:
    """Bring the schema up to date on ``connection`` and commit."""
    upgrade(connection)
    connection.commit()


def schema_is_current(connection: Connection) -> bool:
    return is_current(connection)


def _split_options(url: URL) -> tuple[str, URL]:
    given = url.query.get("options", "")
    given = given if isinstance(given, str) else " ".join(given)
    return given, url.difference_update_query(["options"])


def _in_utc(options: str) -> str:
    return f"{options} -c TimeZone=UTC".strip()
