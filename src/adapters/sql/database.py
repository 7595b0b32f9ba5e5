"""`SqlDatabase`: the engine, a unit of work per request, readiness, and migrations."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sql.engine import create_engine
from adapters.sql.errors import translate
from adapters.sql.migrations import is_current, upgrade
from adapters.sql.repositories import (
    CatalogCache,
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
        self.catalog = CatalogCache()
        self._watchers: list[Callable[[str], None]] = []

    @classmethod
    def from_url(cls, url: str | URL, *, pool_size: int = 8) -> SqlDatabase:
        return cls(create_engine(url, pool_size=pool_size))

    def unit_of_work(self, *, read_only: bool = False) -> SqlUnitOfWork:
        """A `UnitOfWorkFactory`: pass the bound method."""
        return SqlUnitOfWork(
            SqlSession(
                self.engine, read_only=read_only, catalog=self.catalog, watchers=self._watchers
            )
        )

    def watch(self, watcher: Callable[[str], None]) -> None:
        """Call ``watcher`` with the SQL of every statement sent from now on, whichever path
        sends it, and with BEGIN, COMMIT and ROLLBACK (for tests and benchmarks that count
        round trips)."""
        self._watchers.append(watcher)
        sync_engine = self.engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", lambda *a: watcher(a[2]))
        for name in ("begin", "commit", "rollback"):
            event.listen(sync_engine, name, lambda *_, n=name: watcher(n.upper()))

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
    """One transaction on one pooled connection, taken at the first statement; rolled back
    unless committed."""

    def __init__(self, session: SqlSession) -> None:
        self._session = session
        self.accounts = SqlAccountRepository(self._session)
        self.catalog = SqlCatalogRepository(self._session)
        self.reservations = SqlReservationRepository(self._session)
        self.wallets = SqlWalletRepository(self._session)
        self.payments = SqlPaymentRepository(self._session)
        self.idempotency = SqlIdempotencyRepository(self._session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._session.connection = self._session.connection, None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                await connection.rollback()
        except DBAPIError:
            pass  # a broken connection rolls back by itself; the pool discards it
        finally:
            await connection.close()

    async def commit(self) -> None:
        connection = self._session.connection
        if connection is None:
            return  # nothing was sent: nothing to commit
        try:
            await connection.commit()
        except DBAPIError as e:
            raise _translated(e) from e


def _translated(error: DBAPIError) -> Exception:
    translated = translate(error)
    return StoreUnavailable("the database failed") if translated is error else translated
