"""The database-backed ports on SQLAlchemy Core, for PostgreSQL and SQLite alike.

Every rule that must hold under concurrency is decided by one conditional statement or a
constraint: ``INSERT ... ON CONFLICT DO NOTHING`` against the live-seat index for a hold,
``UPDATE ... WHERE status = 'held' AND expires_at > :now`` to pay or cancel,
``UPDATE ... WHERE balance >= :amount`` to debit, and a locked customer row for the hold limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import attrs
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    Executable,
    Result,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sql import rows
from adapters.sql.engine import READ_ONLY
from adapters.sql.errors import CONFLICT_STATES, translate
from adapters.sql.queries import Query, arguments, param
from adapters.sql.schema import (
    LIVE,
    accounts,
    concert_dates,
    concerts,
    idempotency_keys,
    ledger,
    payments,
    reservations,
    seats,
    wallets,
)
from concert_domain.accounts import Account
from concert_domain.catalog import (
    Concert,
    ConcertDate,
    DateAvailability,
    Seat,
    SeatStatus,
    SeatView,
)
from concert_domain.errors import (
    EmailTaken,
    HoldLimitReached,
    InvalidRequest,
    ReservationNotHeld,
    SeatUnavailable,
    StoreUnavailable,
    TransactionConflict,
)
from concert_domain.idempotency import IdempotencyRecord, IdempotencyState, StoredOutcome
from concert_domain.ids import ConcertId, DateId, PaymentId, ReservationId, SeatId, UserId
from concert_domain.ports import (
    AccountRepository,
    CatalogRepository,
    IdempotencyRepository,
    PaymentRepository,
    ReservationRepository,
    WalletRepository,
)
from concert_domain.reservations import Reservation
from concert_domain.wallet import LedgerEntry, LedgerKind, Payment


class SqlSession:
    """One transaction, begun on a pooled connection at its first statement (a unit of work
    answered from the catalog cache costs no round trip), with database errors translated
    into the core's."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        read_only: bool,
        catalog: CatalogCache,
        watchers: Sequence[Callable[[str], None]] = (),
    ) -> None:
        self._engine = engine
        self.watchers = watchers
        self.read_only = read_only
        self.catalog = catalog
        self.connection: AsyncConnection | None = None
        self._driver: Any = None  # the psycopg connection under ``connection``
        self.dialect = engine.dialect.name

    async def execute(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> Result[Any]:
        connection = self.connection or await self._begin()
        try:
            return await connection.execute(statement, params)
        except DBAPIError as e:
            translated = translate(e)
            if translated is e:
                raise
            raise translated from e

    async def run(self, query: Query, **params: Any) -> Sequence[Any]:
        """The rows of ``query``: on the psycopg connection itself on PostgreSQL, through
        SQLAlchemy on SQLite. Rows read by column name either way."""
        [found] = await self.run_together((query, params))
        return found

    async def run_together(self, *steps: tuple[Query, dict[str, Any]]) -> list[Sequence[Any]]:
        """The rows of each query, run in order in this transaction. On PostgreSQL they are
        sent at once (psycopg's pipeline mode), with the BEGIN if the transaction has not
        begun: one round trip for all, each statement still starting after the one before
        has finished, with its own snapshot."""
        if self.dialect != "postgresql":
            found = []
            for query, params in steps:
                statement = query.for_dialect(self.dialect)
                result = await self.execute(statement, arguments(query, params))
                found.append(result.all() if result.returns_rows else [])  # type: ignore[attr-defined]
            return found
        connection = self.connection or await self._begin()
        if self._driver is None:
            self._driver = (await connection.get_raw_connection()).driver_connection
        for watcher in self.watchers:
            for query, _ in steps:
                watcher(query.postgresql)
        try:
            # the first statement of a transaction goes with its BEGIN, in one round trip
            idle = self._driver.info.transaction_status == TransactionStatus.IDLE
            if len(steps) == 1 and not idle:
                [(query, params)] = steps
                async with self._driver.cursor(row_factory=namedtuple_row) as cursor:
                    await cursor.execute(query.postgresql, arguments(query, params))
                    return [await cursor.fetchall() if cursor.description else []]
            cursors = [self._driver.cursor(row_factory=namedtuple_row) for _ in steps]
            async with self._driver.pipeline():
                for cursor, (query, params) in zip(cursors, steps, strict=True):
                    await cursor.execute(query.postgresql, arguments(query, params))
            return [await c.fetchall() if c.description else [] for c in cursors]
        except psycopg.Error as e:
            if e.sqlstate in CONFLICT_STATES:
                raise TransactionConflict("the database gave up a transaction") from e
            if isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
                await connection.invalidate()  # never back into the pool
                raise StoreUnavailable("the database cannot be reached") from e
            raise

    async def _begin(self) -> AsyncConnection:
        connection = None
        try:
            connection = await self._engine.connect()
            if self.read_only:
                await connection.execution_options(**{READ_ONLY: True})
            await connection.begin()
        except (DBAPIError, OSError) as e:
            if connection is not None:
                await connection.close()
            raise StoreUnavailable("the database cannot be reached") from e
        self.connection = connection
        return connection

    def insert(self, table: Any) -> Any:
        """An INSERT that knows ``ON CONFLICT`` on this dialect."""
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table)


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


