import asyncio
from datetime import timedelta

import attrs
import pytest

from adapters.clock import ManualClock
from adapters.memory import InMemoryDatabase, InMemoryHoldTimers, InMemoryQueueStore
from booking import OPERATOR, add_venue, admitted_customer, memory_deps, one_row, rejoin
from concert_domain import BookingPolicy, Dependencies
from concert_domain.catalog import DateSpec
from concert_domain.errors import (
    HoldLimitReached,
    NotFound,
    QueueTokenInvalid,
    QueueTokenRequired,
    RateLimited,
    ReservationNotHeld,
    SaleClosed,
    SaleNotOpen,
    SeatUnavailable,
)
from concert_domain.ids import ReservationId, SeatId
from concert_domain.usecases import (
    cancel_reservation,
    charge_wallet,
    create_concert,
    create_date,
    get_reservation,
    hold_seat,
    pay,
    sweep_expired_holds,
)


class TestHoldSeat:
    async def test_holds_a_free_seat_for_five_minutes(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=2, price=77_000)
        mina = await admitted_customer(deps, "mina@example.com")
        seat = venue.seats[1]
        held = await hold_seat(mina.user_id, mina.queue_token, seat.seat_id, deps=deps)
        assert (held.status, held.seat_id, held.number, held.price) == (
            "held",
            seat.seat_id,
            2,
            77_000,
        )
        assert (held.date_id, held.concert_id) == (seat.date_id, seat.concert_id)
        assert held.expires_at == clock.now() + timedelta(minutes=5)

    async def test_refuses_a_seat_held_by_another_customer(self, deps: Dependencies) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        with pytest.raises(SeatUnavailable):
            await hold_seat(joon.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)

    async def test_refuses_a_seat_the_caller_already_holds(self, deps: Dependencies) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        with pytest.raises(SeatUnavailable):
            await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)

    async def test_refuses_a_sold_seat_long_after_its_hold_would_have_lapsed(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 50_000, deps=deps)
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        clock.advance(timedelta(hours=1))
        await sweep_expired_holds(deps=deps)
        joon = await admitted_customer(deps, "joon@example.com")
        with pytest.raises(SeatUnavailable):
            await hold_seat(joon.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)

    async def test_an_expired_hold_frees_the_seat_for_the_next_customer_before_any_sweep(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        first = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        clock.advance(timedelta(minutes=5))
        second = await hold_seat(joon.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)
        assert second.user_id == joon.user_id
        assert (
            await get_reservation(mina.user_id, first.reservation_id, deps=deps)
        ).status == "expired"

    async def test_refuses_a_fifth_hold_at_the_default_limit_of_four(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=5)
        mina = await admitted_customer(deps, "mina@example.com")
        for seat in venue.seats[:4]:
            await hold_seat(mina.user_id, mina.queue_token, seat.seat_id, deps=deps)
        with pytest.raises(HoldLimitReached):
            await hold_seat(mina.user_id, mina.queue_token, venue.seats[4].seat_id, deps=deps)

    async def test_paid_cancelled_and_expired_holds_do_not_count_toward_the_limit(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=8)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 50_000, deps=deps)
        seats = iter(venue.seats)
        paid = await hold_seat(mina.user_id, mina.queue_token, next(seats).seat_id, deps=deps)
        await pay(mina.user_id, mina.queue_token, paid.reservation_id, deps=deps)
        mina = await rejoin(deps, mina)
        cancelled = await hold_seat(mina.user_id, mina.queue_token, next(seats).seat_id, deps=deps)
        await cancel_reservation(mina.user_id, cancelled.reservation_id, deps=deps)
        await hold_seat(mina.user_id, mina.queue_token, next(seats).seat_id, deps=deps)
        clock.advance(timedelta(minutes=5))  # that hold has lapsed
        held = [
            await hold_seat(mina.user_id, mina.queue_token, next(seats).seat_id, deps=deps)
            for _ in range(4)
        ]
        assert [reservation.status for reservation in held] == ["held"] * 4
        with pytest.raises(HoldLimitReached):  # the four new holds, and only they, count
            await hold_seat(mina.user_id, mina.queue_token, next(seats).seat_id, deps=deps)

    async def test_a_customer_hammering_holds_is_told_to_slow_down_until_the_minute_passes(
        self, clock: ManualClock
    ) -> None:
        deps = memory_deps(clock, BookingPolicy(hold_attempts_per_customer=5))
        venue = await add_venue(deps, seats=8)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        await hold_seat(joon.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)
        for _ in range(5):  # five attempts at a seat someone holds: refused, and counted
            with pytest.raises(SeatUnavailable):
                await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        with pytest.raises(RateLimited):
            await hold_seat(mina.user_id, mina.queue_token, venue.seats[1].seat_id, deps=deps)
        held = await hold_seat(joon.user_id, joon.queue_token, venue.seats[1].seat_id, deps=deps)
        assert held.status == "held"  # others are not slowed
        clock.advance(timedelta(minutes=1))
        again = await hold_seat(mina.user_id, mina.queue_token, venue.seats[2].seat_id, deps=deps)
        assert again.status == "held"

    async def test_refuses_an_unknown_seat_as_not_found(self, deps: Dependencies) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        with pytest.raises(NotFound):
            await hold_seat(mina.user_id, mina.queue_token, SeatId(999), deps=deps)

    async def test_holds_only_inside_the_sale_window(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        now = clock.now()
        spec = DateSpec(
            now + timedelta(days=2),
            [one_row(1, 50_000)],
            sale_opens_at=now + timedelta(hours=1),
            sale_closes_at=now + timedelta(days=1),
        )
        concert = await create_concert(OPERATOR, "Later", deps=deps)
        created = await create_date(OPERATOR, concert.concert_id, spec, deps=deps)
        async with deps.uow(read_only=True) as uow:
            [view] = await uow.catalog.seat_map(created.date.date_id, now)
        mina = await admitted_customer(deps, "mina@example.com")
        with pytest.raises(SaleNotOpen, match="opens at"):
            await hold_seat(mina.user_id, mina.queue_token, view.seat.seat_id, deps=deps)
        clock.advance(timedelta(hours=1))
        mina = await rejoin(deps, mina)
        held = await hold_seat(mina.user_id, mina.queue_token, view.seat.seat_id, deps=deps)
        await cancel_reservation(mina.user_id, held.reservation_id, deps=deps)
        clock.advance(timedelta(days=1) - timedelta(hours=1))  # the close, a day before the show
        mina = await rejoin(deps, mina)
        with pytest.raises(SaleClosed, match="closed at"):
            await hold_seat(mina.user_id, mina.queue_token, view.seat.seat_id, deps=deps)

    async def test_needs_an_active_queue_token_of_the_caller(self, deps: Dependencies) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        with pytest.raises(QueueTokenRequired):
            await hold_seat(mina.user_id, None, venue.seats[0].seat_id, deps=deps)
        with pytest.raises(QueueTokenInvalid):
            await hold_seat(mina.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)

    async def test_fifty_concurrent_contenders_for_one_seat_get_one_hold(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=1)
        people = [await admitted_customer(deps, f"p{n}@example.com") for n in range(50)]
        results = await asyncio.gather(
            *(
                hold_seat(p.user_id, p.queue_token, venue.seats[0].seat_id, deps=deps)
                for p in people
            ),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, SeatUnavailable) for r in results if r not in winners)

    async def test_the_store_alone_keeps_one_hold_per_seat_when_the_timers_are_lost(
        self, clock: ManualClock
    ) -> None:
        database = InMemoryDatabase()
        first = memory_deps(clock, database=database)
        assert isinstance(first.queue, InMemoryQueueStore)
        line = first.queue
        venue = await add_venue(first, seats=1)
        people = [await admitted_customer(first, f"p{n}@example.com") for n in range(30)]
        # each contender on its own "process" whose timer store has forgotten everything
        results = await asyncio.gather(
            *(
                hold_seat(
                    p.user_id,
                    p.queue_token,
                    venue.seats[0].seat_id,
                    deps=attrs.evolve(first, timers=InMemoryHoldTimers(line)),
                )
                for p in people
            ),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert sum(isinstance(r, SeatUnavailable) for r in results) == 29

    async def test_twenty_concurrent_holds_by_one_customer_stop_at_the_limit(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=20)
        mina = await admitted_customer(deps, "mina@example.com")
        results = await asyncio.gather(
            *(hold_seat(mina.user_id, mina.queue_token, s.seat_id, deps=deps) for s in venue.seats),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 4
        assert sum(isinstance(r, HoldLimitReached) for r in results) == 16

    async def test_a_hold_refused_by_the_limit_leaves_the_seat_free_for_others(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=5)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        for seat in venue.seats[:4]:
            await hold_seat(mina.user_id, mina.queue_token, seat.seat_id, deps=deps)
        with pytest.raises(HoldLimitReached):
            await hold_seat(mina.user_id, mina.queue_token, venue.seats[4].seat_id, deps=deps)
        await hold_seat(joon.user_id, joon.queue_token, venue.seats[4].seat_id, deps=deps)


class TestGetReservation:
    async def test_shows_the_owner_their_reservation(self, deps: Dependencies) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        assert await get_reservation(mina.user_id, held.reservation_id, deps=deps) == held

    async def test_hides_a_reservation_from_everyone_else(self, deps: Dependencies) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        for reservation_id in (held.reservation_id, ReservationId(999)):
            with pytest.raises(NotFound):
                await get_reservation(joon.user_id, reservation_id, deps=deps)


class TestCancelReservation:
    async def test_cancels_a_hold_and_frees_the_seat_at_once(self, deps: Dependencies) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        cancelled = await cancel_reservation(mina.user_id, held.reservation_id, deps=deps)
        assert cancelled.status == "cancelled"
        again = await hold_seat(joon.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)
        assert again.status == "held"

    async def test_refuses_to_cancel_twice_or_a_paid_or_an_expired_reservation(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=3)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 50_000, deps=deps)
        one, two, three = [
            await hold_seat(mina.user_id, mina.queue_token, s.seat_id, deps=deps)
            for s in venue.seats
        ]
        await cancel_reservation(mina.user_id, one.reservation_id, deps=deps)
        await pay(mina.user_id, mina.queue_token, two.reservation_id, deps=deps)
        clock.advance(timedelta(minutes=5))
        for reservation in (one, two, three):
            with pytest.raises(ReservationNotHeld):
                await cancel_reservation(mina.user_id, reservation.reservation_id, deps=deps)

    async def test_refuses_another_customers_reservation_as_not_found(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        with pytest.raises(NotFound):
            await cancel_reservation(joon.user_id, held.reservation_id, deps=deps)
        assert (
            await get_reservation(mina.user_id, held.reservation_id, deps=deps)
        ).status == "held"


class TestSweepExpiredHolds:
    async def test_marks_lapsed_holds_expired_once_and_leaves_the_rest(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=3)
        mina = await admitted_customer(deps, "mina@example.com")
        early = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        clock.advance(60)
        late = await hold_seat(mina.user_id, mina.queue_token, venue.seats[1].seat_id, deps=deps)
        clock.advance(240)
        assert await sweep_expired_holds(deps=deps) == 1
        assert await sweep_expired_holds(deps=deps) == 0
        async with deps.uow() as uow:
            assert (await uow.reservations.get(early.reservation_id)).status == "expired"  # type: ignore[union-attr]
            assert (await uow.reservations.get(late.reservation_id)).status == "held"  # type: ignore[union-attr]

    async def test_sweeps_more_holds_than_one_batch(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=12)
        people = [await admitted_customer(deps, f"p{n}@example.com") for n in range(3)]
        for n, seat in enumerate(venue.seats):
            person = people[n % 3]
            await hold_seat(person.user_id, person.queue_token, seat.seat_id, deps=deps)
        clock.advance(300)
        assert await sweep_expired_holds(deps=deps, batch=5) == 12

    async def test_concurrent_sweepers_release_each_hold_exactly_once(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=40)
        people = [await admitted_customer(deps, f"p{n}@example.com") for n in range(10)]
        for n, seat in enumerate(venue.seats):
            person = people[n % 10]
            await hold_seat(person.user_id, person.queue_token, seat.seat_id, deps=deps)
        clock.advance(300)
        counts = await asyncio.gather(*(sweep_expired_holds(deps=deps, batch=3) for _ in range(4)))
        assert sum(counts) == 40
