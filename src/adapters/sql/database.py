"""`SqlDatabase`: a unit of work per request, readiness, and migrations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self, TypeVar

import psycopg
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sql.engine import create_engine, normalize_url, postgres_conninfo, sqlite_engine
from adapters.sql.errors import translate
from adapters.sql.migrations import is_current, upgrade
from adapters.sql.repositories import (
    SqlAccountRepository,
    SqlCatalogRepository,
    SqlIdempotencyRepository,
    SqlPaymentRepository,
    SqlReservationRepository,
    SqlWalletRepository,
)
from adapters.sql.sessions import (
    CatalogCache,
    PostgresConnections,
    PostgresSession,
    Session,
    SqliteSession,
)
from concert_domain.errors import StoreUnavailable
from concert_domain.ports import UnitOfWork

T = TypeVar("T")


class SqlDatabase:
    """One per process and event loop. Build it in a lifespan or a command, never at import:
    nothing connects until the first unit of work, `ping` or `migrate`.

    ``engine`` (SQLAlchemy, async) runs migrations and checks. Units of work run on a pool of
    ``pool_size`` psycopg connections on PostgreSQL, and on SQLite on one synchronous
    connection that they take turns on (`sessions.SqliteSession`)."""

    def __init__(self, url: str | URL, *, pool_size: int = 8) -> None:
        self.engine: AsyncEngine = create_engine(url)
        self.catalog = CatalogCache()
        self._watchers: list[Callable[[str], None]] = []
        self._postgres: PostgresConnections | None = None
        self._sqlite: Engine | None = None
        self._sqlite_turn = asyncio.Lock()
        if normalize_url(url).get_backend_name() == "postgresql":
            self._postgres = PostgresConnections(postgres_conninfo(url), size=pool_size)
        else:
            self._sqlite = sqlite_engine(url)

    @classmethod
    def from_url(cls, url: str | URL, *, pool_size: int = 8) -> SqlDatabase:
        return cls(url, pool_size=pool_size)

    def unit_of_work(self, *, read_only: bool = False) -> SqlUnitOfWork:
        """A `UnitOfWorkFactory`: pass the bound method."""
        session: Session
        if self._postgres is not None:
            session = PostgresSession(
                self._postgres, read_only=read_only, catalog=self.catalog, watchers=self._watchers
            )
        else:
            assert self._sqlite is not None
            session = SqliteSession(
                self._sqlite, self._sqlite_turn, read_only=read_only, catalog=self.catalog
            )
        return SqlUnitOfWork(session)

    def watch(self, watcher: Callable[[str], None]) -> None:
        """Call ``watcher`` with what every round trip of a unit of work sends from now on
        (for tests and benchmarks that count them): on PostgreSQL the statements of one round
        trip in one string, ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` included; on SQLite each
        statement, and ``BEGIN``, ``COMMIT`` and ``ROLLBACK``."""
        self._watchers.append(watcher)
        if self._sqlite is not None:
            engine = self._sqlite
            event.listen(engine, "before_cursor_execute", lambda *a: watcher(a[2]))
            for name in ("begin", "commit", "rollback"):
                event.listen(engine, name, lambda *_, n=name: watcher(n.upper()))

    async def migrate(self) -> None:
        """Bring the schema up to date (Alembic, to head)."""
        try:
            async with self.engine.begin() as connection:
                await connection.run_sync(upgrade)
        except DBAPIError as e:
            raise _translated(e) from e

    async def schema_is_current(self) -> bool:
        """True if `migrate` has nothing left to do."""
        try:
            async with self.engine.connect() as connection:
                return await connection.run_sync(is_current)
        except DBAPIError as e:
            raise _translated(e) from e

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the database answers, through the connections the
        units of work use."""
        if self._postgres is not None:
            pooled = await self._postgres.get()
            try:
                await pooled.execute("SELECT 1")
            except (psycopg.Error, OSError) as e:
                raise StoreUnavailable("the database does not answer") from e
            finally:
                await self._postgres.give_back(pooled)
            return
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as e:
            raise StoreUnavailable("the database does not answer") from e

    async def dispose(self) -> None:
        if self._postgres is not None:
            await self._postgres.close()
        if self._sqlite is not None:
            self._sqlite.dispose()
        await self.engine.dispose()


class SqlUnitOfWork(UnitOfWork):
    """One transaction, taken at the first statement; rolled back unless committed."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.accounts = SqlAccountRepository(session)
        self.catalog = SqlCatalogRepository(session)
        self.reservations = SqlReservationRepository(session)
        self.wallets = SqlWalletRepository(session)
        self.payments = SqlPaymentRepository(session)
        self.idempotency = SqlIdempotencyRepository(session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session.close()

    async def commit(self) -> None:
        await self._session.commit()

    async def commit_with(self, change: Awaitable[T]) -> T:
        return await self._session.commit_with(change)


def _translated(error: DBAPIError) -> Exception:
    translated = translate(error)
    return StoreUnavailable("the database failed") if translated is error else translated
