"""A unit of work's hold on the database: one transaction, begun at its first statement, its
statements sent in as few round trips as the dialect allows, errors translated into the core's.

On PostgreSQL a session runs on a psycopg connection in autocommit mode and writes its own
``BEGIN``, ``COMMIT`` and ``ROLLBACK``. The statements it is given together, with the ``BEGIN``
when they open the transaction, go as one simple-protocol query, bound on the client: one round
trip, and each statement still runs after the one before has finished, with a snapshot of its
own. Each statement is prepared once per connection (`queries.Query`) and sent as an
``EXECUTE`` of it, so that the server neither parses nor plans it again. A read-only session
sends no ``BEGIN`` at all: under READ COMMITTED every statement reads its own snapshot anyway,
so each read is a transaction of its own and the session costs no ``ROLLBACK``. A change made
with `commit_with` takes the ``COMMIT`` along in its round trip; should one of its statements
fail, PostgreSQL skips the rest, ``COMMIT`` included, and the transaction is rolled back.

On SQLite, which runs in the process, the statements go one by one through SQLAlchemy's
synchronous engine, on the event loop itself: a statement takes microseconds, where an async
driver's hop to a thread and back took a few hundred. The process's units of work take turns on
its one connection (a lock, taken at the first statement and given back at the end), as the
in-memory store's do; a unit of work awaits nothing else meanwhile, so the turns are short.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from adapters.sql.engine import READ_ONLY
from adapters.sql.errors import translate, translate_psycopg
from adapters.sql.queries import Query, arguments
from concert_domain.catalog import ConcertDate, Seat
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import DateId, SeatId

Step = tuple[Query, dict[str, Any]]
Watcher = Callable[[str], None]
T = TypeVar("T")


@attrs.define
class CatalogCache:
    """Seats and dates of this process, kept once read: nothing changes them once created, so
    the cache cannot go stale. Bounded: emptied when it passes ``limit`` entries."""

    limit: int = 200_000
    seats: dict[SeatId, Seat] = attrs.Factory(dict)
    dates: dict[DateId, ConcertDate] = attrs.Factory(dict)
    loading: asyncio.Lock = attrs.Factory(asyncio.Lock)

    def keep_seat(self, seat: Seat) -> Seat:
        if len(self.seats) >= self.limit:
            self.seats.clear()
        self.seats[seat.seat_id] = seat
        return seat

    def keep_date(self, concert_date: ConcertDate) -> ConcertDate:
        if len(self.dates) >= self.limit:
            self.dates.clear()
        self.dates[concert_date.date_id] = concert_date
        return concert_date


class Session(Protocol):
    """What the repositories need of a transaction. Rows read by column name."""

    dialect: str
    read_only: bool
    catalog: CatalogCache

    async def run(self, query: Query, **params: Any) -> Sequence[Any]:
        """The rows of ``query`` (none for a statement that returns none)."""
        ...

    async def run_together(self, *steps: Step) -> list[Sequence[Any]]:
        """The rows of each statement, run in order in this transaction, in one round trip
        where the dialect allows."""
        ...

    async def commit(self) -> None: ...

    async def commit_with(self, change: Awaitable[T]) -> T:
        """`ports.UnitOfWork.commit_with`."""
        ...

    async def close(self) -> None:
        """Roll back what was not committed and give the connection back."""
        ...


class PostgresConnections:
    """The psycopg connections of one process for its sessions: a pool, opened at first use
    (it needs a running event loop), in autocommit mode, with UTC timestamps."""

    def __init__(self, conninfo: str, *, size: int, wait_seconds: float = 5.0) -> None:
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, "prepare_threshold": None},
            timeout=wait_seconds,  # then StoreUnavailable, not a request that hangs
            open=False,
            name="concert",
        )
        # the names of the statements prepared on each connection
        self.prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[str]] = (
            weakref.WeakKeyDictionary()
        )

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self.pool.closed:
            await self.pool.open()  # safe to call again: every caller may race here at start
        try:
            return await self.pool.getconn()
        except (PoolTimeout, psycopg.OperationalError) as e:
            raise StoreUnavailable("the database cannot be reached") from e

    async def give_back(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Return ``connection``; the pool discards it if it is broken or mid-query."""
        await self.pool.putconn(connection)

    async def close(self) -> None:
        if not self.pool.closed:
            await self.pool.close()


