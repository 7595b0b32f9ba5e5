"""PostgreSQL: units of work on a psycopg pool, in as few round trips as the work allows.

A session runs on a psycopg connection in autocommit mode and writes its own ``BEGIN`` and
``COMMIT``. Statements whose rows nobody needs wait (`PostgresSession.defer`) and go with the
next round trip; everything a round trip carries, ``BEGIN`` and ``COMMIT`` included, goes as
one simple-protocol query, bound on the client, each statement still its own with a snapshot of
its own. So a unit of work that only changes things and then commits is one round trip. Each
statement is prepared once per connection (`queries.Query`) and sent as an ``EXECUTE`` of it.

A change refused by the database itself (a seat someone holds, a hold limit reached) is raised
by the statement that tries it, through ``concert_refuse``: PostgreSQL then skips what follows
in the round trip, ``COMMIT`` included, so the refusal leaves nothing, whether it came out of a
statement or out of the commit that carried it.

A read-only session sends no ``BEGIN``: under READ COMMITTED every statement reads a snapshot
of its own anyway. It takes a connection for each round trip and gives it back at once, so it
holds nothing between its reads.

A hold names its reservation before it is written: each process takes reservation ids a block
at a time from the table's sequence, whose increment is the block size (migration 0002). That
is what lets a hold be one round trip: nothing it answers waits for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select as sockets
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    any_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql

from adapters.sql import rows
from adapters.sql import statements as sql
from adapters.sql.errors import translate_psycopg
from adapters.sql.queries import Query, arguments, param
from adapters.sql.repositories import SqlReservationRepository, SqlWalletRepository
from adapters.sql.schema import HELD_OR_PAID, ledger, payments, reservations, wallets
from adapters.sql.session import DuplicateRow, Step, TransactionRules
from concert_domain.catalog import Seat
from concert_domain.errors import (
    ConcertError,
    HoldLimitReached,
    InsufficientBalance,
    SeatUnavailable,
    StoreUnavailable,
    TransactionAborted,
    TransactionConflict,
)
from concert_domain.ids import PaymentId, ReservationId, UserId
from concert_domain.ports import PaymentRepository
from concert_domain.reservations import Reservation
from concert_domain.wallet import LedgerKind, Payment, Refund, Sale

# SQLSTATE of `concert_refuse`: its message is one of the codes below, its detail a number
REFUSAL_STATE = "CR001"
# no request waits much longer than this on a database that does not answer
ROUND_TRIP_SECONDS = 2.0
WAIT_SECONDS = 2.0  # for a pooled connection
# for the rows of a bulk insert (a 20,000-seat date takes a small fraction of it)
BULK_SECONDS = 30.0
# connection exceptions, and a server shutting down or terminating the backend
LOST_STATES = ("08", "57P")
RESERVATION_ID_BLOCK = 100
REFUSALS: dict[str, Callable[[int], ConcertError]] = {
    "seat_unavailable": SeatUnavailable.taken,
    "hold_limit_reached": HoldLimitReached.at,
    "payment_race": lambda _: TransactionConflict("a hold changed while it was being paid"),
}
# the constraint a debit past the balance breaks, whatever the race
BALANCE_NOT_NEGATIVE = "ck_wallets_balance_not_negative"

Watcher = Callable[[str], None]
T = TypeVar("T")


@attrs.define
class _IdBlock:
    next: int = 0
    end: int = 0


class PostgresConnections:
    """The psycopg connections of one process: a pool, opened at first use (it needs a
    running event loop), in autocommit mode, with UTC timestamps; the statements prepared on
    each; and this process's block of reservation ids."""

    def __init__(self, conninfo: str, *, size: int, wait_seconds: float = WAIT_SECONDS) -> None:
        self.size = size
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, "prepare_threshold": None},
            timeout=wait_seconds,  # then StoreUnavailable, not a request that hangs
            open=False,
            name="concert",
        )
        self.prepared: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], set[str]] = (
            weakref.WeakKeyDictionary()
        )
        self.reservation_ids = _IdBlock()
        self.lent = 0  # connections handed out and not given back
        self.watchers: list[Watcher] = []
        self._draining: asyncio.Future[None] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        """A connection that has heard nothing from the server since it was last used: an
        idle connection the server has written to was told it is finished (a restart, a
        terminated backend), so it is dropped for the next, at the cost of a poll of its
        socket, not of a round trip."""
        if self.pool.closed:
            await self.pool.open()  # safe to call again: every caller may race here at start
        try:
            for _ in range(self.size + 1):
                connection = await self.pool.getconn()
                if not _spoken_to(connection):
                    self.lent += 1
                    return connection
                await connection.close()
                await self.pool.putconn(connection)  # closed: the pool makes a new one
        except PoolTimeout as e:
            if self.lent >= self.size:  # every connection is in use: none came back in time
                raise StoreUnavailable("no database connection came free in time") from e
            raise StoreUnavailable("the database cannot be reached") from e
        except psycopg.OperationalError as e:
            raise StoreUnavailable("the database cannot be reached") from e
        raise StoreUnavailable("the database keeps closing its connections")

    async def bounded(self, connection: psycopg.AsyncConnection[Any], work: Awaitable[T]) -> T:
        """``work`` on ``connection``, given up after `ROUND_TRIP_SECONDS` (`TimeoutError`).

        Not by cancelling it: psycopg answers a cancelled query by asking the server to cancel
        it, on a new connection, and then waiting for the query, up to ten seconds in all,
        which is what a server that does not answer would cost every request. The connection's
        socket is shut instead, which fails the query at once; and the pool's other idle
        connections, likely cut off too, are let go, so that the next requests connect afresh
        rather than find out one by one."""
        late = False

        def shut() -> None:
            nonlocal late
            late = True
            _shut(connection)

        timer = asyncio.get_running_loop().call_later(ROUND_TRIP_SECONDS, shut)
        try:
            return await work
        except (psycopg.Error, OSError) as e:
            if late:
                raise TimeoutError(f"no answer within {ROUND_TRIP_SECONDS} s") from e
            raise
        finally:
            timer.cancel()
            if late and self._draining is None and not self.pool.closed:
                self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            with contextlib.suppress(Exception):
                await self.pool.drain()
        finally:
            self._draining = None

    async def give_back(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Return ``connection``; the pool discards it if it is broken or mid-query."""
        self.lent -= 1
        await self.pool.putconn(connection)

    async def close(self) -> None:
        if not self.pool.closed:
            await self.pool.close()


class PostgresSession(TransactionRules):
    def __init__(self, connections: PostgresConnections, *, read_only: bool) -> None:
        super().__init__(read_only=read_only)
        self._connections = connections
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._begun = False

    async def run(self, query: Query, **params: Any) -> Sequence[Any]:
        [found] = await self.run_together((query, params))
        return found

    async def run_together(self, *steps: Step) -> list[Sequence[Any]]:
        self._check_writes(steps)
        pending = self._take_pending()
        found = await self._round_trip([*pending, *steps])
        return found[len(pending) :]

    async def commit(self) -> None:
        pending = self._to_commit()
        if pending is None:
            return
        if pending or self._begun:
            await self._round_trip(pending, commit=True)
        self._committed()

    async def insert_many(
        self, table: Table, columns: Sequence[str], rows: Iterable[dict[str, Any]]
    ) -> None:
        """By ``COPY``: the rows stream to the server as they come, in the transaction."""
        self._check_writable()
        pending = self._take_pending()
        if pending or not self._begun:
            await self._round_trip(pending)  # opens the transaction
        connection = self._connection
        assert connection is not None
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        self._announce(statement)
        try:
            async with asyncio.timeout(BULK_SECONDS):
                async with connection.cursor().copy(statement) as copy:
                    for row in rows:
                        await copy.write_row([row[column] for column in columns])
        except TimeoutError as e:
            await self._lose(connection)
            raise StoreUnavailable("the database did not take the rows in time") from e
        except psycopg.Error as e:
            if _lost(connection, e):
                await self._lose(connection)
                raise StoreUnavailable("the database connection was lost") from e
            self._aborted()
            if isinstance(e, psycopg.errors.UniqueViolation):
                raise DuplicateRow(e.diag.constraint_name) from e
            raise translate_psycopg(e) from e

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if not connection.broken and _status(connection) != TransactionStatus.IDLE:
                self._announce("ROLLBACK")
                await self._connections.bounded(connection, connection.execute("ROLLBACK"))
        except (psycopg.Error, TimeoutError):
            pass  # a broken connection rolls back by itself; the pool discards it
        finally:
            await self._connections.give_back(connection)

    async def _round_trip(self, steps: list[Step], *, commit: bool = False) -> list[Sequence[Any]]:
        """Send ``steps`` in one query, with ``BEGIN`` when they open the transaction and
        ``COMMIT`` when asked; the rows of each step.

        A round trip that changes nothing once done, because it is a read or because it opens
        the transaction without committing it, is sent again on a fresh connection when its
        connection turns out to be gone: the server has forgotten what it had begun. One that
        carries a ``COMMIT`` is not, for it may have been committed: that is `StoreUnavailable`.
        """
        first = self.read_only or not (self._begun or self.committed)
        try:
            return await self._round_trip_once(steps, commit=commit)
        except _ConnectionLost as lost:
            if not first or commit:
                raise StoreUnavailable("the database connection was lost") from lost.__cause__
        self._begun = False
        try:
            return await self._round_trip_once(steps, commit=commit)
        except _ConnectionLost as lost:  # the fresh one too: the database is going away
            raise StoreUnavailable("the database connection was lost") from lost.__cause__

    async def _round_trip_once(
        self, steps: list[Step], *, commit: bool = False
    ) -> list[Sequence[Any]]:
        connection = self._connection or await self._connections.get()
        if not self.read_only:
            self._connection = connection  # held until the unit of work ends
        try:
            cursor = psycopg.AsyncClientCursor(connection, row_factory=namedtuple_row)
            await self._prepare(connection, cursor, (query for query, _ in steps))
            begins = not (self.read_only or self._begun or self.committed)
            statements = [cursor.mogrify(q.execute, _adapted(arguments(q, p))) for q, p in steps]
            head, tail = ["BEGIN"] if begins else [], ["COMMIT"] if commit else []
            shown = [query.postgresql for query, _ in steps]
            self._announce(";\n".join([*head, *shown, *tail]))
            self._begun = self._begun or begins
            await self._send(cursor, ";\n".join([*head, *statements, *tail]))
            return await _results(cursor, skip=len(head), count=len(steps), commit=commit)
        finally:
            if self.read_only:
                await self._connections.give_back(connection)

    async def _send(self, cursor: psycopg.AsyncClientCursor[Any], sql_text: str) -> None:
        try:
            await self._connections.bounded(cursor.connection, cursor.execute(sql_text))
        except TimeoutError as e:
            await self._lose(cursor.connection)
            raise StoreUnavailable("the database did not answer in time") from e
        except psycopg.Error as e:
            if _lost(cursor.connection, e):
                await self._lose(cursor.connection)
                raise _ConnectionLost() from e
            if self._begun:
                self._aborted()  # PostgreSQL has rolled the transaction back
            refused = REFUSALS.get(e.diag.message_primary or "")
            if e.sqlstate == REFUSAL_STATE and refused is not None:
                raise refused(int(e.diag.message_detail or 0)) from e
            translated = translate_psycopg(e)
            if translated is e:
                raise
            raise translated from e

    async def _prepare(
        self,
        connection: psycopg.AsyncConnection[Any],
        cursor: psycopg.AsyncClientCursor[Any],
        queries: Iterable[Query],
    ) -> None:
        """Prepare, in one round trip, the statements this connection has not seen."""
        prepared = self._connections.prepared.setdefault(connection, set())
        missing = {query.name: query.prepare for query in queries if query.name not in prepared}
        if not missing:
            return
        self._announce(";\n".join(missing.values()))
        try:
            await self._connections.bounded(
                connection, cursor.execute(";\n".join(missing.values()))
            )
        except BaseException as e:
            # which of them the server kept is unknown now: the pool replaces the connection
            await self._lose(connection)
            if isinstance(e, TimeoutError):
                raise StoreUnavailable("the database did not answer in time") from e
            if isinstance(e, psycopg.Error) and _lost(connection, e):
                raise _ConnectionLost() from e
            raise
        prepared.update(missing)

    def _announce(self, sql_text: str) -> None:
        for watcher in self._connections.watchers:
            watcher(sql_text)

    async def _lose(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Give up ``connection``: closed, it goes back to be replaced by the pool."""
        await connection.close()
        if self._connection is connection:
            self._connection = None
            await self._connections.give_back(connection)
        # a read-only session's goes back after the round trip


class _ConnectionLost(Exception):
    """The connection broke in a round trip (its cause says how)."""


def _lost(connection: psycopg.AsyncConnection[Any], error: psycopg.Error) -> bool:
    """Whether ``error`` says the connection is gone (rather than a statement failed)."""
    return connection.broken or (error.sqlstate or "").startswith(LOST_STATES)


def _shut(connection: psycopg.AsyncConnection[Any]) -> None:
    """Shut the connection's socket both ways, without closing it under psycopg: whatever
    waits on it wakes to an error at once."""
    with contextlib.suppress(OSError, psycopg.Error):
        fd = connection.fileno()
        with socket.socket(fileno=os.dup(fd)) as shared:
            shared.shutdown(socket.SHUT_RDWR)


def _spoken_to(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has written to this idle connection (or closed it)."""
    if connection.closed or connection.broken:
        return True
    readable, _, _ = sockets.select([connection.fileno()], [], [], 0)
    return bool(readable)


async def _results(
    cursor: psycopg.AsyncClientCursor[Any], *, skip: int, count: int, commit: bool
) -> list[Sequence[Any]]:
    for _ in range(skip):
        cursor.nextset()
    found: list[Sequence[Any]] = []
    for _ in range(count):
        found.append(await cursor.fetchall() if cursor.description else [])
        cursor.nextset()
    if commit and cursor.statusmessage != "COMMIT":  # PostgreSQL answers ROLLBACK when aborted
        raise TransactionAborted("the database rolled the transaction back at its commit")
    return found


def _status(connection: psycopg.AsyncConnection[Any]) -> TransactionStatus:
    return TransactionStatus(connection.info.transaction_status)


def _adapted(values: dict[str, Any]) -> dict[str, Any]:
    """Values as psycopg binds them: a mapping (a JSON column's) goes as JSON."""
    return {k: Json(v) if isinstance(v, dict) else v for k, v in values.items()}


# -- holding a seat -------------------------------------------------------------------------

NEXT_RESERVATION_IDS = Query(
    select(literal_column("nextval('reservations_reservation_id_seq')").label("first")),
    writes=False,
)
# one statement: the customer's row lock (one customer's holds take turns) and the seats'
# lapsed holds marked expired, so that they leave the live-seat index
LOCK_CUSTOMER_AND_FREE_LAPSED_SEATS = Query(
    sql.LOCK_CUSTOMER.add_cte(
        update(reservations)
        .where(
            reservations.c.seat_id == any_(param("seat_ids", postgresql.ARRAY(BigInteger()))),
            reservations.c.status == "held",
            reservations.c.expires_at <= sql.NOW,
        )
        .values(status="expired")
        .cte("lapsed")
    ),
    writes=True,
)


def _hold_or_refuse() -> Query:
    """In a statement after the lock, whose snapshot sees every hold the customer committed
    before the lock was granted (and those of this basket inserted before it): the hold,
    inserted only if the customer stays within the limit with the ``ahead`` seats of the
    basket still to come, and the seat has no held or paid row (the live-seat index decides,
    whatever the race); else `concert_refuse` says which. So a basket past the limit is
    refused as such at its first insert, before any of its seats is looked at."""
    max_holds = param("max_holds", Integer())
    held = select((sql.UNEXPIRED_HOLDS + param("ahead", Integer())).label("n")).cte("held")
    columns = ["reservation_id", *sql.HOLD_COLUMNS]
    inserted = (
        postgresql.insert(reservations)
        .from_select(
            columns,
            select(*(param(name, reservations.c[name]) for name in columns))
            .select_from(held)
            .where(held.c.n < max_holds),
        )
        .on_conflict_do_nothing(index_elements=["seat_id"], index_where=text(HELD_OR_PAID))
        .returning(reservations.c.reservation_id)
        .cte("inserted")
    )
    at_limit = held.c.n >= max_holds
    refusal = func.concert_refuse(
        case((at_limit, literal("hold_limit_reached")), else_=literal("seat_unavailable")),
        case(
            (at_limit, cast(max_holds, String())), else_=cast(param("number", Integer()), String())
        ),
    )
    return Query(
        select(refusal).select_from(held).where(~exists(select(inserted.c.reservation_id))),
        writes=True,
    )


HOLD_OR_REFUSE = _hold_or_refuse()


class PostgresReservations(SqlReservationRepository):
    def __init__(self, db: PostgresSession, connections: PostgresConnections) -> None:
        super().__init__(db)
        self._session = db
        self._connections = connections

    async def hold(
        self,
        user_id: UserId,
        seats: Sequence[Seat],
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> list[Reservation]:
        """The lock and one guarded insert per seat, all sent with the commit: a refusal of
        any of them leaves none. The inserts go by seat id, so that two customers holding
        overlapping seats wait for each other in one order, never in a cycle."""
        held = [
            Reservation.hold(await self._next_reservation_id(), user_id, seat, now, expires_at)
            for seat in seats
        ]
        self._session.defer(
            LOCK_CUSTOMER_AND_FREE_LAPSED_SEATS,
            user_id=user_id,
            seat_ids=[seat.seat_id for seat in seats],
            now=now,
        )
        by_seat = sorted(held, key=lambda r: r.seat_id)
        for n, reservation in enumerate(by_seat):
            self._session.defer(
                HOLD_OR_REFUSE,
                **rows.reservation_to_row(reservation),
                now=now,
                max_holds=max_holds,
                ahead=len(by_seat) - 1 - n,
            )
        return held

    async def _next_reservation_id(self) -> ReservationId:
        block = self._connections.reservation_ids
        if block.next >= block.end:
            [row] = await self._session.run(NEXT_RESERVATION_IDS)
            block.next, block.end = row.first, row.first + RESERVATION_ID_BLOCK
        block.next += 1
        return ReservationId(block.next - 1)


# -- moving money ---------------------------------------------------------------------------


def _with_ledger_entry(move: Any) -> Query:
    """A wallet move and its ledger entry in one statement: the entry, with the balance the
    move left, is written only if the move returned one, which the statement answers."""
    moved = move.cte("moved")
    given = [n for n in sql.LEDGER_COLUMNS if n != "balance"]
    entry = (
        ledger.insert()
        .from_select(
            [*given, "balance"],
            select(*(param(n, ledger.c[n]) for n in given), moved.c.balance),
        )
        .cte("entry")
    )
    return Query(select(moved.c.balance).add_cte(moved, entry), writes=True)


CREDIT_WITH_LEDGER_ENTRY = _with_ledger_entry(sql.CREDIT)


def _sale() -> Query:
    """The whole sale of the customer's holds in one statement: the holds sold, all or none,
    under the payment's number; the debit of their total, the payment and its ledger entry,
    each written only if the holds are sold. The holds are sold only if every one asked for
    is the customer's and held (counted in the statement's snapshot); one that changed since
    (a sweep, a cancellation) drops out of the UPDATE, which `concert_refuse` then answers
    with a conflict that fails the statement, so nothing is written and the caller tries
    again. The debit takes the total whatever the balance: one that would go below zero
    breaks `BALANCE_NOT_NEGATIVE`, which fails the statement too. Answers nothing when the
    holds are not sold."""
    ids = param("reservation_ids", postgresql.ARRAY(BigInteger()))
    user_id = param("user_id", reservations.c.user_id)
    asked = reservations.alias("asked")
    all_held = select(func.count()).select_from(asked).where(
        asked.c.reservation_id == any_(ids),
        asked.c.user_id == user_id,
        sql.held_at(sql.NOW, asked),
    ).scalar_subquery() == func.cardinality(ids)
    number = select(literal_column("nextval('payments_payment_id_seq')").label("payment_id")).cte(
        "number"
    )
    sold = (
        update(reservations)
        .where(
            reservations.c.reservation_id == any_(ids),
            reservations.c.user_id == user_id,
            sql.held_at(sql.NOW),
            exists().where(wallets.c.user_id == reservations.c.user_id),
            all_held,
        )
        .values(status="paid", payment_id=select(number.c.payment_id).scalar_subquery())
        .returning(*reservations.c)
        .cte("sold")
    )
    total = select(
        func.count().label("n"), func.coalesce(func.sum(sold.c.price), 0).label("amount")
    ).cte("total")
    debited = (
        wallets.update()
        .where(wallets.c.user_id == user_id, total.c.n > 0)
        .values(balance=wallets.c.balance - total.c.amount)
        .returning(wallets.c.balance)
        .cte("debited")
    )
    paid = (
        payments.insert()
        .from_select(
            ["payment_id", "reservation_id", "user_id", "amount", "created_at"],
            select(
                number.c.payment_id,
                param("first", payments.c.reservation_id),
                user_id,
                total.c.amount,
                sql.NOW,
            )
            .select_from(number.join(total, true()))
            .where(total.c.n > 0),
        )
        .returning(payments.c.payment_id)
        .cte("paid")
    )
    entry = (
        ledger.insert()
        .from_select(
            ["user_id", "kind", "amount", "payment_id", "created_at", "balance"],
            select(
                user_id,
                literal(LedgerKind.PAYMENT.value),
                total.c.amount,
                paid.c.payment_id,
                sql.NOW,
                debited.c.balance,
            ).select_from(paid.join(debited, true()).join(total, true())),
        )
        .cte("entry")
    )
    race = (
        select(func.concert_refuse(literal("payment_race"), literal("0")).label("refused"))
        .select_from(total)
        .where(total.c.n > 0, total.c.n < func.cardinality(ids))
        .cte("race")
    )
    return Query(
        select(sold, debited.c.balance, race.c.refused)
        .select_from(sold.join(debited, true()).outerjoin(race, true()))
        .add_cte(entry),
        writes=True,
    )


SALE = _sale()


def _refund() -> Query:
    """The whole refund in one statement: the paid reservation refunded, its price credited
    whatever the cap, and the ``refund`` ledger entry naming it and its payment, each written
    only if the reservation was paid (the guarded UPDATE decides, however many race; a
    refund per reservation is also unique in the ledger). Answers nothing when it was not
    paid."""
    unsold = sql.UNSELL.cte("unsold")
    credited = (
        wallets.update()
        .where(wallets.c.user_id == unsold.c.user_id)
        .values(balance=wallets.c.balance + unsold.c.price)
        .returning(wallets.c.balance)
        .cte("credited")
    )
    entry = (
        ledger.insert()
        .from_select(
            [
                "user_id",
                "kind",
                "amount",
                "payment_id",
                "reservation_id",
                "created_at",
                "balance",
            ],
            select(
                unsold.c.user_id,
                literal(LedgerKind.REFUND.value),
                unsold.c.price,
                unsold.c.payment_id,
                unsold.c.reservation_id,
                sql.NOW,
                credited.c.balance,
            ).select_from(unsold.join(credited, true())),
        )
        .cte("entry")
    )
    return Query(
        select(unsold, credited.c.balance)
        .select_from(unsold.join(credited, true()))
        .add_cte(entry),
        writes=True,
    )


REFUND = _refund()


class PostgresWallets(SqlWalletRepository):
    async def credit(
        self, user_id: UserId, amount: int, now: datetime, max_balance: int
    ) -> int | None:
        moved = await self._db.run(
            CREDIT_WITH_LEDGER_ENTRY,
            user_id=user_id,
            kind=LedgerKind.CHARGE.value,
            amount=amount,
            payment_id=None,
            reservation_id=None,
            created_at=now,
            max_balance=max_balance,
        )
        return int(moved[0].balance) if moved else None


class PostgresPayments(PaymentRepository):
    def __init__(self, db: PostgresSession) -> None:
        self._db = db

    async def pay(
        self, reservation_ids: Sequence[ReservationId], user_id: UserId, now: datetime
    ) -> Sale | None:
        try:
            sold = await self._db.run(
                SALE,
                reservation_ids=list(reservation_ids),
                first=reservation_ids[0],
                user_id=user_id,
                now=now,
            )
        except psycopg.errors.CheckViolation as e:
            if e.diag.constraint_name == BALANCE_NOT_NEGATIVE:
                raise InsufficientBalance.for_reservation(reservation_ids[0]) from e
            raise
        if not sold:
            return None
        by_id = {row.reservation_id: rows.reservation_from_row(row) for row in sold}
        paid = tuple(by_id[reservation_id] for reservation_id in reservation_ids)
        first = sold[0]
        amount = sum(reservation.price for reservation in paid)
        payment = Payment(PaymentId(first.payment_id), tuple(reservation_ids), user_id, amount, now)
        return Sale(paid, payment, int(first.balance))

    async def refund(self, reservation_id: ReservationId, now: datetime) -> Refund | None:
        refunds = await self._db.run(REFUND, reservation_id=reservation_id, now=now)
        if not refunds:
            return None
        reservation = rows.reservation_from_row(refunds[0])
        return Refund(reservation, reservation.price, int(refunds[0].balance))
