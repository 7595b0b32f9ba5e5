"""The seat-map read model: each process keeps the last seat map it read per date (and per
section of it), and serves it again while nothing has changed, never later than a change that
has been answered.

A date's *version* (`SeatMapVersions`) changes whenever a committed change alters who holds or
owns its seats. A reader takes the version before it reads the database; the units of work
this model hands out give the dates their changes touched a new version after they commit,
before the caller answers anyone. So whoever asks after a change has been answered finds a new
version, and reads the database again. A kept map is served only while all three hold:

- the date's version is the one taken before the map was read;
- no hold shown on it has lapsed (a held seat is available from its ``held_until`` on);
- it is younger than ``max_age``, a bound on lateness should a new version itself be lost.

Many requests that miss at once share one read of the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from adapters.caching.lru import LeastRecentlyUsed
from adapters.caching.shared_reads import SharedReads
from adapters.caching.wrapping import (
    WrappedCatalog,
    WrappedPayments,
    WrappedReservations,
    WrappedUnitOfWork,
)
from concert_domain.catalog import Seat, SeatView
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import DateId, ReservationId, UserId
from concert_domain.ports import (
    CatalogRepository,
    PaymentRepository,
    ReservationRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)
from concert_domain.reservations import Reservation
from concert_domain.wallet import Refund, Sale

log = logging.getLogger("concert.seatmaps")

MAX_AGE = timedelta(seconds=2)
LIMIT = 10_000


class SeatMapVersions(Protocol):
    """A version per concert date, shared by every process that writes (Redis); the
    in-process adapter is right only when one process serves."""

    async def current(self, date_id: DateId) -> str:
        """The date's version, made now if it has none (never changed, or forgotten)."""
        ...

    async def bump(self, date_ids: Sequence[DateId]) -> None:
        """Give each date a version it has never had."""
        ...


@attrs.frozen
class _Kept:
    version: str
    seats: tuple[SeatView, ...]
    read_at: datetime
    good_until: datetime

    def is_current(self, version: str, now: datetime) -> bool:
        return version == self.version and self.read_at <= now < self.good_until


class SeatMapReadModel:
    """A `UnitOfWorkFactory` over ``inner``: read-only units of work answer seat maps from
    what this process keeps; every unit of work gives the dates its changes touched a new
    version when it commits."""

    def __init__(
        self,
        inner: UnitOfWorkFactory,
        versions: SeatMapVersions,
        *,
        max_age: timedelta = MAX_AGE,
        limit: int = LIMIT,
    ) -> None:
        self._inner = inner
        self._versions = versions
        self._max_age = max_age
        self._kept: LeastRecentlyUsed[DateId, dict[str | None, _Kept]] = LeastRecentlyUsed(limit)
        self._reads: SharedReads[tuple[DateId, str | None, str], _Kept] = SharedReads()

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        return _VersioningUnitOfWork(self._inner(read_only=read_only), self, read_only)

    async def seat_map(
        self, date_id: DateId, now: datetime, section: str | None = None
    ) -> Sequence[SeatView]:
        version = await self._versions.current(date_id)  # before the database is read
        kept = (self._kept.get(date_id) or {}).get(section)
        if kept is None or not kept.is_current(version, now):
            key = (date_id, section, version)
            kept = await self._reads.read(key, lambda: self._read(date_id, section, version, now))
        if not kept.is_current(version, now):  # read by another, for an instant now past
            kept = await self._read(date_id, section, version, now)
        return kept.seats

    async def changed(self, date_ids: set[DateId]) -> None:
        """Called after a commit that changed these dates' seats, before its answer."""
        if not date_ids:
            return
        for date_id in date_ids:
            self._kept.pop(date_id)
        try:
            await self._versions.bump(sorted(date_ids))
        except StoreUnavailable:
            log.warning("could not renew seat-map versions; kept maps lapse within %s", MAX_AGE)

    async def _read(
        self, date_id: DateId, section: str | None, version: str, now: datetime
    ) -> _Kept:
        async with self._inner(read_only=True) as uow:
            seats = tuple(await uow.catalog.seat_map(date_id, now, section))
        lapses = [view.held_until for view in seats if view.held_until is not None]
        kept = _Kept(version, seats, now, min([now + self._max_age, *lapses]))
        sections = self._kept.get(date_id)
        if sections is None or any(k.version != version for k in sections.values()):
            sections = {}  # the maps of older versions go
        sections[section] = kept
        self._kept.put(date_id, sections)
        return kept


class _VersioningUnitOfWork(WrappedUnitOfWork):
    def __init__(self, inner: UnitOfWork, model: SeatMapReadModel, read_only: bool) -> None:
        super().__init__(inner)
        self._model = model
        self.touched: set[DateId] = set()
        if read_only:
            self.catalog = _KeptSeatMaps(inner.catalog, model)
        self.reservations = _WatchedReservations(inner.reservations, self.touched)
        self.payments = _WatchedPayments(inner.payments, self.touched)

    async def commit(self) -> None:
        await self.inner.commit()
        touched, self.touched = set(self.touched), set()
        await self._model.changed(touched)


class _KeptSeatMaps(WrappedCatalog):
    def __init__(self, inner: CatalogRepository, model: SeatMapReadModel) -> None:
        super().__init__(inner)
        self._model = model

    async def seat_map(
        self, date_id: DateId, now: datetime, section: str | None = None
    ) -> Sequence[SeatView]:
        return await self._model.seat_map(date_id, now, section)


class _WatchedReservations(WrappedReservations):
    """Notes the dates of the holds, extensions and cancellations made through it (and
    `_WatchedPayments` those of payments and refunds). The sweep is let through unwatched: a
    lapsed hold already reads as available, so marking it expired changes no seat map."""

    def __init__(self, inner: ReservationRepository, touched: set[DateId]) -> None:
        super().__init__(inner)
        self._touched = touched

    async def hold(
        self,
        user_id: UserId,
        seats: Sequence[Seat],
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> list[Reservation]:
        held = await self.inner.hold(user_id, seats, now, expires_at, max_holds)
        self._touched.update(reservation.date_id for reservation in held)
        return held

    async def extend(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime, by: timedelta
    ) -> Reservation | None:
        extended = await self.inner.extend(reservation_id, user_id, now, by)
        if extended is not None:  # a map says until when a seat is held
            self._touched.add(extended.date_id)
        return extended

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        cancelled = await self.inner.cancel(reservation_id, now)
        if cancelled is not None:
            self._touched.add(cancelled.date_id)
        return cancelled


class _WatchedPayments(WrappedPayments):
    def __init__(self, inner: PaymentRepository, touched: set[DateId]) -> None:
        super().__init__(inner)
        self._touched = touched

    async def pay(
        self, reservation_ids: Sequence[ReservationId], user_id: UserId, now: datetime
    ) -> Sale | None:
        sale = await self.inner.pay(reservation_ids, user_id, now)
        if sale is not None:
            self._touched.update(reservation.date_id for reservation in sale.reservations)
        return sale

    async def refund(self, reservation_id: ReservationId, now: datetime) -> Refund | None:
        refund = await self.inner.refund(reservation_id, now)
        if refund is not None:
            self._touched.add(refund.reservation.date_id)
        return refund