class PostgresSession:
    dialect = "postgresql"

    def __init__(
        self,
        connections: PostgresConnections,
        *,
        read_only: bool,
        catalog: CatalogCache,
        watchers: Sequence[Watcher] = (),
    ) -> None:
        self.read_only = read_only
        self.catalog = catalog
        self._connections = connections
        self._watchers = watchers
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._cursor: psycopg.AsyncClientCursor[Any] | None = None
        self._commit_next = False  # the next round trip takes the COMMIT along
        self._committed = False  # by such a round trip: what follows stands alone

    async def run(self, query: Query, **params: Any) -> Sequence[Any]:
        [found] = await self.run_together((query, params))
        return found

    async def run_together(self, *steps: Step) -> list[Sequence[Any]]:
        cursor = self._cursor or await self._connect()
        await self._prepare(query for query, _ in steps)
        statements = [cursor.mogrify(q.execute, _adapted(arguments(q, p))) for q, p in steps]
        shown = [query.postgresql for query, _ in steps]
        writes = not (self.read_only or self._committed)
        begins = writes and self._status() == TransactionStatus.IDLE
        commits = writes and self._commit_next
        head, tail = ["BEGIN"] if begins else [], ["COMMIT"] if commits else []
        await self._send(
            ";\n".join([*head, *statements, *tail]), ";\n".join([*head, *shown, *tail])
        )
        if commits:
            self._commit_next, self._committed = False, True
        found: list[Sequence[Any]] = []
        if begins:
            cursor.nextset()  # past BEGIN's result
        for _ in steps:
            found.append(await cursor.fetchall() if cursor.description else [])
            cursor.nextset()
        return found

    async def commit(self) -> None:
        if self._connection is not None and self._status() != TransactionStatus.IDLE:
            await self._send("COMMIT", "COMMIT")

    async def commit_with(self, change: Awaitable[T]) -> T:
        self._commit_next = not self.read_only
        try:
            result = await change
        finally:
            unsent, self._commit_next = self._commit_next, False
        if unsent:  # the change sent nothing, or read from a cache: an ordinary commit
            await self.commit()
        return result

    async def close(self) -> None:
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is None:
            return
        try:
            if not connection.broken and self._status(connection) != TransactionStatus.IDLE:
                self._announce("ROLLBACK")
                await connection.execute("ROLLBACK")
        except psycopg.Error:
            pass  # a broken connection rolls back by itself; the pool discards it
        finally:
            await self._connections.give_back(connection)

    async def _connect(self) -> psycopg.AsyncClientCursor[Any]:
        self._connection = await self._connections.get()
        self._cursor = psycopg.AsyncClientCursor(self._connection, row_factory=namedtuple_row)
        return self._cursor

    async def _prepare(self, queries: Iterable[Query]) -> None:
        """Prepare, in one round trip, the statements this connection has not seen."""
        assert self._connection is not None
        prepared = self._connections.prepared.setdefault(self._connection, set())
        missing = {query.name: query.prepare for query in queries if query.name not in prepared}
        if missing:
            try:
                await self._send(";\n".join(missing.values()), ";\n".join(missing.values()))
            except BaseException:
                # which of them the server kept is unknown now: the pool replaces the connection
                await self._connection.close()
                raise
            prepared.update(missing)

    async def _send(self, sql: str, shown: str) -> None:
        """Send ``sql``; watchers see ``shown``, the statements as written."""
        assert self._cursor is not None
        self._announce(shown)
        try:
            await self._cursor.execute(sql)
        except psycopg.Error as e:
            translated = translate_psycopg(e)
            if translated is e:
                raise
            raise translated from e

    def _status(self, connection: psycopg.AsyncConnection[Any] | None = None) -> TransactionStatus:
        found = connection or self._connection
        assert found is not None
        return TransactionStatus(found.info.transaction_status)

    def _announce(self, sql: str) -> None:
        for watcher in self._watchers:
            watcher(sql)


def _adapted(values: dict[str, Any]) -> dict[str, Any]:
    """Values as psycopg binds them: a mapping (a JSON column's) goes as JSON."""
    return {k: Json(v) if isinstance(v, dict) else v for k, v in values.items()}


class SqliteSession:
    dialect = "sqlite"

    def __init__(
        self, engine: Engine, turn: asyncio.Lock, *, read_only: bool, catalog: CatalogCache
    ) -> None:
        self.read_only = read_only
        self.catalog = catalog
        self._engine = engine
        self._turn = turn
        self._connection: Connection | None = None

    async def run(self, query: Query, **params: Any) -> Sequence[Any]:
        [found] = await self.run_together((query, params))
        return found

    async def run_together(self, *steps: Step) -> list[Sequence[Any]]:
        connection = self._connection or await self._begin()
        found = []
        for query, params in steps:
            statement = query.for_dialect("sqlite")
            try:
                result = connection.execute(statement, arguments(query, params))
            except DBAPIError as e:
                translated = translate(e)
                if translated is e:
                    raise
                raise translated from e
            found.append(result.all() if result.returns_rows else [])
        return found

    async def commit_with(self, change: Awaitable[T]) -> T:
        result = await change  # in the process, a separate COMMIT costs little
        await self.commit()
        return result

    async def commit(self) -> None:
        if self._connection is None:
            return  # nothing was sent: nothing to commit
        try:
            self._connection.commit()
        except DBAPIError as e:
            translated = translate(e)
            raise (
                StoreUnavailable("the database failed") if translated is e else translated
            ) from e

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                connection.rollback()
        except DBAPIError:
            pass  # a broken connection rolls back by itself
        finally:
            connection.close()
            self._turn.release()

    async def _begin(self) -> Connection:
        await self._turn.acquire()
        connection = None
        try:
            connection = self._engine.connect()
            if self.read_only:
                connection = connection.execution_options(**{READ_ONLY: True})
            connection.begin()
        except BaseException as e:
            if connection is not None:
                connection.close()
            self._turn.release()
            if isinstance(e, DBAPIError | OSError):
                raise StoreUnavailable("the database cannot be reached") from e
            raise
        self._connection = connection
        return connection
