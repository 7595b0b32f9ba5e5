"""The database-backed ports, in memory: complete, transactional, and safe under coroutines.

`InMemoryDatabase` holds the tables; `InMemoryUnitOfWork` takes the database's lock for the
length of one transaction and rolls back unless committed. Each conditional write checks and
writes in one step with no ``await`` between, as the real stores do in one statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from collections.abc import Sequence as Seq
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Self, TypeVar

import attrs

from adapters.memory.journal import Journal, Sequence, Table
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
from concert_domain.idempotency import IdempotencyRecord, IdempotencyState, StoredOutcome
from concert_domain.ids import (
    ConcertId,
    DateId,
    PaymentId,
    ReservationId,
    SeatId,
    UserId,
)
from concert_domain.ports import (
    AccountRepository,
    CatalogRepository,
    IdempotencyRepository,
    PaymentRepository,
    ReservationRepository,
    UnitOfWork,
    WalletRepository,
)
from concert_domain.reservations import Reservation, ReservationStatus
from concert_domain.wallet import LedgerEntry, LedgerKind, Payment, Sale, shortfall


class InMemoryDatabase:
    """Every table of the service. Share one instance between the units of work of a process."""

    def __init__(self) -> None:
        self.journal = j = Journal()
        self.accounts: Table[UserId, Account] = Table(j)
        self.account_by_email: Table[str, UserId] = Table(j)
        self.concerts: Table[ConcertId, Concert] = Table(j)
        self.dates: Table[DateId, ConcertDate] = Table(j)
        self.seats: Table[SeatId, Seat] = Table(j)
        self.seats_by_date: Table[DateId, tuple[SeatId, ...]] = Table(j)
        self.reservations: Table[ReservationId, Reservation] = Table(j)
        self.reservations_by_seat: Table[SeatId, tuple[ReservationId, ...]] = Table(j)
        self.reservations_by_user: Table[UserId, tuple[ReservationId, ...]] = Table(j)
        self.held: Table[ReservationId, datetime] = Table(j)
        self.wallets: Table[UserId, int] = Table(j)
        self.ledger: Table[UserId, tuple[LedgerEntry, ...]] = Table(j)
        self.payments: Table[PaymentId, Payment] = Table(j)
        self.payment_by_reservation: Table[ReservationId, PaymentId] = Table(j)
        self.idempotency: Table[tuple[UserId, str], IdempotencyRecord] = Table(j)
        self.next_user = Sequence()
        self.next_concert = Sequence()
        self.next_date = Sequence()
        self.next_seat = Sequence()
        self.next_reservation = Sequence()
        self.next_payment = Sequence()

    def unit_of_work(self, *, read_only: bool = False) -> InMemoryUnitOfWork:
        """A `UnitOfWorkFactory`: pass the bound method. Reads take turns too: it is cheap."""
        return InMemoryUnitOfWork(self)

    def live_reservation(self, seat_id: SeatId, now: datetime) -> Reservation | None:
        for reservation_id in self.reservations_by_seat.get(seat_id) or ():
            reservation = self.reservations.get(reservation_id)
            if reservation is not None and reservation.is_live(now):
                return reservation
        return None

    def seat_view(self, seat: Seat, now: datetime) -> SeatView:
        live = self.live_reservation(seat.seat_id, now)
        if live is None:
            return SeatView(seat, SeatStatus.AVAILABLE)
        if live.status is ReservationStatus.PAID:
            return SeatView(seat, SeatStatus.SOLD)
        return SeatView(seat, SeatStatus.HELD, live.expires_at)

    def move_money(self, entry: LedgerEntry, new_balance: int) -> int:
        """Set the wallet's balance and append the entry that explains it."""
        self.wallets.put(entry.user_id, new_balance)
        _append(self.ledger, entry.user_id, entry)
        return new_balance

    def save_reservation(self, reservation: Reservation) -> None:
        self.reservations.put(reservation.reservation_id, reservation)
        if reservation.status is ReservationStatus.HELD:
            self.held.put(reservation.reservation_id, reservation.expires_at)
        else:
            self.held.delete(reservation.reservation_id)


K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


def _append(table: Table[K, tuple[V, ...]], key: K, value: V) -> None:
    table.put(key, (*(table.get(key) or ()), value))


