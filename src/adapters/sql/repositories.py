"""The database-backed ports on the statements of `adapters.sql.statements`, for PostgreSQL and
SQLite alike. Each repository runs its statements through the unit of work's session; where a
rule needs more than one statement, the statements go in one round trip where they can."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from adapters.sql import rows
from adapters.sql import statements as sql
from adapters.sql.queries import Query
from adapters.sql.sessions import Session
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
    SeatUnavailable,
)
from concert_domain.idempotency import IdempotencyRecord, StoredOutcome
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
from concert_domain.wallet import LedgerEntry, LedgerKind, Payment, Sale, shortfall


class SqlAccountRepository(AccountRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def add(self, email: str, password_hash: str, now: datetime) -> Account:
        added = await self._db.run(
            sql.ACCOUNT_ADD, email=email, password_hash=password_hash, created_at=now
        )
        if not added:
            raise EmailTaken(f"{email} already has an account")
        return rows.account_from_row(added[0])

    async def get_by_email(self, email: str) -> Account | None:
        found = await self._db.run(sql.ACCOUNT_BY_EMAIL, email=email)
        return rows.account_from_row(found[0]) if found else None


class SqlCatalogRepository(CatalogRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def add_concert(self, title: str) -> Concert:
        [row] = await self._db.run(sql.CONCERT_ADD, title=title)
        return rows.concert_from_row(row)

    async def add_date(self, concert_id: ConcertId, day: date, starts_at: datetime) -> ConcertDate:
        if await self.get_concert(concert_id) is None:
            raise InvalidRequest(f"no concert {concert_id}")
        [row] = await self._db.run(
            sql.DATE_ADD, concert_id=concert_id, day=day, starts_at=starts_at
        )
        return rows.date_from_row(row)

    async def add_seats(self, date_id: DateId, seat_list: Sequence[tuple[int, int]]) -> list[Seat]:
        concert_date = await self.get_date(date_id)
        if concert_date is None:
            raise InvalidRequest(f"no date {date_id}")
        if not seat_list:
            return []
        steps = [
            (
                sql.SEAT_ADD,
                {
                    "date_id": date_id,
                    "concert_id": concert_date.concert_id,
                    "number": number,
                    "price": price,
                },
            )
            for number, price in seat_list
        ]
        added = [
            rows.seat_from_row(row)
            for found in await self._db.run_together(*steps)
            for row in found
        ]
        if len(added) < len(seat_list):  # the unit of work is rolled back by the error
            kept = {seat.number for seat in added}
            numbers = [number for number, _ in seat_list]
            clash = sorted({n for n in numbers if n not in kept or numbers.count(n) > 1})
            raise InvalidRequest(f"seats {clash} already exist on date {date_id}")
        return sorted(added, key=lambda seat: seat.number)

    async def list_concerts(self) -> list[Concert]:
        return [rows.concert_from_row(row) for row in await self._db.run(sql.CONCERTS)]

    async def get_concert(self, concert_id: ConcertId) -> Concert | None:
        found = await self._db.run(sql.CONCERT, concert_id=concert_id)
        return rows.concert_from_row(found[0]) if found else None

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        cached = self._db.catalog.dates.get(date_id)
        if cached is not None:
            return cached
        found_rows = await self._db.run(sql.DATE, date_id=date_id)
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
            found_rows = await self._db.run(sql.SEAT, seat_id=seat_id)
            return rows.seat_from_row(found_rows[0]) if found_rows else None
        # customers hold seats of the date they are looking at: keep all of its seats at once,
        # one loader at a time, so that a cold process meeting the on-sale rush reads each
        # date once rather than once per waiting request
        async with self._db.catalog.loading:
            cached = self._db.catalog.seats.get(seat_id)
            if cached is not None:
                return cached
            found = None
            for row in await self._db.run(sql.SEATS_OF_THE_DATE_OF, seat_id=seat_id):
                seat = self._db.catalog.keep_seat(rows.seat_from_row(row))
                if seat.seat_id == seat_id:
                    found = seat
            return found

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        return [
            DateAvailability(rows.date_from_row(row), row.available)
            for row in await self._db.run(sql.OPEN_DATES, concert_id=concert_id, now=now)
        ]

    async def seat_map(self, date_id: DateId, now: datetime) -> list[SeatView]:
        return [
            SeatView(
                rows.seat_from_row(row),
                _SEAT_STATUS[row.live_status],
                row.held_until if row.live_status == "held" else None,
            )
            for row in await self._db.run(sql.SEAT_MAP, date_id=date_id, now=now)
        ]


_SEAT_STATUS = {None: SeatStatus.AVAILABLE, "held": SeatStatus.HELD, "paid": SeatStatus.SOLD}


class SqlReservationRepository(ReservationRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def hold(
        self,
        user_id: UserId,
        seat: Seat,
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> Reservation:
        first = [(sql.LOCK_AND_LAPSE, {"user_id": user_id, "seat_id": seat.seat_id, "now": now})]
        if self._db.dialect == "sqlite":
            first = [
                (sql.LAPSE, {"seat_id": seat.seat_id, "now": now}),
                (sql.LOCK, {"user_id": user_id}),
            ]
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
        *_, locked, held = await self._db.run_together(*first, (sql.HOLD, insert))
        if not locked:
            raise InvalidRequest(f"no customer {user_id}")
        if held:
            return rows.reservation_from_row(held[0])
        [(count,)] = await self._db.run(sql.COUNT_HOLDS, user_id=user_id, now=now)
        if count >= max_holds:
            raise HoldLimitReached(f"you already hold {count} seats, the most allowed")
        raise SeatUnavailable(f"seat {seat.number} is held or sold")

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        found = await self._db.run(sql.RESERVATION, reservation_id=reservation_id)
        return rows.reservation_from_row(found[0]) if found else None

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        return await self._end_hold(reservation_id, now, "cancelled")

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        expired = await self._db.run(sql.EXPIRE_DUE, now=now, limit=limit)
        return [rows.reservation_from_row(row) for row in expired]

    async def _end_hold(
        self, reservation_id: ReservationId, now: datetime, status: str
    ) -> Reservation | None:
        ended = await self._db.run(
            sql.END_HOLD, reservation_id=reservation_id, now=now, new_status=status
        )
        return rows.reservation_from_row(ended[0]) if ended else None


class SqlWalletRepository(WalletRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def open(self, user_id: UserId) -> None:
        await self._db.run(sql.WALLET_OPEN, user_id=user_id)

    async def balance(self, user_id: UserId) -> int:
        found = await self._db.run(sql.BALANCE, user_id=user_id)
        return int(found[0].balance) if found else 0

    async def credit(
        self, user_id: UserId, amount: int, now: datetime, max_balance: int
    ) -> int | None:
        entry = LedgerEntry(user_id, LedgerKind.CHARGE, amount, now)
        return await _move_money(
            self._db, sql.CREDIT, sql.CREDIT_RECORDED, entry, max_balance=max_balance
        )

    async def ledger(self, user_id: UserId) -> list[LedgerEntry]:
        found = await self._db.run(sql.LEDGER, user_id=user_id)
        return [rows.ledger_entry_from_row(row) for row in found]


async def _move_money(
    db: Session, move: Query, recorded: Query | None, entry: LedgerEntry, **limits: int
) -> int | None:
    """The new balance, with its ledger entry written; None if the move did not happen. With
    ``recorded``, one statement on PostgreSQL; else two (SQLite has no UPDATE inside WITH)."""
    values: dict[str, Any] = {
        "user_id": entry.user_id,
        "kind": entry.kind.value,
        "amount": entry.amount,
        "payment_id": entry.payment_id,
        "created_at": entry.created_at,
    }
    if recorded is not None and db.dialect == "postgresql":
        moved = await db.run(recorded, **values, **limits)
    else:
        moved = await db.run(move, user_id=entry.user_id, amount=entry.amount, **limits)
        if moved:
            await db.run(sql.LEDGER_ENTRY, **values)
    return int(moved[0].balance) if moved else None


class SqlPaymentRepository(PaymentRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def pay(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime
    ) -> Sale | None:
        mine = {"reservation_id": reservation_id, "user_id": user_id, "now": now}
        if self._db.dialect == "postgresql":
            try:
                sales = await self._db.run(sql.SALE, **mine)
            except psycopg.errors.CheckViolation as e:
                if e.diag.constraint_name == sql.BALANCE_NOT_NEGATIVE:
                    raise shortfall(reservation_id) from e
                raise
            if not sales:
                return None
            row = sales[0]
            payment = Payment(PaymentId(row.payment_id), reservation_id, user_id, row.price, now)
            return Sale(rows.reservation_from_row(row), payment, row.balance)
        sold = await self._db.run(sql.SELL, **mine)
        if not sold:
            return None
        reservation = rows.reservation_from_row(sold[0])
        [added] = await self._db.run(
            sql.PAYMENT_ADD,
            reservation_id=reservation_id,
            user_id=user_id,
            amount=reservation.price,
            created_at=now,
        )
        payment = rows.payment_from_row(added)
        entry = LedgerEntry(user_id, LedgerKind.PAYMENT, payment.amount, now, payment.payment_id)
        balance = await _move_money(self._db, sql.DEBIT, None, entry)
        if balance is None:
            raise shortfall(reservation_id)
        return Sale(reservation, payment, balance)

    async def for_reservation(self, reservation_id: ReservationId) -> Payment | None:
        found = await self._db.run(sql.PAYMENT_FOR, reservation_id=reservation_id)
        return rows.payment_from_row(found[0]) if found else None


class SqlIdempotencyRepository(IdempotencyRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def claim(
        self, user_id: UserId, key: str, fingerprint: str, now: datetime, lease: timedelta
    ) -> IdempotencyRecord | None:
        mine = {"user_id": user_id, "key": key}
        claim = {**mine, "fingerprint": fingerprint, "created_at": now}
        for _ in range(3):  # a record deleted between our statements: try again
            if await self._db.run(sql.KEY_CLAIM, **claim):
                return None
            if await self._db.run(sql.KEY_TAKE_OVER, **claim, abandoned_by=now - lease):
                return None
            found = await self._db.run(sql.KEY, **mine)
            if found:
                return rows.idempotency_from_row(found[0])
        raise RuntimeError(f"idempotency key {key!r} kept vanishing while being claimed")

    async def complete(self, user_id: UserId, key: str, outcome: StoredOutcome) -> None:
        await self._db.run(
            sql.KEY_COMPLETE, user_id=user_id, key=key, outcome=rows.outcome_to_json(outcome)
        )

    async def release(self, user_id: UserId, key: str) -> None:
        await self._db.run(sql.KEY_RELEASE, user_id=user_id, key=key)

    async def purge(self, before: datetime) -> int:
        return len(await self._db.run(sql.KEYS_PURGE, before=before))
