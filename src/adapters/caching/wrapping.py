"""Units of work and repositories that hand everything to others: the bases of the caching
wrappers, which override what they keep or watch and pass the rest through."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Self

from concert_domain.accounts import Account, AccountOverview, Role
from concert_domain.catalog import (
    Concert,
    ConcertDate,
    DateAvailability,
    NewSeat,
    Sales,
    Seat,
    SeatView,
    SoldSeat,
)
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId, UserId
from concert_domain.paging import Position
from concert_domain.ports import (
    AccountRepository,
    CatalogRepository,
    PaymentRepository,
    ReservationRepository,
    UnitOfWork,
)
from concert_domain.reservations import Reservation, ReservationStatus
from concert_domain.wallet import Refund, Sale


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

    async def add(
        self, email: str, password_hash: str, now: datetime, role: Role = Role.CUSTOMER
    ) -> Account:
        return await self.inner.add(email, password_hash, now, role)

    async def get(self, user_id: UserId) -> Account | None:
        return await self.inner.get(user_id)

    async def get_by_email(self, email: str) -> Account | None:
        return await self.inner.get_by_email(email)

    async def exists(self, user_id: UserId) -> bool:
        return await self.inner.exists(user_id)

    async def set_role(self, user_id: UserId, role: Role) -> None:
        await self.inner.set_role(user_id, role)

    async def overview(self, user_id: UserId, now: datetime) -> AccountOverview | None:
        return await self.inner.overview(user_id, now)


class WrappedCatalog(CatalogRepository):
    def __init__(self, inner: CatalogRepository) -> None:
        self.inner = inner

    async def add_concert(self, title: str, venue: str = "") -> Concert:
        return await self.inner.add_concert(title, venue)

    async def add_date(
        self,
        concert_id: ConcertId,
        day: date,
        starts_at: datetime,
        sale_opens_at: datetime,
        sale_closes_at: datetime,
    ) -> ConcertDate:
        return await self.inner.add_date(concert_id, day, starts_at, sale_opens_at, sale_closes_at)

    async def add_seats(self, date_id: DateId, seats: Iterable[NewSeat]) -> int:
        return await self.inner.add_seats(date_id, seats)

    async def list_concerts(self) -> list[Concert]:
        return await self.inner.list_concerts()

    async def get_concert(self, concert_id: ConcertId) -> Concert | None:
        return await self.inner.get_concert(concert_id)

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        return await self.inner.get_date(date_id)

    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        return await self.inner.get_seat(seat_id)

    async def sections(self, date_id: DateId) -> list[str]:
        return await self.inner.sections(date_id)

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        return await self.inner.open_dates(concert_id, now)

    async def seat_map(
        self, date_id: DateId, now: datetime, section: str | None = None
    ) -> Sequence[SeatView]:
        return await self.inner.seat_map(date_id, now, section)

    async def sales(self, date_id: DateId, now: datetime) -> Sales:
        return await self.inner.sales(date_id, now)

    async def sold_seats(
        self, date_id: DateId, after: ReservationId | None, limit: int
    ) -> list[SoldSeat]:
        return await self.inner.sold_seats(date_id, after, limit)


class WrappedReservations(ReservationRepository):
    def __init__(self, inner: ReservationRepository) -> None:
        self.inner = inner

    async def hold(
        self,
        user_id: UserId,
        seats: Sequence[Seat],
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> list[Reservation]:
        return await self.inner.hold(user_id, seats, now, expires_at, max_holds)

    async def extend(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime, by: timedelta
    ) -> Reservation | None:
        return await self.inner.extend(reservation_id, user_id, now, by)

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        return await self.inner.get(reservation_id)

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        return await self.inner.cancel(reservation_id, now)

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        return await self.inner.expire_due(now, limit)

    async def of_customer(
        self,
        user_id: UserId,
        status: ReservationStatus | None,
        before: Position | None,
        limit: int,
        now: datetime,
    ) -> list[Reservation]:
        return await self.inner.of_customer(user_id, status, before, limit, now)


class WrappedPayments(PaymentRepository):
    def __init__(self, inner: PaymentRepository) -> None:
        self.inner = inner

    async def pay(
        self, reservation_ids: Sequence[ReservationId], user_id: UserId, now: datetime
    ) -> Sale | None:
        return await self.inner.pay(reservation_ids, user_id, now)

    async def refund(self, reservation_id: ReservationId, now: datetime) -> Refund | None:
        return await self.inner.refund(reservation_id, now)
