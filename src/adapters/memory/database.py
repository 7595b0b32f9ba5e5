"""The database-backed ports, in memory: complete, transactional, and safe under coroutines.

`InMemoryDatabase` holds the tables; `InMemoryUnitOfWork` takes the database's lock for the
length of one transaction and rolls back unless committed. Each conditional write checks and
writes in one step with no ``await`` between, as the real stores do in one statement. A
repository method that changes anything goes through `InMemoryUnitOfWork.changing`, which keeps
the rules of `ports.UnitOfWork`: no change after commit, no commit after a failed change.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import attrs

from adapters.memory.journal import Journal, Numbering, Table
from concert_domain.accounts import Account, AccountOverview, Role
from concert_domain.catalog import (
    Concert,
    ConcertDate,
    DateAvailability,
    NewSeat,
    Sales,
    Seat,
    SeatStatus,
    SeatView,
    SectionSales,
    SoldSeat,
    seat_label,
)
from concert_domain.errors import (
    EmailTaken,
    HoldLimitReached,
    InsufficientBalance,
    InvalidRequest,
    SeatUnavailable,
    TransactionAborted,
    TransactionClosed,
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
from concert_domain.paging import Position
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
from concert_domain.wallet import LedgerEntry, LedgerKind, Payment, Refund, Sale


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
        self.next_user = Numbering()
        self.next_concert = Numbering()
        self.next_date = Numbering()
        self.next_seat = Numbering()
        self.next_reservation = Numbering()
        self.next_payment = Numbering()
        self.next_entry = Numbering()

    def unit_of_work(self, *, read_only: bool = False) -> InMemoryUnitOfWork:
        """A `UnitOfWorkFactory`: pass the bound method."""
        return InMemoryUnitOfWork(self, read_only=read_only)

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
        """Set the wallet's balance and append the entry that explains it, numbered."""
        self.wallets.put(entry.user_id, new_balance)
        numbered = attrs.evolve(entry, balance=new_balance, entry_id=self.next_entry())
        _append(self.ledger, entry.user_id, numbered)
        return new_balance

    def seats_of(self, date_id: DateId) -> list[Seat]:
        """The date's seats in layout order."""
        seats = [self.seat(seat_id) for seat_id in self.seats_by_date.get(date_id) or ()]
        return sorted(seats, key=lambda s: (s.section_order, s.row_order, s.number))

    def seat(self, seat_id: SeatId) -> Seat:
        seat = self.seats.get(seat_id)
        assert seat is not None, f"an index names missing seat {seat_id}"
        return seat

    def reservation(self, reservation_id: ReservationId) -> Reservation:
        reservation = self.reservations.get(reservation_id)
        assert reservation is not None, f"an index names missing reservation {reservation_id}"
        return reservation

    def save_reservation(self, reservation: Reservation) -> None:
        self.reservations.put(reservation.reservation_id, reservation)
        if reservation.status is ReservationStatus.HELD:
            self.held.put(reservation.reservation_id, reservation.expires_at)
        else:
            self.held.delete(reservation.reservation_id)


K = TypeVar("K")
V = TypeVar("V")


def _append(table: Table[K, tuple[V, ...]], key: K, value: V) -> None:
    table.put(key, (*(table.get(key) or ()), value))


R = TypeVar("R", bound="_Repository")
P = ParamSpec("P")
T = TypeVar("T")


