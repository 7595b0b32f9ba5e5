"""SQLite, the embedded default: units of work on the process's one connection, in turns.

The statements go one by one through SQLAlchemy's synchronous engine, on the event loop
itself: in the process, a statement takes microseconds, less than a hop to a thread and back.
A unit of work that may write takes the connection from its first statement to its end (a
lock, `SqliteSessions.lock`) and begins with ``BEGIN IMMEDIATE``, so writers take turns, as the
in-memory store's do; it awaits nothing else meanwhile, so the turns are short. A read-only
unit of work takes the connection for each statement alone and reads outside a transaction, so
it holds nothing between its reads. Statements nobody needs the rows of wait for the next
statement or the commit, as on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from adapters.sql import rows
from adapters.sql import statements as sql
from adapters.sql.engine import schema_is_current
from adapters.sql.errors import MigrationRefused, translate
from adapters.sql.migrations import upgrade
from adapters.sql.queries import Query, named, param
from adapters.sql.repositories import SqlReservationRepository, SqlWalletRepository
from adapters.sql.schema import HELD_OR_PAID, ledger, payments, reservations, wallets
from adapters.sql.session import DuplicateRow, Step, TransactionRules
from concert_domain.catalog import Seat
from concert_domain.errors import (
    HoldLimitReached,
    InsufficientBalance,
    SeatUnavailable,
    StoreUnavailable,
    TransactionConflict,
)
from concert_domain.ids import ReservationId, UserId
from concert_domain.ports import PaymentRepository
from concert_domain.reservations import Reservation
from concert_domain.wallet import LedgerKind, Refund, Sale


class SqliteSessions:
    """The process's one connection to a SQLite file, and the lock its users take turns on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = asyncio.Lock()

    async def migrate(self) -> None:
        async with self.lock:
            self._sync(migrate_without_foreign_keys)

    async def schema_is_current(self) -> bool:
        async with self.lock:
            return bool(self._sync(schema_is_current))

    async def ping(self) -> None:
        async with self.lock:
            self._sync(lambda connection: connection.execute(text("SELECT 1")))

    def _sync(self, work: Any) -> Any:
        try:
            with self.engine.connect() as connection:
                return work(connection)
        except (DBAPIError, OSError) as e:
            raise StoreUnavailable("the database does not answer") from e

    def dispose(self) -> None:
        self.engine.dispose()


def migrate_without_foreign_keys(connection: Connection) -> None:
    """Migrate with foreign keys off, for a migration may rebuild a table others refer to
    (SQLite's own procedure for changing a table: https://sqlite.org/lang_altertable.html);
    then check, before the migration commits, that every reference holds (or roll it all
    back and raise `MigrationRefused`), and turn them on again."""
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, where it takes effect
    try:
        connection.begin()  # one transaction for every step, which Alembic leaves to us
        upgrade(connection)
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise MigrationRefused(
                "the database holds references that do not hold (table, row, referred "
                f"table): {[tuple(row[:3]) for row in broken[:5]]}; nothing was migrated"
            )
        connection.commit()
    except BaseException as e:
        if connection.in_transaction():
            connection.rollback()  # before the pragma below, which a transaction ignores
        if isinstance(e, IntegrityError):  # a step's change the rows refuse
            why = " ".join(str(e.orig).split())
            raise MigrationRefused(
                f"the database holds rows the new schema refuses ({why}); nothing was migrated"
            ) from e
        raise
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


