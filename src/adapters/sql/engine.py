"""Async engines for PostgreSQL (psycopg 3) and SQLite (aiosqlite), set up for this service.

SQLite runs in WAL mode with foreign keys on, and every transaction that may write starts with
``BEGIN IMMEDIATE``: writers take turns from their first statement, so a rule read and then
written inside one transaction cannot be skewed by another process. Read-only transactions
start with a plain ``BEGIN`` and read a snapshot without waiting for writers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_SECONDS = 30
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


def create_engine(url: str | URL, *, pool_size: int = 8, **options: Any) -> AsyncEngine:
    """An engine for ``url``. Small pools: on this hardware 4 to 8 connections gave the same
    throughput as large ones with far better tail latency."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_SECONDS}, **options
        )
        _serialize_sqlite_writers(engine)
        return engine
    # no pre-ping: it would cost a round trip per transaction; a dead connection fails its
    # statement instead, which becomes StoreUnavailable, and the pool replaces it
    # sessions in UTC, so that the hot paths reading psycopg rows directly get UTC timestamps;
    # added to any options the URL already gives (a search_path, say)
    given = parsed.query.get("options", "")
    given = given if isinstance(given, str) else " ".join(given)
    connect_args = {"options": f"{given} -c TimeZone=UTC".strip()}
    return create_async_engine(
        parsed, pool_size=pool_size, max_overflow=0, connect_args=connect_args, **options
    )


def _serialize_sqlite_writers(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        # readers see a snapshot in WAL mode and need no lock; writers take turns
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
