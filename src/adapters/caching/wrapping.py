"""Units of work and repositories that hand everything to others: the bases of the caching
wrappers, which override what they keep or watch and pass the rest through."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from types import TracebackType
from typing import Self

from concert_domain.accounts import Account
from concert_domain.catalog import Concert, ConcertDate, DateAvailability, Seat, SeatView
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId, UserId
from concert_domain.ports import (
    AccountRepository,
    CatalogRepository,
    PaymentRepository,
    ReservationRepository,
    UnitOfWork,
)
from concert_domain.reservations import Reservation
from concert_domain.wallet import Sale


class WrappedUnitOfWork(UnitOfWork):
    def __init__(self, inner: UnitOfWork) -> None:
        self.inner = inner
        self.accounts = inner.accounts
        self.catalog = inner.catalog
        self.reservations = inner.reservations
        self.wallets = inner.wallets
        self.payments = inner.payments
        self.idempotency = inner.idempotency

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        await self.inner.commit()


class WrappedAccounts(AccountRepository):
    def __init__(self, inner: AccountRepository) -> None:
        self.inner = inner

    async def add(self, email: str, password_hash: str, now: datetime) -> Account:
        return await self.inner.add(email, password_hash, now)

    async def get_by_email(self, email: str) -> Account | None:
        return await self.inner.get_by_email(email)

    async def exists(self, user_id: UserId) -> bool:
        return await self.inner.exists(user_id)


class WrappedCatalog(CatalogRepository):
    def __init__(self, inner: CatalogRepository) -> None:
        self.inner = inner

    async def add_concert(self, title: str) -> Concert:
        return await self.inner.add_concert(title)

    async def add_date(self, concert_id: ConcertId, day: date, starts_at: datetime) -> ConcertDate:
        return await self.inner.add_date(concert_id, day, starts_at)

    async def add_seats(self, date_id: DateId, seats: Sequence[tuple[int, int]]) -> list[Seat]:
        return await self.inner.add_seats(date_id, seats)

    async def list_concerts(self) -> list[Concert]:
        return await self.inner.list_concerts()

    async def get_concert(self, concert_id: ConcertId) -> Concert | None:
        return await self.inner.get_concert(concert_id)

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        return await self.inner.get_date(date_id)

    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        return await self.inner.get_seat(seat_id)

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        return await self.inner.open_dates(concert_id, now)

    async def seat_map(self, date_id: DateId, now: datetime) -> Sequence[SeatView]:
        return await self.inner.seat_map(date_id, now)


class WrappedReservations(ReservationRepository):
    def __init__(self, inner: ReservationRepository) -> None:
        self.inner = inner

    async def hold(
        self, user_id: UserId, seat: Seat, now: datetime, expires_at: datetime, max_holds: int
    ) -> Reservation:
        return await self.inner.hold(user_id, seat, now, expires_at, max_holds)

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        return await self.inner.get(reservation_id)

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        return await self.inner.cancel(reservation_id, now)

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        return await self.inner.expire_due(now, limit)


class WrappedPayments(PaymentRepository):
    def __init__(self, inner: PaymentRepository) -> None:
        self.inner = inner

    async def pay(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime
    ) -> Sale | None:
        return await self.inner.pay(reservation_id, user_id, now)
