"""`SqlDatabase`: the engine, a unit of work per request, readiness, and migrations."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sql.engine import READ_ONLY, create_engine
from adapters.sql.errors import translate
from adapters.sql.migrations import is_current, upgrade
from adapters.sql.repositories import (
    SqlAccountRepository,
    SqlCatalogRepository,
    SqlIdempotencyRepository,
    SqlPaymentRepository,
    SqlReservationRepository,
    SqlSession,
    SqlWalletRepository,
)
from concert_domain.errors import StoreUnavailable
from concert_domain.ports import UnitOfWork


class SqlDatabase:
    """One engine shared by a process. Build it in a lifespan or a command, never at import."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str | URL, *, pool_size: int = 8) -> SqlDatabase:
        return cls(create_engine(url, pool_size=pool_size))

    def unit_of_work(self, *, read_only: bool = False) -> SqlUnitOfWork:
        """A `UnitOfWorkFactory`: pass the bound method."""
        return SqlUnitOfWork(self.engine, read_only=read_only)

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
        """Raise `StoreUnavailable` unless the database answers."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as e:
            raise StoreUnavailable("the database does not answer") from e

    async def dispose(self) -> None:
        await self.engine.dispose()


class SqlUnitOfWork(UnitOfWork):
    """One transaction on one pooled connection; rolled back unless committed."""

    def __init__(self, engine: AsyncEngine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._connection: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        try:
            self._connection = await self._engine.connect()
            if self._read_only:
                await self._connection.execution_options(**{READ_ONLY: True})
            await self._connection.begin()
        except (DBAPIError, OSError) as e:
            if self._connection is not None:
                await self._connection.close()
            raise StoreUnavailable("the database cannot be reached") from e
        session = SqlSession(self._connection)
        self.accounts = SqlAccountRepository(session)
        self.catalog = SqlCatalogRepository(session)
        self.reservations = SqlReservationRepository(session)
        self.wallets = SqlWalletRepository(session)
        self.payments = SqlPaymentRepository(session)
        self.idempotency = SqlIdempotencyRepository(session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                await connection.rollback()
        finally:
            await connection.close()

    async def commit(self) -> None:
        assert self._connection is not None, "commit outside the unit of work"
        try:
            await self._connection.commit()
        except DBAPIError as e:
            raise _translated(e) from e


def _translated(error: DBAPIError) -> Exception:
    translated = translate(error)
    return StoreUnavailable("the database failed") if translated is error else translated