def _live(now: datetime) -> Any:
    """A reservation that blocks its seat at ``now``: paid, or held and unexpired."""
    return or_(
        reservations.c.status == "paid",
        and_(reservations.c.status == "held", reservations.c.expires_at > now),
    )


_NOW = param("now", reservations.c.expires_at)


_SEAT_ID = param("seat_id", seats.c.seat_id)
_SEAT = Query(select(seats).where(seats.c.seat_id == _SEAT_ID))
_SEATS_OF_THE_DATE_OF = Query(
    select(seats).where(
        seats.c.date_id
        == select(seats.c.date_id).where(seats.c.seat_id == _SEAT_ID).scalar_subquery()
    )
)
_DATE = Query(
    select(concert_dates).where(
        concert_dates.c.date_id == param("date_id", concert_dates.c.date_id)
    )
)
_SEAT_MAP = Query(
    select(
        seats,
        reservations.c.status.label("live_status"),
        reservations.c.expires_at.label("held_until"),
    )
    .outerjoin(reservations, and_(reservations.c.seat_id == seats.c.seat_id, _live(_NOW)))
    .where(seats.c.date_id == param("date_id", seats.c.date_id))
    .order_by(seats.c.number)
)

# A hold, step 1: take the customer's row lock, so that one customer's holds take turns
# (SQLite's BEGIN IMMEDIATE already makes every writer wait), and mark the seat's lapsed hold
# expired so that it leaves the live-seat index. One statement on PostgreSQL, two on SQLite.
_LOCK_CUSTOMER = (
    select(accounts.c.user_id)
    .where(accounts.c.user_id == param("user_id", accounts.c.user_id))
    .with_for_update(of=accounts)
)
_LAPSE_SEAT = (
    update(reservations)
    .where(
        reservations.c.seat_id == param("seat_id", reservations.c.seat_id),
        reservations.c.status == "held",
        reservations.c.expires_at <= _NOW,
    )
    .values(status="expired")
)
_LOCK_AND_LAPSE = Query(_LOCK_CUSTOMER.add_cte(_LAPSE_SEAT.cte("lapsed")))
_LAPSE = Query(_LAPSE_SEAT)
_LOCK = Query(_LOCK_CUSTOMER)

# Step 2, in a statement of its own, whose snapshot sees every hold committed before the lock
# was granted (on PostgreSQL it is sent with step 1, one round trip for both): insert only if
# the customer exists and is under the limit, and only if the seat has no held or paid row
# (the partial unique index decides, whatever the race).
_UNEXPIRED_HOLDS = (
    select(func.count())
    .where(
        reservations.c.user_id == param("user_id", reservations.c.user_id),
        reservations.c.status == "held",
        reservations.c.expires_at > _NOW,
    )
    .scalar_subquery()
)
_HOLD_COLUMNS = [
    "user_id",
    "seat_id",
    "date_id",
    "concert_id",
    "number",
    "price",
    "status",
    "created_at",
    "expires_at",
]