class SqliteSession(TransactionRules):
    def __init__(self, sessions: SqliteSessions, *, read_only: bool) -> None:
        super().__init__(read_only=read_only)
        self._sessions = sessions
        self._connection: Connection | None = None

    async def run(self, query: Query, **params: Any) -> Sequence[Any]:
        [found] = await self.run_together((query, params))
        return found

    async def run_together(self, *steps: Step) -> list[Sequence[Any]]:
        self._check_writes(steps)
        if self.read_only:
            async with self._sessions.lock:
                with self._sessions.engine.connect() as connection:
                    return [self._execute(connection, q, p) for q, p in steps]
        connection = self._connection or await self._begin()
        pending = self._take_pending()
        found = [self._execute(connection, q, p) for q, p in [*pending, *steps]]
        return found[len(pending) :]

    async def insert_many(
        self, table: Table, columns: Sequence[str], rows: Iterable[dict[str, Any]]
    ) -> None:
        self._check_writable()
        await self.run_together()  # the statements waiting, and the transaction begun
        assert self._connection is not None
        values = [{column: row[column] for column in columns} for row in rows]
        if not values:
            return
        try:
            self._connection.execute(table.insert(), values)
        except IntegrityError as e:
            self._aborted()
            if "UNIQUE" in str(e.orig):
                raise DuplicateRow(str(e.orig)) from e
            raise
        except DBAPIError as e:
            self._aborted()
            raise _translated(e) from e

    async def commit(self) -> None:
        pending = self._to_commit()
        if pending is None:
            return
        if pending:
            self._pending = pending
            await self.run_together()
        if self._connection is not None:
            try:
                self._connection.commit()
            except DBAPIError as e:
                self._aborted()
                raise _translated(e) from e
        self._committed()

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
            self._sessions.lock.release()

    def _execute(self, connection: Connection, query: Query, params: dict[str, Any]) -> Any:
        try:
            result = connection.execute(query.sqlite, named(params))  # type: ignore[call-overload]
        except DBAPIError as e:
            if not self.read_only:
                self._aborted()
            translated = translate(e)
            if translated is e:
                raise
            raise translated from e
        return result.all() if result.returns_rows else []

    async def _begin(self) -> Connection:
        await self._sessions.lock.acquire()
        connection = None
        try:
            connection = self._sessions.engine.connect()
            connection.begin()
        except BaseException as e:
            if connection is not None:
                connection.close()
            self._sessions.lock.release()
            if isinstance(e, DBAPIError | OSError):
                raise StoreUnavailable("the database cannot be reached") from e
            raise
        self._connection = connection
        return connection


def _translated(error: DBAPIError) -> Exception:
    translated = translate(error)
    return StoreUnavailable("the database failed") if translated is error else translated


# -- holding a seat: writers take turns, so each step may read and then write ---------------

EXPIRE_LAPSED_HOLD_OF_SEAT = Query(sql.EXPIRE_LAPSED_HOLD_OF_SEAT)
UNEXPIRED_HOLDS = Query(select(sql.UNEXPIRED_HOLDS.label("n")))
HOLD = Query(
    sqlite.insert(reservations)
    .values({name: param(name, reservations.c[name]) for name in sql.HOLD_COLUMNS})
    .on_conflict_do_nothing(index_elements=["seat_id"], index_where=text(HELD_OR_PAID))
    .returning(*reservations.c)
)


