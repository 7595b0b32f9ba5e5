"""Fixtures on real stores. Without the servers the tests skip loudly, except under CI=true,
where a missing server fails the run instead."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

import services
from adapters.redis import Keys, RedisLink, connect
from adapters.sql import SqlDatabase
from adapters.sql.engine import postgres_conninfo
from adapters.sql.schema import metadata
from loop_clock import LoopClock


def _running(server: contextlib.AbstractContextManager[str]) -> Iterator[str]:
    """The server's URL while it runs; a server that is not installed skips loudly (fails
    under CI=true), while errors of the tests themselves pass through untouched."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(server)
        except services.ServiceMissing as e:
            services.missing(str(e))
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs real servers: mark it, so that ``-m "not integration"`` leaves
    them all out."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole session (use a private schema on it)."""
    yield from _running(services.postgres_server())


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A private schema on the server, for the whole session."""
    with services.private_schema(postgres_server_url) as schema_url:
        yield schema_url


@pytest.fixture(scope="session")
def _migrated_postgres(postgres_url: str) -> str:
    import asyncio

    async def migrate() -> None:
        database = SqlDatabase(postgres_url, pool_size=1)
        await database.migrate()
        await database.dispose()

    asyncio.run(migrate())
    return postgres_url


@pytest.fixture
async def postgres_database(_migrated_postgres: str) -> AsyncIterator[SqlDatabase]:
    """The session's PostgreSQL schema, emptied before each test."""
    database = SqlDatabase(_migrated_postgres, pool_size=8)
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    async with await psycopg.AsyncConnection.connect(
        postgres_conninfo(_migrated_postgres), autocommit=True
    ) as connection:
        await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the whole session."""
    yield from _running(services.redis_server())


@pytest.fixture
async def redis_keys(redis_url: str) -> AsyncIterator[tuple[RedisLink, Keys]]:
    """A link and a key prefix of this test's own; every key under it is deleted after, so a
    shared Redis is left as it was."""
    link = connect(redis_url)
    keys = Keys(prefix=f"concert-test-{secrets.token_hex(6)}")
    yield link, keys
    for key in await services.redis_keys_matching(link, f"{keys.prefix}:*"):
        await link.call("DEL", key)
    await link.aclose()


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[SqlDatabase]:
    """A fresh, migrated SQLite file."""
    database = SqlDatabase(f"sqlite:///{tmp_path / 'concert.sqlite3'}")
    await database.migrate()
    yield database
    await database.dispose()


@pytest.fixture
async def clock() -> AsyncIterator[LoopClock]:
    """A hand on the event loop's clock (`LoopClock`), for code that keeps time by it."""
    with LoopClock(asyncio.get_running_loop()) as hand:
        yield hand