def _reads(
    method: Callable[Concatenate[R, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[R, P], Coroutine[Any, Any, T]]:
    """A read: in a read-only unit of work, one step of its own (`InMemoryUnitOfWork.reading`)."""

    @functools.wraps(method)
    async def read(self: R, /, *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._tx.reading():
            return await method(self, *args, **kwargs)

    return read


def _changes(
    method: Callable[Concatenate[R, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[R, P], Coroutine[Any, Any, T]]:
    """A change: kept to the rules of `ports.UnitOfWork` (`InMemoryUnitOfWork.changing`)."""

    @functools.wraps(method)
    async def change(self: R, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._tx.changing():
            return await method(self, *args, **kwargs)

    return change


class _State(enum.Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


class _Repository:
    def __init__(self, db: InMemoryDatabase, tx: InMemoryUnitOfWork) -> None:
        self._db = db
        self._tx = tx


class InMemoryAccountRepository(_Repository, AccountRepository):
    @_changes
    async def add(
        self, email: str, password_hash: str, now: datetime, role: Role = Role.CUSTOMER
    ) -> Account:
        if email in self._db.account_by_email:
            raise EmailTaken(f"{email} already has an account")
        account = Account(UserId(self._db.next_user()), email, password_hash, now, role)
        self._db.accounts.put(account.user_id, account)
        self._db.account_by_email.put(email, account.user_id)
        return account

    @_reads
    async def get(self, user_id: UserId) -> Account | None:
        return self._db.accounts.get(user_id)

    @_reads
    async def get_by_email(self, email: str) -> Account | None:
        user_id = self._db.account_by_email.get(email)
        return None if user_id is None else self._db.accounts.get(user_id)

    @_reads
    async def exists(self, user_id: UserId) -> bool:
        return user_id in self._db.accounts

    @_changes
    async def set_role(self, user_id: UserId, role: Role) -> None:
        account = self._db.accounts.get(user_id)
        if account is not None:
            self._db.accounts.put(user_id, attrs.evolve(account, role=role))

    @_reads
    async def overview(self, user_id: UserId, now: datetime) -> AccountOverview | None:
        account = self._db.accounts.get(user_id)
        if account is None:
            return None
        holds = [
            reservation
            for reservation_id in self._db.reservations_by_user.get(user_id) or ()
            if (reservation := self._db.reservation(reservation_id)).is_held(now)
        ]
        balance = self._db.wallets.get(user_id) or 0
        return AccountOverview(account, balance, sorted(holds, key=lambda r: r.expires_at))


class InMemoryCatalogRepository(_Repository, CatalogRepository):
    @_changes
    async def add_concert(self, title: str, venue: str = "") -> Concert:
        concert = Concert(ConcertId(self._db.next_concert()), title, venue)
        self._db.concerts.put(concert.concert_id, concert)
        return concert

    @_changes
    async def add_date(
        self,
        concert_id: ConcertId,
        day: date,
        starts_at: datetime,
        sale_opens_at: datetime,
        sale_closes_at: datetime,
    ) -> ConcertDate:
        if concert_id not in self._db.concerts:
            raise InvalidRequest(f"no concert {concert_id}")
        date_id = DateId(self._db.next_date())
        concert_date = ConcertDate(
            date_id, concert_id, day, starts_at, sale_opens_at, sale_closes_at
        )
        self._db.dates.put(date_id, concert_date)
        return concert_date

    @_changes
    async def add_seats(self, date_id: DateId, seats: Iterable[NewSeat]) -> int:
        concert_date = self._db.dates.get(date_id)
        if concert_date is None:
            raise InvalidRequest(f"no date {date_id}")
        taken = {(s.section, s.row, s.number) for s in self._db.seats_of(date_id)}
        added = []
        for new in seats:
            place = (new.section, new.row, new.number)
            if place in taken:
                raise InvalidRequest(f"seat {seat_label(*place)} already exists on {date_id}")
            taken.add(place)
            seat_id = SeatId(self._db.next_seat())
            seat = Seat(
                seat_id,
                date_id,
                concert_date.concert_id,
                new.section,
                new.row,
                new.number,
                new.price,
                new.section_order,
                new.row_order,
            )
            self._db.seats.put(seat_id, seat)
            added.append(seat_id)
        self._db.seats_by_date.put(date_id, (*(self._db.seats_by_date.get(date_id) or ()), *added))
        return len(added)

    @_reads
    async def list_concerts(self) -> list[Concert]:
        return sorted(self._db.concerts.values(), key=lambda concert: concert.concert_id)

    @_reads
    async def get_concert(self, concert_id: ConcertId) -> Concert | None:
        return self._db.concerts.get(concert_id)

    @_reads
    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        return self._db.dates.get(date_id)

    @_reads
    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        return self._db.seats.get(seat_id)

    @_reads
    async def sections(self, date_id: DateId) -> list[str]:
        return list(dict.fromkeys(seat.section for seat in self._db.seats_of(date_id)))

    @_reads
    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        found = []
        for concert_date in self._db.dates.values():
            if concert_date.concert_id != concert_id or concert_date.sale_has_closed(now):
                continue
            available = sum(
                1
                for seat_id in self._db.seats_by_date.get(concert_date.date_id) or ()
                if self._db.live_reservation(seat_id, now) is None
            )
            if available:
                found.append(DateAvailability(concert_date, available))
        return sorted(found, key=lambda item: (item.date.starts_at, item.date.date_id))

    @_reads
    async def seat_map(
        self, date_id: DateId, now: datetime, section: str | None = None
    ) -> list[SeatView]:
        return [
            self._db.seat_view(seat, now)
            for seat in self._db.seats_of(date_id)
            if section is None or seat.section == section
        ]

    @_reads
    async def sales(self, date_id: DateId, now: datetime) -> Sales:
        counts: dict[str, list[int]] = {}
        for seat in self._db.seats_of(date_id):
            total, held, sold, revenue = counts.setdefault(seat.section, [0, 0, 0, 0])
            live = self._db.live_reservation(seat.seat_id, now)
            paid = live is not None and live.status is ReservationStatus.PAID
            counts[seat.section] = [
                total + 1,
                held + (live is not None and not paid),
                sold + paid,
                revenue + (live.price if live is not None and paid else 0),
            ]
        return Sales(
            date_id,
            [
                SectionSales(name, total, total - held - sold, held, sold, revenue)
                for name, (total, held, sold, revenue) in counts.items()
            ],
        )

    @_reads
    async def sold_seats(
        self, date_id: DateId, after: ReservationId | None, limit: int
    ) -> list[SoldSeat]:
        sold = []
        for reservation in self._db.reservations.values():
            if reservation.date_id != date_id or reservation.status is not ReservationStatus.PAID:
                continue
            if after is not None and reservation.reservation_id <= after:
                continue
            payment_id = self._db.payment_by_reservation.get(reservation.reservation_id)
            payment = None if payment_id is None else self._db.payments.get(payment_id)
            account = self._db.accounts.get(reservation.user_id)
            assert payment is not None, f"paid reservation {reservation.reservation_id} unpaid"
            assert account is not None, f"reservation of missing account {reservation.user_id}"
            sold.append(
                SoldSeat(
                    reservation.reservation_id,
                    payment.payment_id,
                    reservation.section,
                    reservation.row,
                    reservation.number,
                    reservation.price,
                    payment.created_at,
                    account.email,
                )
            )
        return sorted(sold, key=lambda seat: seat.reservation_id)[:limit]


class InMemoryReservationRepository(_Repository, ReservationRepository):
    @_changes
    async def hold(
        self,
        user_id: UserId,
        seats: Sequence[Seat],
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> list[Reservation]:
        holds = sum(
            1
            for reservation_id in self._db.reservations_by_user.get(user_id) or ()
            if self._db.reservation(reservation_id).is_held(now)
        )
        if holds + len(seats) > max_holds:
            raise HoldLimitReached.at(max_holds)
        for seat in seats:
            if self._db.live_reservation(seat.seat_id, now) is not None:
                raise SeatUnavailable.taken(seat.number)
        held = []
        for seat in seats:
            reservation_id = ReservationId(self._db.next_reservation())
            reservation = Reservation.hold(reservation_id, user_id, seat, now, expires_at)
            self._db.save_reservation(reservation)
            _append(self._db.reservations_by_seat, seat.seat_id, reservation_id)
            _append(self._db.reservations_by_user, user_id, reservation_id)
            held.append(reservation)
        return held

    @_changes
    async def extend(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime, by: timedelta
    ) -> Reservation | None:
        reservation = self._db.reservations.get(reservation_id)
        if reservation is None or reservation.user_id != user_id:
            return None
        if not reservation.is_held(now) or reservation.extended:
            return None
        extended = reservation.extended_by(by)
        self._db.save_reservation(extended)
        return extended

    @_reads
    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        return self._db.reservations.get(reservation_id)

    @_changes
    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        reservation = self._db.reservations.get(reservation_id)
        if reservation is None or not reservation.is_held(now):
            return None
        cancelled = reservation.cancelled()
        self._db.save_reservation(cancelled)
        return cancelled

    @_changes
    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        due = sorted(
            (expires_at, reservation_id)
            for reservation_id, expires_at in self._db.held.items()
            if expires_at <= now
        )[:limit]
        expired = []
        for _, reservation_id in due:
            reservation = self._db.reservation(reservation_id).expired()
            self._db.save_reservation(reservation)
            expired.append(reservation)
        return expired

    @_reads
    async def of_customer(
        self,
        user_id: UserId,
        status: ReservationStatus | None,
        before: Position | None,
        limit: int,
        now: datetime,
    ) -> list[Reservation]:
        found = [
            self._db.reservation(reservation_id)
            for reservation_id in self._db.reservations_by_user.get(user_id) or ()
        ]
        if status is not None:
            found = [r for r in found if r.as_of(now).status is status]
        if before is not None:
            found = [r for r in found if (r.created_at, r.reservation_id) < (before.at, before.id)]
        found.sort(key=lambda r: (r.created_at, r.reservation_id), reverse=True)
        return found[:limit]


class InMemoryWalletRepository(_Repository, WalletRepository):
    @_changes
    async def open(self, user_id: UserId) -> None:
        if user_id not in self._db.wallets:
            self._db.wallets.put(user_id, 0)

    @_reads
    async def balance(self, user_id: UserId) -> int:
        return self._db.wallets.get(user_id) or 0

    @_changes
    async def credit(
        self, user_id: UserId, amount: int, now: datetime, max_balance: int
    ) -> int | None:
        balance = self._db.wallets.get(user_id)
        if balance is None or balance + amount > max_balance:
            return None
        entry = LedgerEntry(user_id, LedgerKind.CHARGE, amount, now)
        return self._db.move_money(entry, balance + amount)

    @_reads
    async def transactions(
        self, user_id: UserId, before: Position | None, limit: int
    ) -> list[LedgerEntry]:
        entries = list(self._db.ledger.get(user_id) or ())
        if before is not None:
            entries = [e for e in entries if e.entry_id < before.id]
        return entries[::-1][:limit]


class InMemoryPaymentRepository(_Repository, PaymentRepository):
    @_changes
    async def pay(
        self, reservation_ids: Sequence[ReservationId], user_id: UserId, now: datetime
    ) -> Sale | None:
        holds = [self._db.reservations.get(reservation_id) for reservation_id in reservation_ids]
        if not all(
            hold is not None and hold.user_id == user_id and hold.is_held(now) for hold in holds
        ):
            return None
        paid = tuple(hold.paid() for hold in holds if hold is not None)
        total = sum(reservation.price for reservation in paid)
        balance = self._db.wallets.get(user_id)
        if balance is None or balance < total:
            raise InsufficientBalance.for_reservation(reservation_ids[0])
        payment_id = PaymentId(self._db.next_payment())
        payment = Payment(payment_id, tuple(reservation_ids), user_id, total, now)
        self._db.payments.put(payment_id, payment)
        for reservation in paid:
            self._db.save_reservation(reservation)
            self._db.payment_by_reservation.put(reservation.reservation_id, payment_id)
        entry = LedgerEntry(user_id, LedgerKind.PAYMENT, total, now, payment_id)
        return Sale(paid, payment, self._db.move_money(entry, balance - total))

    @_changes
    async def refund(self, reservation_id: ReservationId, now: datetime) -> Refund | None:
        reservation = self._db.reservations.get(reservation_id)
        if reservation is None or reservation.status is not ReservationStatus.PAID:
            return None
        refunded = reservation.refunded()
        self._db.save_reservation(refunded)
        user_id, price = reservation.user_id, reservation.price
        payment_id = self._db.payment_by_reservation.get(reservation_id)
        entry = LedgerEntry(
            user_id, LedgerKind.REFUND, price, now, payment_id, reservation_id=reservation_id
        )
        balance = self._db.move_money(entry, (self._db.wallets.get(user_id) or 0) + price)
        return Refund(refunded, price, balance)


class InMemoryIdempotencyRepository(_Repository, IdempotencyRepository):
    @_changes
    async def claim(
        self, user_id: UserId, key: str, fingerprint: str, now: datetime, lease: timedelta
    ) -> IdempotencyRecord | None:
        existing = self._db.idempotency.get((user_id, key))
        if existing is not None and not existing.abandoned(now, lease):
            return existing
        record = IdempotencyRecord(user_id, key, fingerprint, IdempotencyState.PENDING, now)
        self._db.idempotency.put((user_id, key), record)
        return None

    @_changes
    async def complete(
        self, user_id: UserId, key: str, claimed_at: datetime, outcome: StoredOutcome
    ) -> bool:
        record = self._claim(user_id, key, claimed_at)
        if record is None:
            return False
        done = attrs.evolve(record, state=IdempotencyState.DONE, outcome=outcome)
        self._db.idempotency.put((user_id, key), done)
        return True

    async def find(self, user_id: UserId, key: str) -> IdempotencyRecord | None:
        return self._db.idempotency.get((user_id, key))

    @_changes
    async def release(self, user_id: UserId, key: str, claimed_at: datetime) -> None:
        if self._claim(user_id, key, claimed_at) is not None:
            self._db.idempotency.delete((user_id, key))

    def _claim(self, user_id: UserId, key: str, claimed_at: datetime) -> IdempotencyRecord | None:
        """The record, if it is still the pending claim made at ``claimed_at``."""
        record = self._db.idempotency.get((user_id, key))
        if record is None or record.state is not IdempotencyState.PENDING:
            return None
        return record if record.created_at == claimed_at else None

    @_changes
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
    """A writing unit of work holds the database's lock from its start to its end, so it sees
    and leaves a consistent state, as at SERIALIZABLE. A read-only one holds nothing between
    its reads: each read takes the lock for itself and sees only what is committed, as each
    statement of a read-only transaction at READ COMMITTED would."""

    def __init__(self, db: InMemoryDatabase, *, read_only: bool = False) -> None:
        self._db = db
        self._read_only = read_only
        self._state = _State.OPEN
        self.accounts = InMemoryAccountRepository(db, self)
        self.catalog = InMemoryCatalogRepository(db, self)
        self.reservations = InMemoryReservationRepository(db, self)
        self.wallets = InMemoryWalletRepository(db, self)
        self.payments = InMemoryPaymentRepository(db, self)
        self.idempotency = InMemoryIdempotencyRepository(db, self)

    async def __aenter__(self) -> Self:
        await asyncio.sleep(0)  # let other coroutines in between transactions, as a server would
        if not self._read_only:
            await self._db.journal.lock.acquire()
            self._db.journal.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._read_only:
            return
        try:
            self._db.journal.rollback()
        finally:
            self._db.journal.lock.release()

    async def commit(self) -> None:
        if self._state is _State.ABORTED:
            raise TransactionAborted("a change of this unit of work failed; nothing was kept")
        if not self._read_only:
            self._db.journal.commit()
        self._state = _State.COMMITTED

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Around every read: a read-only unit of work takes the lock for this read alone."""
        if not self._read_only:
            yield
            return
        async with self._db.journal.lock:
            yield

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around every change: none after commit; one that fails aborts the transaction,
        as a failed statement aborts a database's."""
        if self._read_only:
            raise TransactionClosed("a read-only unit of work changes nothing")
        if self._state is _State.COMMITTED:
            raise TransactionClosed("this unit of work has committed; open another to change more")
        try:
            yield
        except BaseException:
            self._state = _State.ABORTED
            raise
