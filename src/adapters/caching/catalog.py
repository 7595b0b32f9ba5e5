"""Seats, dates and the sections of a date, kept by each process once read.

Nothing changes a seat, a date or its layout once it is created, so a kept copy cannot go stale.
Only what a read-only unit of work read is kept, for such a unit reads only what is committed;
any unit of work is answered from what is kept. Customers hold seats of the date they are
looking at, so a seat missed brings every seat of its date along (from the date's seat map), and
concurrent misses of one seat, one date's seats or one date share one read: a cold process met
by the on-sale rush reads each date once rather than once per waiting request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.caching.lru import LeastRecentlyUsed
from adapters.caching.shared_reads import SharedReads
from adapters.caching.wrapping import WrappedCatalog, WrappedUnitOfWork
from concert_domain.catalog import ConcertDate, Seat
from concert_domain.ids import DateId, SeatId
from concert_domain.ports import CatalogRepository, UnitOfWork, UnitOfWorkFactory

LIMIT = 200_000
# the seats of a seat map are what is wanted here: their statuses at any instant will do
ANY_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)


class CatalogCache:
    """A `UnitOfWorkFactory` over ``inner`` whose units of work keep seats and dates."""

    def __init__(self, inner: UnitOfWorkFactory, *, limit: int = LIMIT) -> None:
        self._inner = inner
        self.seats: LeastRecentlyUsed[SeatId, Seat] = LeastRecentlyUsed(limit)
        self.dates: LeastRecentlyUsed[DateId, ConcertDate] = LeastRecentlyUsed(limit)
        self.sections: LeastRecentlyUsed[DateId, list[str]] = LeastRecentlyUsed(limit)
        self.seat_reads: SharedReads[SeatId, Seat | None] = SharedReads()
        self.date_reads: SharedReads[DateId, ConcertDate | None] = SharedReads()
        self.seat_map_reads: SharedReads[DateId, None] = SharedReads()

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        uow = WrappedUnitOfWork(self._inner(read_only=read_only))
        uow.catalog = _KeptCatalog(uow.inner.catalog, self, read_only)
        return uow

    async def read_seat(self, seat_id: SeatId) -> Seat | None:
        async with self._inner(read_only=True) as uow:
            seat = await uow.catalog.get_seat(seat_id)
        if seat is not None:
            self.seats.put(seat_id, seat)
            await self.seat_map_reads.read(seat.date_id, lambda: self._read_date_seats(seat))
        return seat

    async def _read_date_seats(self, seat: Seat) -> None:
        async with self._inner(read_only=True) as uow:
            views = await uow.catalog.seat_map(seat.date_id, ANY_INSTANT)
        for view in views:
            self.seats.put(view.seat.seat_id, view.seat)

    async def read_date(self, date_id: DateId) -> ConcertDate | None:
        async with self._inner(read_only=True) as uow:
            concert_date = await uow.catalog.get_date(date_id)
        if concert_date is not None:
            self.dates.put(date_id, concert_date)
        return concert_date


class _KeptCatalog(WrappedCatalog):
    def __init__(self, inner: CatalogRepository, cache: CatalogCache, read_only: bool) -> None:
        super().__init__(inner)
        self._cache = cache
        self._read_only = read_only

    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        kept = self._cache.seats.get(seat_id)
        if kept is not None:
            return kept
        if not self._read_only:  # it may see what it has not committed: read it here
            return await self.inner.get_seat(seat_id)
        return await self._cache.seat_reads.read(seat_id, lambda: self._cache.read_seat(seat_id))

    async def sections(self, date_id: DateId) -> list[str]:
        kept = self._cache.sections.get(date_id)
        if kept is not None:
            return kept
        names = await self.inner.sections(date_id)
        if names and self._read_only:  # a layout is whole once committed
            self._cache.sections.put(date_id, names)
        return names

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        kept = self._cache.dates.get(date_id)
        if kept is not None:
            return kept
        if not self._read_only:
            return await self.inner.get_date(date_id)
        return await self._cache.date_reads.read(date_id, lambda: self._cache.read_date(date_id))
