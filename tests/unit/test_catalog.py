from datetime import timedelta

import pytest

from adapters.clock import ManualClock
from booking import add_venue, admitted_customer, one_row
from concert_domain import Dependencies
from concert_domain.catalog import RowSpec, SectionSpec
from concert_domain.errors import NotFound, QueueTokenRequired
from concert_domain.ids import ConcertId, DateId
from concert_domain.usecases import (
    charge_wallet,
    hold_seat,
    list_concerts,
    list_open_dates,
    pay,
    seat_map,
    seed_demo_catalog,
)


class TestListConcerts:
    async def test_lists_every_concert_by_id(self, deps: Dependencies) -> None:
        first = await add_venue(deps)
        second = await add_venue(deps)
        concerts = await list_concerts(deps=deps)
        assert [c.concert_id for c in concerts] == [first.concert_id, second.concert_id]


class TestListOpenDates:
    async def test_lists_open_dates_soonest_first_with_their_available_seats(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=3, days=(14, 7, 21))
        mina = await admitted_customer(deps, "mina@example.com")
        await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        dates = await list_open_dates(mina.user_id, mina.queue_token, venue.concert_id, deps=deps)
        assert [(d.date.date_id, d.available_seats) for d in dates] == [
            (venue.dates[1].date_id, 3),
            (venue.dates[0].date_id, 2),
            (venue.dates[2].date_id, 3),
        ]

    async def test_leaves_out_dates_whose_sale_has_closed_and_dates_sold_out(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=1, days=(1, 2, 3))
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 100_000, deps=deps)
        sold_out = venue.seats[0]
        held = await hold_seat(mina.user_id, mina.queue_token, sold_out.seat_id, deps=deps)
        await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        clock.advance(timedelta(days=2))
        joon = await admitted_customer(deps, "joon@example.com")
        dates = await list_open_dates(joon.user_id, joon.queue_token, venue.concert_id, deps=deps)
        assert [d.date.date_id for d in dates] == [venue.dates[2].date_id]

    async def test_reports_an_unknown_concert_as_not_found(self, deps: Dependencies) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        with pytest.raises(NotFound):
            await list_open_dates(mina.user_id, mina.queue_token, ConcertId(999), deps=deps)

    async def test_needs_a_queue_token(self, deps: Dependencies) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        with pytest.raises(QueueTokenRequired):
            await list_open_dates(mina.user_id, None, venue.concert_id, deps=deps)


class TestSeatMap:
    async def test_shows_each_seat_by_number_as_available_held_or_sold(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=3)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 100_000, deps=deps)
        one, two, _ = venue.seats
        await hold_seat(mina.user_id, mina.queue_token, one.seat_id, deps=deps)
        held = await hold_seat(mina.user_id, mina.queue_token, two.seat_id, deps=deps)
        await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        joon = await admitted_customer(deps, "joon@example.com")
        date_id = venue.dates[0].date_id
        seats = await seat_map(joon.user_id, joon.queue_token, venue.concert_id, date_id, deps=deps)
        assert [(s.seat.number, s.seat.price, s.status) for s in seats] == [
            (1, 50_000, "held"),
            (2, 50_000, "sold"),
            (3, 50_000, "available"),
        ]

    async def test_shows_a_lapsed_hold_as_available_before_any_sweep(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=1)
        mina = await admitted_customer(deps, "mina@example.com")
        await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        clock.advance(300)
        seats = await seat_map(
            mina.user_id, mina.queue_token, venue.concert_id, venue.dates[0].date_id, deps=deps
        )
        assert [s.status for s in seats] == ["available"]

    async def test_reports_an_unknown_date_or_a_date_of_another_concert_as_not_found(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps)
        other = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        for concert_id, date_id in (
            (venue.concert_id, DateId(999)),
            (venue.concert_id, other.dates[0].date_id),
            (ConcertId(999), venue.dates[0].date_id),
        ):
            with pytest.raises(NotFound):
                await seat_map(mina.user_id, mina.queue_token, concert_id, date_id, deps=deps)


class TestSeedDemo:
    async def test_adds_one_concert_with_three_dates_of_fifty_seats_once(
        self, deps: Dependencies
    ) -> None:
        first = await seed_demo_catalog(deps=deps)
        again = await seed_demo_catalog(deps=deps)
        assert (first.created, again.created) == (True, False)
        assert [c.concert_id for c in await list_concerts(deps=deps)] == [first.concert.concert_id]
        today = deps.clock.now().date()
        assert [(d.date - today).days for d in first.dates] == [7, 14, 21]
        mina = await admitted_customer(deps, "mina@example.com")
        for d in first.dates:
            seats = await seat_map(
                mina.user_id, mina.queue_token, d.concert_id, d.date_id, deps=deps
            )
            assert [s.seat.label for s in seats] == [f"Floor A-{n}" for n in range(1, 51)]
            assert {s.seat.price for s in seats} == {50_000}
            assert d.on_sale(deps.clock.now()) and d.sale_closes_at == d.starts_at


class TestSectionsOfASeatMap:
    async def test_a_section_is_read_alone_in_layout_order_and_an_unknown_one_is_not_found(
        self, deps: Dependencies
    ) -> None:
        vip = SectionSpec("VIP", 150_000, [RowSpec("A", 2), RowSpec("B", 1)])
        venue = await add_venue(deps, sections=[vip, one_row(2, 40_000, "Floor", "C")])
        mina = await admitted_customer(deps, "mina@example.com")
        date_id = venue.dates[0].date_id

        async def labels(section: str | None) -> list[str]:
            views = await seat_map(
                mina.user_id, mina.queue_token, venue.concert_id, date_id, section, deps=deps
            )
            return [view.seat.label for view in views]

        assert await labels(None) == ["VIP A-1", "VIP A-2", "VIP B-1", "Floor C-1", "Floor C-2"]
        assert await labels("Floor") == ["Floor C-1", "Floor C-2"]
        with pytest.raises(NotFound, match="Balcony"):
            await labels("Balcony")
