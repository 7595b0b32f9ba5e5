"""Browse the catalog: concerts for anyone, open dates and seat maps for admitted customers;
an operator's side of it (concerts, dates laid out in sections and rows, their sales); and the
demo catalog, made as an operator would make it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, time, timedelta, timezone

import attrs

from concert_domain.accounts import Identity
from concert_domain.catalog import (
    TITLE_MAX_LENGTH,
    VENUE_MAX_LENGTH,
    Concert,
    ConcertDate,
    DateAvailability,
    DatePlan,
    DateSpec,
    RowSpec,
    Sales,
    SeatView,
    SectionSpec,
    SoldSeat,
)
from concert_domain.dependencies import Dependencies
from concert_domain.errors import InvalidRequest, NotFound
from concert_domain.ids import ConcertId, DateId, ReservationId, UserId
from concert_domain.ports import UnitOfWork
from concert_domain.usecases.accounts import require_admin
from concert_domain.usecases.queue import require_active_token

DEMO_TITLE = "Demo Night: The Fifty Seats"
DEMO_VENUE = "Demo Hall"
DEMO_DAYS_AHEAD = (7, 14, 21)
DEMO_SEATS = 50
DEMO_PRICE = 50_000
DEMO_TIMEZONE = timezone(timedelta(hours=9))
DEMO_START = time(19, 0)
SOLD_SEATS_BATCH = 1_000


async def list_concerts(*, deps: Dependencies) -> list[Concert]:
    async with deps.uow(read_only=True) as uow:
        return await uow.catalog.list_concerts()


async def list_open_dates(
    user_id: UserId, queue_token: str | None, concert_id: ConcertId, *, deps: Dependencies
) -> list[DateAvailability]:
    """Dates whose sale has not closed with at least one available seat, soonest first.
    Raises `NotFound` and the queue gate's errors."""
    now = deps.clock.now()
    await require_active_token(user_id, queue_token, now, deps=deps)
    async with deps.uow(read_only=True) as uow:
        if await uow.catalog.get_concert(concert_id) is None:
            raise NotFound(f"no concert {concert_id}")
        return await uow.catalog.open_dates(concert_id, now)


async def seat_map(
    user_id: UserId,
    queue_token: str | None,
    concert_id: ConcertId,
    date_id: DateId,
    section: str | None = None,
    *,
    deps: Dependencies,
) -> Sequence[SeatView]:
    """The seats of a date (of one ``section``, if named) with their status now, in layout
    order. Raises `NotFound` (also for a section the date does not have) and the queue gate's
    errors."""
    now = deps.clock.now()
    await require_active_token(user_id, queue_token, now, deps=deps)
    async with deps.uow(read_only=True) as uow:
        await _date_of(uow, concert_id, date_id)
        seats = await uow.catalog.seat_map(date_id, now, section)
    if not seats:
        raise NotFound(f"no section {section!r} on date {date_id}")
    return seats


async def seat_statuses(date_id: DateId, *, deps: Dependencies) -> Sequence[SeatView]:
    """The date's seats with their status now, for a feed whose listeners each passed the
    queue gate when they began listening (`seat_map`); empty for an unknown date."""
    async with deps.uow(read_only=True) as uow:
        return await uow.catalog.seat_map(date_id, deps.clock.now())


async def create_concert(
    caller: Identity, title: str, venue: str = "", *, deps: Dependencies
) -> Concert:
    """Raises `Forbidden` (not an admin) and `InvalidRequest` (a blank or long title)."""
    require_admin(caller)
    if not title.strip() or len(title) > TITLE_MAX_LENGTH:
        raise InvalidRequest(f"title: 1 to {TITLE_MAX_LENGTH} characters, not blank")
    if len(venue) > VENUE_MAX_LENGTH:
        raise InvalidRequest(f"venue: at most {VENUE_MAX_LENGTH} characters")
    async with deps.uow() as uow:
        concert = await uow.catalog.add_concert(title.strip(), venue.strip())
        await uow.commit()
    return concert


@attrs.frozen
class CreatedDate:
    date: ConcertDate
    seats_total: int