def _hold_insert(dialect: Any) -> Any:
    values = select(
        *(param(name, reservations.c[name]) for name in _HOLD_COLUMNS if name != "created_at"),
        _NOW,
    ).where(param("max_holds", reservations.c.price) > _UNEXPIRED_HOLDS)
    columns = [name for name in _HOLD_COLUMNS if name != "created_at"] + ["created_at"]
    return (
        dialect.insert(reservations)
        .from_select(columns, values)
        .on_conflict_do_nothing(index_elements=["seat_id"], index_where=text(LIVE))
        .returning(*reservations.c)
    )


_HOLD = Query(_hold_insert(postgresql), sqlite=_hold_insert(sqlite))
_COUNT_HOLDS = Query(select(_UNEXPIRED_HOLDS))
_RESERVATION = Query(
    select(reservations).where(
        reservations.c.reservation_id == param("reservation_id", reservations.c.reservation_id)
    )
)
_END_HOLD = Query(
    update(reservations)
    .where(
        reservations.c.reservation_id == param("reservation_id", reservations.c.reservation_id),
        reservations.c.status == "held",
        reservations.c.expires_at > _NOW,
    )
    .values(status=param("new_status", reservations.c.status))
    .returning(*reservations.c)
)

_AMOUNT = param("amount", wallets.c.balance)
_WALLET_OF = wallets.c.user_id == param("user_id", wallets.c.user_id)
_BALANCE = Query(select(wallets.c.balance).where(_WALLET_OF))
_CREDIT = Query(
    update(wallets)
    .where(_WALLET_OF, wallets.c.balance + _AMOUNT <= param("max_balance", wallets.c.balance))
    .values(balance=wallets.c.balance + _AMOUNT)
    .returning(wallets.c.balance)
)
_DEBIT = Query(
    update(wallets)
    .where(_WALLET_OF, wallets.c.balance >= _AMOUNT)
    .values(balance=wallets.c.balance - _AMOUNT)
    .returning(wallets.c.balance)
)
_LEDGER_ENTRY = Query(
    ledger.insert().values({c.name: param(c.name, c) for c in ledger.c if c.name != "entry_id"})
)


def _moved_and_recorded(move: Any) -> Query:
    """On PostgreSQL, a wallet move and its ledger entry in one statement: the entry is
    written only if the move returned a balance, which the statement answers."""
    moved = move.cte("moved")
    names = [c.name for c in ledger.c if c.name != "entry_id"]
    entry = (
        ledger.insert()
        .from_select(names, select(*(param(n, ledger.c[n]) for n in names)).select_from(moved))
        .cte("entry")
    )
    return Query(select(moved.c.balance).add_cte(moved, entry))


_CREDIT_RECORDED = _moved_and_recorded(_CREDIT.statement)
_DEBIT_RECORDED = _moved_and_recorded(_DEBIT.statement)


def _payment_insert(dialect: Any) -> Any:
    return (
        dialect.insert(payments)
        .values({c.name: param(c.name, c) for c in payments.c if c.name != "payment_id"})
        .on_conflict_do_nothing(index_elements=["reservation_id"])
        .returning(*payments.c)
    )


_PAYMENT = Query(_payment_insert(postgresql), sqlite=_payment_insert(sqlite))


class SqlAccountRepository(AccountRepository):
    def __init__(self, db: SqlSession) -> None:
        self._db = db

    async def add(self, email: str, password_hash: str, now: datetime) -> Account:
        statement = (
            self._db.insert(accounts)
            .values(email=email, password_hash=password_hash, created_at=now)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(*accounts.c)
        )
        row = (await self._db.execute(statement)).first()
        if row is None:
            raise EmailTaken(f"{email} already has an account")
        return rows.account_from_row(row)

    async def get_by_email(self, email: str) -> Account | None:
        row = (await self._db.execute(select(accounts).where(accounts.c.email == email))).first()
        return None if row is None else rows.account_from_row(row)


