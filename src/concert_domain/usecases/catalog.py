"""Browse the catalog: concerts for anyone, open dates and seat maps for admitted customers;
and the demo catalog an operator adds once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, timezone

import attrs

from concert_domain.catalog import Concert, ConcertDate, DateAvailability, SeatView
from concert_domain.dependencies import Dependencies
from concert_domain.errors import NotFound
from concert_domain.ids import ConcertId, DateId, UserId
from concert_domain.usecases.queue import require_active_token

DEMO_TITLE = "Demo Night: The Fifty Seats"
DEMO_DAYS_AHEAD = (7, 14, 21)
DEMO_SEATS = 50
DEMO_PRICE = 50_000
DEMO_TIMEZONE = timezone(timedelta(hours=9))
DEMO_START = time(19, 0)


async def list_concerts(*, deps: Dependencies) -> list[Concert]:
    async with deps.uow(read_only=True) as uow:
        return await uow.catalog.list_concerts()


async def list_open_dates(
    user_id: UserId, queue_token: str | None, concert_id: ConcertId, *, deps: Dependencies
) -> list[DateAvailability]:
    """Dates still open with at least one available seat, soonest first. Raises `NotFound`
    and the queue gate's errors."""
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
    *,
    deps: Dependencies,
) -> Sequence[SeatView]:
    """Every seat of a date with its status now, by number. Raises `NotFound` and the queue
    gate's errors."""
    now = deps.clock.now()
    await require_active_token(user_id, queue_token, now, deps=deps)
    async with deps.uow(read_only=True) as uow:
        concert_date = await uow.catalog.get_date(date_id)
        if concert_date is None or concert_date.concert_id != concert_id:
            raise NotFound(f"no date {date_id} for concert {concert_id}")
        return await uow.catalog.seat_map(date_id, now)


@attrs.frozen
class DemoCatalog:
    concert: Concert
    dates: list[ConcertDate]
    created: bool


async def seed_demo_catalog(*, deps: Dependencies) -> DemoCatalog:
    """Add, once, one concert with dates 7, 14 and 21 days ahead, seats 1 to 50 on each at
    50,000 won. Running it again changes nothing."""
    today = deps.clock.now().astimezone(DEMO_TIMEZONE).date()
    async with deps.uow() as uow:
        for concert in await uow.catalog.list_concerts():
            if concert.title == DEMO_TITLE:
                return DemoCatalog(concert, [], created=False)
        concert = await uow.catalog.add_concert(DEMO_TITLE)
        dates = []
        for days in DEMO_DAYS_AHEAD:
            day = today + timedelta(days=days)
            starts_at = datetime.combine(day, DEMO_START, tzinfo=DEMO_TIMEZONE).astimezone(UTC)
            concert_date = await uow.catalog.add_date(concert.concert_id, day, starts_at)
            seats = [(number, DEMO_PRICE) for number in range(1, DEMO_SEATS + 1)]
            await uow.catalog.add_seats(concert_date.date_id, seats)
            dates.append(concert_date)
        await uow.commit()
    return DemoCatalog(concert, dates, created=True)