async def create_date(
    caller: Identity,
    concert_id: ConcertId,
    spec: DateSpec,
    *,
    deps: Dependencies,
) -> CreatedDate:
    """Put a date of a concert on sale with its whole seat layout, in one step. The date's
    ``date`` is the day of its start at the offset ``spec.starts_at`` was given with. Raises
    `Forbidden`, `NotFound` (no such concert) and `InvalidRequest` naming the rule of
    `DateSpec` that ``spec`` breaks."""
    require_admin(caller)
    plan = spec.checked(deps.clock.now())
    async with deps.uow() as uow:
        if await uow.catalog.get_concert(concert_id) is None:
            raise NotFound(f"no concert {concert_id}")
        created = await _add_date(uow, concert_id, plan)
        await uow.commit()
    return created


async def date_sales(
    caller: Identity, concert_id: ConcertId, date_id: DateId, *, deps: Dependencies
) -> Sales:
    """A date's seats counted at one instant. Raises `Forbidden`, `NotFound`."""
    require_admin(caller)
    async with deps.uow(read_only=True) as uow:
        await _date_of(uow, concert_id, date_id)
        return await uow.catalog.sales(date_id, deps.clock.now())


async def sold_seats(
    caller: Identity, concert_id: ConcertId, date_id: DateId, *, deps: Dependencies
) -> AsyncIterator[SoldSeat]:
    """Every sold seat of a date, by reservation, read a batch at a time so that a date of
    any size costs the same memory. Raises `Forbidden`, `NotFound` before the first seat."""
    require_admin(caller)
    async with deps.uow(read_only=True) as uow:
        await _date_of(uow, concert_id, date_id)
    return _in_batches(date_id, deps)


async def _in_batches(date_id: DateId, deps: Dependencies) -> AsyncIterator[SoldSeat]:
    after: ReservationId | None = None
    while True:
        async with deps.uow(read_only=True) as uow:
            batch = await uow.catalog.sold_seats(date_id, after, SOLD_SEATS_BATCH)
        for seat in batch:
            yield seat
        if len(batch) < SOLD_SEATS_BATCH:
            return
        after = batch[-1].reservation_id


async def _add_date(uow: UnitOfWork, concert_id: ConcertId, plan: DatePlan) -> CreatedDate:
    concert_date = await uow.catalog.add_date(
        concert_id, plan.day, plan.starts_at, plan.sale_opens_at, plan.sale_closes_at
    )
    seats_total = await uow.catalog.add_seats(concert_date.date_id, plan.seats())
    return CreatedDate(concert_date, seats_total)


async def _date_of(uow: UnitOfWork, concert_id: ConcertId, date_id: DateId) -> ConcertDate:
    concert_date = await uow.catalog.get_date(date_id)
    if concert_date is None or concert_date.concert_id != concert_id:
        raise NotFound(f"no date {date_id} for concert {concert_id}")
    return concert_date


@attrs.frozen
class DemoCatalog:
    concert: Concert
    dates: list[ConcertDate]
    created: bool


def demo_spec(starts_at: datetime) -> DateSpec:
    """One demo date: section ``Floor``, row ``A``, seats 1 to 50 at 50,000 won."""
    floor = SectionSpec("Floor", DEMO_PRICE, (RowSpec("A", DEMO_SEATS),))
    return DateSpec(starts_at=starts_at, sections=(floor,))


async def seed_demo_catalog(*, deps: Dependencies) -> DemoCatalog:
    """Add, once, one concert with dates 7, 14 and 21 days ahead, on sale now, each with
    seats 1 to 50 of row A of section Floor at 50,000 won. Running it again changes nothing."""
    now = deps.clock.now()
    today = now.astimezone(DEMO_TIMEZONE).date()
    async with deps.uow() as uow:
        for concert in await uow.catalog.list_concerts():
            if concert.title == DEMO_TITLE:
                return DemoCatalog(concert, [], created=False)
        concert = await uow.catalog.add_concert(DEMO_TITLE, DEMO_VENUE)
        dates = []
        for days in DEMO_DAYS_AHEAD:
            day = today + timedelta(days=days)
            starts_at = datetime.combine(day, DEMO_START, tzinfo=DEMO_TIMEZONE)
            plan = demo_spec(starts_at).checked(now)
            created = await _add_date(uow, concert.concert_id, plan)
            dates.append(created.date)
        await uow.commit()
    return DemoCatalog(concert, dates, created=True)