class SqlCatalogRepository(CatalogRepository):
    def __init__(self, db: SqlSession) -> None:
        self._db = db

    async def add_concert(self, title: str) -> Concert:
        statement = concerts.insert().values(title=title).returning(*concerts.c)
        return rows.concert_from_row((await self._db.execute(statement)).one())

    async def add_date(self, concert_id: ConcertId, day: date, starts_at: datetime) -> ConcertDate:
        if await self.get_concert(concert_id) is None:
            raise InvalidRequest(f"no concert {concert_id}")
        statement = (
            concert_dates.insert()
            .values(concert_id=concert_id, day=day, starts_at=starts_at)
            .returning(*concert_dates.c)
        )
        return rows.date_from_row((await self._db.execute(statement)).one())

    async def add_seats(self, date_id: DateId, seat_list: Sequence[tuple[int, int]]) -> list[Seat]:
        concert_date = await self.get_date(date_id)
        if concert_date is None:
            raise InvalidRequest(f"no date {date_id}")
        numbers = [number for number, _ in seat_list]
        taken = await self._db.execute(
            select(seats.c.number).where(seats.c.date_id == date_id, seats.c.number.in_(numbers))
        )
        clash = sorted(set(taken.scalars()) | {n for n in numbers if numbers.count(n) > 1})
        if clash:
            raise InvalidRequest(f"seats {clash} already exist on date {date_id}")
        if not seat_list:
            return []
        statement = (
            seats.insert()
            .values(
                [
                    {
                        "date_id": date_id,
                        "concert_id": concert_date.concert_id,
                        "number": number,
                        "price": price,
                    }
                    for number, price in seat_list
                ]
            )
            .returning(*seats.c)
        )
        added = [rows.seat_from_row(row) for row in await self._db.execute(statement)]
        return sorted(added, key=lambda seat: seat.number)

    async def list_concerts(self) -> list[Concert]:
        result = await self._db.execute(select(concerts).order_by(concerts.c.concert_id))
        return [rows.concert_from_row(row) for row in result]

    async def get_concert(self, concert_id: ConcertId) -> Concert | None:
        statement = select(concerts).where(concerts.c.concert_id == concert_id)
        row = (await self._db.execute(statement)).first()
        return None if row is None else rows.concert_from_row(row)

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        cached = self._db.catalog.dates.get(date_id)
        if cached is not None:
            return cached
        found_rows = await self._db.run(_DATE, date_id=date_id)
        if not found_rows:
            return None
        found = rows.date_from_row(found_rows[0])
        # only what is committed is cached: a read-only session reads nothing else
        return self._db.catalog.keep_date(found) if self._db.read_only else found

    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        cached = self._db.catalog.seats.get(seat_id)
        if cached is not None:
            return cached
        if not self._db.read_only:  # may read what is not committed: nothing is kept
            found_rows = await self._db.run(_SEAT, seat_id=seat_id)
            return rows.seat_from_row(found_rows[0]) if found_rows else None
        # customers hold seats of the date they are looking at: keep all of its seats at once,
        # one loader at a time, so that a cold process meeting the on-sale rush reads each
        # date once rather than once per waiting request
        async with self._db.catalog.loading:
            cached = self._db.catalog.seats.get(seat_id)
            if cached is not None:
                return cached
            found = None
            for row in await self._db.run(_SEATS_OF_THE_DATE_OF, seat_id=seat_id):
                seat = self._db.catalog.keep_seat(rows.seat_from_row(row))
                if seat.seat_id == seat_id:
                    found = seat
            return found

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        taken = exists().where(reservations.c.seat_id == seats.c.seat_id, _live(now))
        available = func.count(seats.c.seat_id).label("available")
        statement = (
            select(concert_dates, available)
            .join(seats, seats.c.date_id == concert_dates.c.date_id)
            .where(
                concert_dates.c.concert_id == concert_id,
                concert_dates.c.starts_at > now,
                ~taken,
            )
            .group_by(*concert_dates.c)
            .order_by(concert_dates.c.starts_at, concert_dates.c.date_id)
        )
        return [
            DateAvailability(rows.date_from_row(row), row.available)
            for row in await self._db.execute(statement)
        ]

    async def seat_map(self, date_id: DateId, now: datetime) -> list[SeatView]:
        return [
            SeatView(
                rows.seat_from_row(row),
                _SEAT_STATUS[row.live_status],
                row.held_until if row.live_status == "held" else None,
            )
            for row in await self._db.run(_SEAT_MAP, date_id=date_id, now=now)
        ]