class InMemoryAccountRepository(AccountRepository):
    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db

    async def add(self, email: str, password_hash: str, now: datetime) -> Account:
        if email in self._db.account_by_email:
            raise EmailTaken(f"{email} already has an account")
        account = Account(UserId(self._db.next_user()), email, password_hash, now)
        self._db.accounts.put(account.user_id, account)
        self._db.account_by_email.put(email, account.user_id)
        return account

    async def get_by_email(self, email: str) -> Account | None:
        user_id = self._db.account_by_email.get(email)
        return None if user_id is None else self._db.accounts.get(user_id)


class InMemoryCatalogRepository(CatalogRepository):
    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db

    async def add_concert(self, title: str) -> Concert:
        concert = Concert(ConcertId(self._db.next_concert()), title)
        self._db.concerts.put(concert.concert_id, concert)
        return concert

    async def add_date(self, concert_id: ConcertId, day: date, starts_at: datetime) -> ConcertDate:
        if concert_id not in self._db.concerts:
            raise InvalidRequest(f"no concert {concert_id}")
        concert_date = ConcertDate(DateId(self._db.next_date()), concert_id, day, starts_at)
        self._db.dates.put(concert_date.date_id, concert_date)
        return concert_date

    async def add_seats(self, date_id: DateId, seats: Seq[tuple[int, int]]) -> list[Seat]:
        concert_date = self._db.dates.get(date_id)
        if concert_date is None:
            raise InvalidRequest(f"no date {date_id}")
        taken = {
            self._seat(seat_id).number for seat_id in self._db.seats_by_date.get(date_id) or ()
        }
        added = []
        for number, price in seats:
            if number in taken:
                raise InvalidRequest(f"seat {number} already exists on date {date_id}")
            taken.add(number)
            seat = Seat(
                SeatId(self._db.next_seat()), date_id, concert_date.concert_id, number, price
            )
            self._db.seats.put(seat.seat_id, seat)
            _append(self._db.seats_by_date, date_id, seat.seat_id)
            added.append(seat)
        return added

    async def list_concerts(self) -> list[Concert]:
        return sorted(self._db.concerts.values(), key=lambda concert: concert.concert_id)

    async def get_concert(self, concert_id: ConcertId) -> Concert | None:
        return self._db.concerts.get(concert_id)

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        return self._db.dates.get(date_id)

    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        return self._db.seats.get(seat_id)

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        found = []
        for concert_date in self._db.dates.values():
            if concert_date.concert_id != concert_id or not concert_date.is_open(now):
                continue
            available = sum(
                1
                for seat_id in self._db.seats_by_date.get(concert_date.date_id) or ()
                if self._db.live_reservation(seat_id, now) is None
            )
            if available:
                found.append(DateAvailability(concert_date, available))
        return sorted(found, key=lambda item: (item.date.starts_at, item.date.date_id))

    async def seat_map(self, date_id: DateId, now: datetime) -> list[SeatView]:
        seats = [self._seat(seat_id) for seat_id in self._db.seats_by_date.get(date_id) or ()]
        return [
            self._db.seat_view(seat, now) for seat in sorted(seats, key=lambda seat: seat.number)
        ]

    def _seat(self, seat_id: SeatId) -> Seat:
        seat = self._db.seats.get(seat_id)
        assert seat is not None, f"seat index names missing seat {seat_id}"
        return seat