class SqliteReservations(SqlReservationRepository):
    async def hold(
        self,
        user_id: UserId,
        seats: Sequence[Seat],
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> list[Reservation]:
        lapsed = [(EXPIRE_LAPSED_HOLD_OF_SEAT, {"seat_id": s.seat_id, "now": now}) for s in seats]
        *_, [(holds,)] = await self._db.run_together(
            *lapsed, (UNEXPIRED_HOLDS, {"user_id": user_id, "now": now})
        )
        if holds + len(seats) > max_holds:
            raise self._db.refused(HoldLimitReached.at(max_holds))
        held = []
        for seat in seats:
            wanted = Reservation.hold(ReservationId(0), user_id, seat, now, expires_at)
            values = rows.reservation_to_row(wanted)
            del values["reservation_id"]
            inserted = await self._db.run(HOLD, **values)
            if not inserted:
                raise self._db.refused(SeatUnavailable.taken(seat.number))
            held.append(rows.reservation_from_row(inserted[0]))
        return held


# -- moving money ---------------------------------------------------------------------------

CREDIT = Query(sql.CREDIT)
DEBIT = Query(
    wallets.update()
    .where(sql.WALLET_OF, wallets.c.balance >= sql.AMOUNT)
    .values(balance=wallets.c.balance - sql.AMOUNT)
    .returning(wallets.c.balance)
)
LEDGER_ENTRY = Query(ledger.insert().values({n: param(n, ledger.c[n]) for n in sql.LEDGER_COLUMNS}))
SELL = Query(sql.SELL)
UNSELL = Query(sql.UNSELL)
RESERVATION = sql.RESERVATION
# a refund is credited whatever the cap
CREDIT_ANY = Query(
    wallets.update()
    .where(sql.WALLET_OF)
    .values(balance=wallets.c.balance + sql.AMOUNT)
    .returning(wallets.c.balance)
)
PAYMENT_ADD = Query(
    payments.insert()
    .values({c.name: param(c.name, c) for c in payments.c if c.name != "payment_id"})
    .returning(*payments.c)
)


class SqliteWallets(SqlWalletRepository):
    async def credit(
        self, user_id: UserId, amount: int, now: datetime, max_balance: int
    ) -> int | None:
        moved = await self._db.run(CREDIT, user_id=user_id, amount=amount, max_balance=max_balance)
        if not moved:
            return None
        balance = int(moved[0].balance)
        entry = _entry(user_id, LedgerKind.CHARGE, amount, None, now, balance)
        self._db.defer(LEDGER_ENTRY, **entry)
        return balance


class SqlitePayments(PaymentRepository):
    def __init__(self, db: SqliteSession) -> None:
        self._db = db

    async def pay(
        self, reservation_ids: Sequence[ReservationId], user_id: UserId, now: datetime
    ) -> Sale | None:
        """Writers take turns: every hold is read first, and all are sold or none."""
        found = await self._db.run_together(
            *((RESERVATION, {"reservation_id": r}) for r in reservation_ids)
        )
        holds = [rows.reservation_from_row(rows_[0]) for rows_ in found if rows_]
        if len(holds) < len(reservation_ids) or not all(
            hold.user_id == user_id and hold.is_held(now) for hold in holds
        ):
            return None
        total = sum(hold.price for hold in holds)
        first = reservation_ids[0]
        [added] = await self._db.run(
            PAYMENT_ADD, reservation_id=first, user_id=user_id, amount=total, created_at=now
        )
        payment = rows.payment_from_row(added, reservation_ids)
        sold = await self._db.run_together(
            *(
                (
                    SELL,
                    {
                        "reservation_id": r,
                        "user_id": user_id,
                        "now": now,
                        "payment_id": payment.payment_id,
                    },
                )
                for r in reservation_ids
            )
        )
        if not all(sold):  # cannot be while writers take turns; refused whole if it were
            raise self._db.refused(TransactionConflict("a hold changed while it was being paid"))
        debited = await self._db.run(DEBIT, user_id=user_id, amount=total)
        if not debited:
            raise self._db.refused(InsufficientBalance.for_reservation(first))
        balance = int(debited[0].balance)
        entry = _entry(user_id, LedgerKind.PAYMENT, total, payment.payment_id, now, balance)
        self._db.defer(LEDGER_ENTRY, **entry)
        paid = tuple(rows.reservation_from_row(rows_[0]) for rows_ in sold)
        return Sale(paid, payment, balance)

    async def refund(self, reservation_id: ReservationId, now: datetime) -> Refund | None:
        unsold = await self._db.run(UNSELL, reservation_id=reservation_id)
        if not unsold:
            return None
        reservation = rows.reservation_from_row(unsold[0])
        user_id, price = reservation.user_id, reservation.price
        [(balance,)] = await self._db.run(CREDIT_ANY, user_id=user_id, amount=price)
        payment_id = unsold[0].payment_id
        entry = _entry(user_id, LedgerKind.REFUND, price, payment_id, now, int(balance))
        self._db.defer(LEDGER_ENTRY, **{**entry, "reservation_id": reservation_id})
        return Refund(reservation, price, int(balance))


def _entry(
    user_id: UserId,
    kind: LedgerKind,
    amount: int,
    payment_id: int | None,
    now: datetime,
    balance: int,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "kind": kind.value,
        "amount": amount,
        "payment_id": payment_id,
        "created_at": now,
        "balance": balance,
        "reservation_id": None,
    }
