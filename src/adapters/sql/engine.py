"""Engines for PostgreSQL (psycopg 3) and SQLite, set up for this service.

SQLite runs in WAL mode with foreign keys on, and every transaction that may write starts with
``BEGIN IMMEDIATE``: writers take turns from their first statement, so a rule read and then
written inside one transaction cannot be skewed by another process. Read-only transactions
start with a plain ``BEGIN`` and read a snapshot without waiting for writers. Units of work
run on a synchronous engine with one connection (`sqlite_engine`, see `sessions.SqliteSession`);
migrations and checks on an async one (aiosqlite).
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

# how long a writer waits for another process's write to end (units of work wait on the event
# loop itself: short, and the embedded default runs one process)
SQLITE_BUSY_SECONDS = 5
CONNECT_SECONDS = 5
READ_ONLY = "concert_read_only"  # execution option: this transaction only reads


def normalize_url(url: str | URL) -> URL:
    """Pick the async driver for the dialect: ``postgresql+psycopg``, ``sqlite+aiosqlite``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database {backend!r}: use postgresql or sqlite")


def create_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """An engine for ``url``. On PostgreSQL it serves migrations and checks only, with no pool
    of its own: units of work run on psycopg directly (`sessions.PostgresConnections`)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_SECONDS}, **options
        )
        _serialize_sqlite_writers(engine.sync_engine)
        return engine
    # the URL keeps its options (``engine.url`` must name the same database); the connect
    # arguments, which take precedence, repeat them in UTC
    options_given, _ = _split_options(parsed)
    return create_async_engine(
        parsed, poolclass=NullPool, connect_args={"options": _in_utc(options_given)}, **options
    )


def sqlite_engine(url: str | URL) -> Engine:
    """A synchronous engine on one connection to a SQLite file, for units of work that take
    turns on it."""
    parsed = normalize_url(url).set(drivername="sqlite+pysqlite")
    engine = create_sync_engine(
        parsed, poolclass=StaticPool, connect_args={"timeout": SQLITE_BUSY_SECONDS}
    )
    _serialize_sqlite_writers(engine)
    return engine


def postgres_conninfo(url: str | URL) -> str:
    """The libpq connection string for a ``postgresql`` URL: sessions in UTC, so that rows
    read on psycopg carry UTC timestamps, with any options the URL gives (a search_path, say)."""
    options_given, plain = _split_options(normalize_url(url))
    uri = plain.set(drivername="postgresql").render_as_string(hide_password=False)
    return make_conninfo(uri, options=_in_utc(options_given), connect_timeout=CONNECT_SECONDS)


def _split_options(url: URL) -> tuple[str, URL]:
    given = url.query.get("options", "")
    given = given if isinstance(given, str) else " ".join(given)
    return given, url.difference_update_query(["options"])


def _in_utc(options: str) -> str:
    return f"{options} -c TimeZone=UTC".strip()


def _serialize_sqlite_writers(engine: Engine) -> None:
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
        # readers see a snapshot in WAL mode and need no lock; writers take turns
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