class InMemoryReservationRepository(ReservationRepository):
    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db

    async def hold(
        self,
        user_id: UserId,
        seat: Seat,
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> Reservation:
        if self._db.live_reservation(seat.seat_id, now) is not None:
            raise SeatUnavailable(f"seat {seat.number} is held or sold")
        holds = sum(
            1
            for reservation_id in self._db.reservations_by_user.get(user_id) or ()
            if self._reservation(reservation_id).is_held(now)
        )
        if holds >= max_holds:
            raise HoldLimitReached(f"you already hold {holds} seats, the most allowed")
        reservation_id = ReservationId(self._db.next_reservation())
        reservation = Reservation.hold(reservation_id, user_id, seat, now, expires_at)
        self._db.save_reservation(reservation)
        _append(self._db.reservations_by_seat, seat.seat_id, reservation_id)
        _append(self._db.reservations_by_user, user_id, reservation_id)
        return reservation

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        return self._db.reservations.get(reservation_id)

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        reservation = self._db.reservations.get(reservation_id)
        if reservation is None or not reservation.is_held(now):
            return None
        cancelled = reservation.cancelled()
        self._db.save_reservation(cancelled)
        return cancelled

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        due = sorted(
            (expires_at, reservation_id)
            for reservation_id, expires_at in self._db.held.items()
            if expires_at <= now
        )[:limit]
        expired = []
        for _, reservation_id in due:
            reservation = self._reservation(reservation_id).expired()
            self._db.save_reservation(reservation)
            expired.append(reservation)
        return expired

    def _reservation(self, reservation_id: ReservationId) -> Reservation:
        reservation = self._db.reservations.get(reservation_id)
        assert reservation is not None, f"index names missing reservation {reservation_id}"
        return reservation


class InMemoryWalletRepository(WalletRepository):
    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db

    async def open(self, user_id: UserId) -> None:
        if user_id not in self._db.wallets:
            self._db.wallets.put(user_id, 0)

    async def balance(self, user_id: UserId) -> int:
        return self._db.wallets.get(user_id) or 0

    async def credit(
        self, user_id: UserId, amount: int, now: datetime, max_balance: int
    ) -> int | None:
        balance = self._db.wallets.get(user_id)
        if balance is None or balance + amount > max_balance:
            return None
        entry = LedgerEntry(user_id, LedgerKind.CHARGE, amount, now)
        return self._db.move_money(entry, balance + amount)

    async def ledger(self, user_id: UserId) -> list[LedgerEntry]:
        return list(self._db.ledger.get(user_id) or ())


class InMemoryPaymentRepository(PaymentRepository):
    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db

    async def pay(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime
    ) -> Sale | None:
        reservation = self._db.reservations.get(reservation_id)
        if reservation is None or reservation.user_id != user_id or not reservation.is_held(now):
            return None
        price = reservation.price
        balance = self._db.wallets.get(user_id)
        if balance is None or balance < price:
            raise shortfall(reservation_id)
        paid = reservation.paid()
        self._db.save_reservation(paid)
        payment = Payment(PaymentId(self._db.next_payment()), reservation_id, user_id, price, now)
        self._db.payments.put(payment.payment_id, payment)
        self._db.payment_by_reservation.put(reservation_id, payment.payment_id)
        entry = LedgerEntry(user_id, LedgerKind.PAYMENT, price, now, payment.payment_id)
        return Sale(paid, payment, self._db.move_money(entry, balance - price))

    async def for_reservation(self, reservation_id: ReservationId) -> Payment | None:
        payment_id = self._db.payment_by_reservation.get(reservation_id)
        return None if payment_id is None else self._db.payments.get(payment_id)


class InMemoryIdempotencyRepository(IdempotencyRepository):
    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db

    async def claim(
        self, user_id: UserId, key: str, fingerprint: str, now: datetime, lease: timedelta
    ) -> IdempotencyRecord | None:
        existing = self._db.idempotency.get((user_id, key))
        abandoned = (
            existing is not None
            and existing.state is IdempotencyState.PENDING
            and existing.created_at + lease <= now
        )
        if existing is not None and not abandoned:
            return existing
        record = IdempotencyRecord(user_id, key, fingerprint, IdempotencyState.PENDING, now)
        self._db.idempotency.put((user_id, key), record)
        return None

    async def complete(self, user_id: UserId, key: str, outcome: StoredOutcome) -> None:
        record = self._db.idempotency.get((user_id, key))
        if record is not None:
            done = attrs.evolve(record, state=IdempotencyState.DONE, outcome=outcome)
            self._db.idempotency.put((user_id, key), done)

    async def release(self, user_id: UserId, key: str) -> None:
        record = self._db.idempotency.get((user_id, key))
        if record is not None and record.state is IdempotencyState.PENDING:
            self._db.idempotency.delete((user_id, key))

    async def purge(self, before: datetime) -> int:
        old = [
            (record.user_id, record.key)
            for record in self._db.idempotency.values()
            if record.created_at < before
        ]
        for user_and_key in old:
            self._db.idempotency.delete(user_and_key)
        return len(old)


class InMemoryUnitOfWork(UnitOfWork):
    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db
        self.accounts = InMemoryAccountRepository(db)
        self.catalog = InMemoryCatalogRepository(db)
        self.reservations = InMemoryReservationRepository(db)
        self.wallets = InMemoryWalletRepository(db)
        self.payments = InMemoryPaymentRepository(db)
        self.idempotency = InMemoryIdempotencyRepository(db)

    async def __aenter__(self) -> Self:
        await asyncio.sleep(0)  # let other coroutines in between transactions, as a server would
        await self._db.journal.lock.acquire()
        self._db.journal.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._db.journal.rollback()
        finally:
            self._db.journal.lock.release()

    async def commit(self) -> None:
        self._db.journal.commit()

    async def commit_with(self, change: Awaitable[T]) -> T:
        result = await change  # this store writes nothing before it has decided
        await self.commit()
        return result