_SEAT_STATUS = {None: SeatStatus.AVAILABLE, "held": SeatStatus.HELD, "paid": SeatStatus.SOLD}


class SqlReservationRepository(ReservationRepository):
    def __init__(self, db: SqlSession) -> None:
        self._db = db

    async def hold(
        self,
        user_id: UserId,
        seat: Seat,
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> Reservation:
        first = [(_LOCK_AND_LAPSE, {"user_id": user_id, "seat_id": seat.seat_id, "now": now})]
        if self._db.dialect == "sqlite":
            first = [(_LAPSE, {"seat_id": seat.seat_id, "now": now}), (_LOCK, {"user_id": user_id})]
        insert = {
            "user_id": user_id,
            "seat_id": seat.seat_id,
            "date_id": seat.date_id,
            "concert_id": seat.concert_id,
            "number": seat.number,
            "price": seat.price,
            "status": "held",
            "now": now,
            "expires_at": expires_at,
            "max_holds": max_holds,
        }
        *_, locked, held = await self._db.run_together(*first, (_HOLD, insert))
        if not locked:
            raise InvalidRequest(f"no customer {user_id}")
        if held:
            return rows.reservation_from_row(held[0])
        [(count,)] = await self._db.run(_COUNT_HOLDS, user_id=user_id, now=now)
        if count >= max_holds:
            raise HoldLimitReached(f"you already hold {count} seats, the most allowed")
        raise SeatUnavailable(f"seat {seat.number} is held or sold")

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        found = await self._db.run(_RESERVATION, reservation_id=reservation_id)
        return rows.reservation_from_row(found[0]) if found else None

    async def mark_paid(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        return await self._end_hold(reservation_id, now, "paid")

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        return await self._end_hold(reservation_id, now, "cancelled")

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        # a CTE, not IN (subquery): PostgreSQL may rescan an IN subquery and pass the LIMIT
        due = (
            select(reservations.c.reservation_id)
            .where(reservations.c.status == "held", reservations.c.expires_at <= now)
            .order_by(reservations.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        statement = (
            update(reservations)
            .where(
                reservations.c.reservation_id == due.c.reservation_id,
                reservations.c.status == "held",
            )
            .values(status="expired")
            .returning(*reservations.c)
        )
        return [rows.reservation_from_row(row) for row in await self._db.execute(statement)]

    async def _end_hold(
        self, reservation_id: ReservationId, now: datetime, status: str
    ) -> Reservation | None:
        ended = await self._db.run(
            _END_HOLD, reservation_id=reservation_id, now=now, new_status=status
        )
        return rows.reservation_from_row(ended[0]) if ended else None


class SqlWalletRepository(WalletRepository):
    def __init__(self, db: SqlSession) -> None:
        self._db = db

    async def open(self, user_id: UserId) -> None:
        statement = (
            self._db.insert(wallets)
            .values(user_id=user_id, balance=0)
            .on_conflict_do_nothing(index_elements=["user_id"])
        )
        await self._db.execute(statement)

    async def balance(self, user_id: UserId) -> int:
        found = await self._db.run(_BALANCE, user_id=user_id)
        return int(found[0].balance) if found else 0

    async def credit(
        self, user_id: UserId, amount: int, now: datetime, max_balance: int
    ) -> int | None:
        entry = LedgerEntry(user_id, LedgerKind.CHARGE, amount, now)
        return await self._move(_CREDIT, _CREDIT_RECORDED, entry, max_balance=max_balance)

    async def debit(
        self, user_id: UserId, amount: int, now: datetime, payment_id: PaymentId
    ) -> int | None:
        entry = LedgerEntry(user_id, LedgerKind.PAYMENT, amount, now, payment_id)
        return await self._move(_DEBIT, _DEBIT_RECORDED, entry)

    async def ledger(self, user_id: UserId) -> list[LedgerEntry]:
        statement = select(ledger).where(ledger.c.user_id == user_id).order_by(ledger.c.entry_id)
        return [rows.ledger_entry_from_row(row) for row in await self._db.execute(statement)]

    async def _move(
        self, move: Query, recorded: Query, entry: LedgerEntry, **limits: int
    ) -> int | None:
        """The new balance, with its ledger entry written; None if the move did not happen.
        One statement on PostgreSQL, two on SQLite (which has no UPDATE inside WITH)."""
        values = {
            "user_id": entry.user_id,
            "kind": entry.kind.value,
            "amount": entry.amount,
            "payment_id": entry.payment_id,
            "created_at": entry.created_at,
        }
        if self._db.dialect == "postgresql":
            moved = await self._db.run(recorded, **values, **limits)
        else:
            moved = await self._db.run(move, user_id=entry.user_id, amount=entry.amount, **limits)
            if moved:
                await self._db.run(_LEDGER_ENTRY, **values)
        return int(moved[0].balance) if moved else None


class SqlPaymentRepository(PaymentRepository):
    def __init__(self, db: SqlSession) -> None:
        self._db = db

    async def add(
        self, reservation_id: ReservationId, user_id: UserId, amount: int, now: datetime
    ) -> Payment:
        added = await self._db.run(
            _PAYMENT, reservation_id=reservation_id, user_id=user_id, amount=amount, created_at=now
        )
        if not added:
            raise ReservationNotHeld(f"reservation {reservation_id} is already paid")
        return rows.payment_from_row(added[0])

    async def for_reservation(self, reservation_id: ReservationId) -> Payment | None:
        statement = select(payments).where(payments.c.reservation_id == reservation_id)
        row = (await self._db.execute(statement)).first()
        return None if row is None else rows.payment_from_row(row)


class SqlIdempotencyRepository(IdempotencyRepository):
    def __init__(self, db: SqlSession) -> None:
        self._db = db

    async def claim(
        self, user_id: UserId, key: str, fingerprint: str, now: datetime, lease: timedelta
    ) -> IdempotencyRecord | None:
        mine = and_(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key)
        for _ in range(3):  # a record deleted between our two statements: try again
            inserted = (
                self._db.insert(idempotency_keys)
                .values(
                    user_id=user_id,
                    key=key,
                    fingerprint=fingerprint,
                    state=IdempotencyState.PENDING.value,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["user_id", "key"])
                .returning(idempotency_keys.c.key)
            )
            if (await self._db.execute(inserted)).first() is not None:
                return None
            taken_over = (
                update(idempotency_keys)
                .where(
                    mine,
                    idempotency_keys.c.state == IdempotencyState.PENDING.value,
                    idempotency_keys.c.created_at <= now - lease,
                )
                .values(fingerprint=fingerprint, created_at=now)
                .returning(idempotency_keys.c.key)
            )
            if (await self._db.execute(taken_over)).first() is not None:
                return None
            row = (await self._db.execute(select(idempotency_keys).where(mine))).first()
            if row is not None:
                return rows.idempotency_from_row(row)
        raise RuntimeError(f"idempotency key {key!r} kept vanishing while being claimed")

    async def complete(self, user_id: UserId, key: str, outcome: StoredOutcome) -> None:
        await self._db.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key)
            .values(state=IdempotencyState.DONE.value, outcome=rows.outcome_to_json(outcome))
        )

    async def release(self, user_id: UserId, key: str) -> None:
        await self._db.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.user_id == user_id,
                idempotency_keys.c.key == key,
                idempotency_keys.c.state == IdempotencyState.PENDING.value,
            )
        )

    async def purge(self, before: datetime) -> int:
        result = await self._db.execute(
            delete(idempotency_keys).where(idempotency_keys.c.created_at < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
