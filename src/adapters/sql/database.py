"""`SqlDatabase`: a unit of work per request, readiness, and migrations, on either dialect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Self

import psycopg
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError

from adapters.sql.engine import (
    backend_of,
    migrate,
    postgres_conninfo,
    postgres_migrations_engine,
    schema_is_current,
    sqlite_engine,
)
from adapters.sql.errors import MigrationRefused
from adapters.sql.postgres import (
    PostgresConnections,
    PostgresPayments,
    PostgresReservations,
    PostgresSession,
    PostgresWallets,
)
from adapters.sql.repositories import (
    SqlAccountRepository,
    SqlCatalogRepository,
    SqlIdempotencyRepository,
)
from adapters.sql.session import Session
from adapters.sql.sqlite import (
    SqlitePayments,
    SqliteReservations,
    SqliteSession,
    SqliteSessions,
    SqliteWallets,
)
from concert_domain.errors import StoreUnavailable
from concert_domain.ports import (
    PaymentRepository,
    ReservationRepository,
    UnitOfWork,
    WalletRepository,
)


class SqlDatabase:
    """One per process and event loop. Build it in a lifespan or a command, never at import:
    nothing connects until the first unit of work, `ping` or `migrate`.

    On PostgreSQL units of work run on a pool of ``pool_size`` psycopg connections
    (`postgres`); on SQLite on the process's one connection, in turns (`sqlite`)."""

    def __init__(self, url: str | URL, *, pool_size: int = 8) -> None:
        self.url = url
        self.dialect = backend_of(url)
        self._postgres: PostgresConnections | None = None
        self._sqlite: SqliteSessions | None = None
        if self.dialect == "postgresql":
            self._postgres = PostgresConnections(postgres_conninfo(url), size=pool_size)
        else:
            self._sqlite = SqliteSessions(sqlite_engine(url))

    def pool_stats(self) -> dict[str, int]:
        """PostgreSQL's pool as psycopg_pool counts it (``requests_waiting``,
        ``requests_wait_ms``...); nothing for SQLite."""
        return {} if self._postgres is None else dict(self._postgres.pool.get_stats())

    def unit_of_work(self, *, read_only: bool = False) -> SqlUnitOfWork:
        """A `UnitOfWorkFactory`: pass the bound method."""
        if self._postgres is not None:
            on_postgres = PostgresSession(self._postgres, read_only=read_only)
            return SqlUnitOfWork(
                on_postgres,
                PostgresReservations(on_postgres, self._postgres),
                PostgresWallets(on_postgres),
                PostgresPayments(on_postgres),
            )
        assert self._sqlite is not None
        on_sqlite = SqliteSession(self._sqlite, read_only=read_only)
        return SqlUnitOfWork(
            on_sqlite,
            SqliteReservations(on_sqlite),
            SqliteWallets(on_sqlite),
            SqlitePayments(on_sqlite),
        )

    def watch(self, watcher: Callable[[str], None]) -> None:
        """Call ``watcher`` with what each round trip of a unit of work sends to PostgreSQL
        from now on, ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` included (for tests and
        benchmarks that count them)."""
        if self._postgres is None:
            raise ValueError("round trips are counted on PostgreSQL only")
        self._postgres.watchers.append(watcher)

    async def migrate(self) -> None:
        """Bring the schema up to date (Alembic, to head)."""
        if self._sqlite is not None:
            await self._sqlite.migrate()
            return
        await asyncio.to_thread(self._on_postgres, migrate)

    async def schema_is_current(self) -> bool:
        """True if `migrate` has nothing left to do."""
        if self._sqlite is not None:
            return await self._sqlite.schema_is_current()
        return bool(await asyncio.to_thread(self._on_postgres, schema_is_current))

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the database answers, through the connections the
        units of work use."""
        if self._sqlite is not None:
            await self._sqlite.ping()
            return
        assert self._postgres is not None
        pooled = await self._postgres.get()
        try:
            await self._postgres.bounded(pooled, pooled.execute("SELECT 1"))
        except (psycopg.Error, OSError, TimeoutError) as e:
            raise StoreUnavailable("the database does not answer") from e
        finally:
            await self._postgres.give_back(pooled)

    async def dispose(self) -> None:
        if self._postgres is not None:
            await self._postgres.close()
        if self._sqlite is not None:
            self._sqlite.dispose()

    def _on_postgres(self, work: Callable[..., object]) -> object:
        engine = postgres_migrations_engine(self.url)
        try:
            with engine.connect() as connection:
                return work(connection)
        except IntegrityError as e:  # rolled back whole: PostgreSQL's DDL is transactional
            why = " ".join(str(e.orig).split())  # one line: the message, then its detail
            raise MigrationRefused(
                f"the database holds rows the new schema refuses ({why}); nothing was migrated"
            ) from e
        except DBAPIError as e:
            raise StoreUnavailable("the database cannot be reached") from e
        finally:
            engine.dispose()


class SqlUnitOfWork(UnitOfWork):
    """One transaction, taken at the first statement; rolled back unless committed."""

    def __init__(
        self,
        session: Session,
        reservations: ReservationRepository,
        wallets: WalletRepository,
        payments: PaymentRepository,
    ) -> None:
        self._session = session
        self.accounts = SqlAccountRepository(session)
        self.catalog = SqlCatalogRepository(session)
        self.idempotency = SqlIdempotencyRepository(session)
        self.reservations = reservations
        self.wallets = wallets
        self.payments = payments

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
