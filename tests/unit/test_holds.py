"""Several seats at once, best available, payments of several holds, and one extension."""

from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

from adapters.clock import ManualClock
from adapters.memory import InMemoryDatabase
from booking import OPERATOR, Customer, add_venue, admitted_customer, one_row, rejoin
from concert_domain import BookingPolicy, Dependencies, QueuePolicy, usecases
from concert_domain.catalog import DateSpec, RowSpec, SectionSpec
from concert_domain.errors import (
    ExtensionLimitReached,
    HoldExpired,
    HoldLimitReached,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    QueueTokenInvalid,
    QueueTokenNotActive,
    ReservationNotHeld,
    SaleNotOpen,
    SeatsNotTogether,
    SeatUnavailable,
    StoreUnavailable,
)
from concert_domain.idempotency import PENDING_LEASE, fingerprint
from concert_domain.ids import DateId, QueueToken, ReservationId, SeatId
from concert_domain.ports import Offer, QueueStore, UnitOfWork
from concert_domain.queue import QueueTicket
from concert_domain.usecases import (
    cancel_reservation,
    charge_wallet,
    create_concert,
    create_date,
    extend_hold,
    get_balance,
    get_reservation,
    hold_best,
    hold_seat,
    hold_seats,
    list_reservations,
    list_transactions,
    pay,
    pay_holds,
    sweep_expired_holds,
)


async def statuses(deps: Dependencies, customer: Customer, date_id: DateId) -> str:
    """The date's seat map as one letter a seat: ``.`` available, ``h`` held, ``s`` sold;
    a space between rows."""
    async with deps.uow(read_only=True) as uow:
        views = await uow.catalog.seat_map(date_id, deps.clock.now())
    letters = {"available": ".", "held": "h", "sold": "s"}
    shown, last_row = "", None
    for view in views:
        row = (view.seat.section, view.seat.row)
        if last_row is not None and row != last_row:
            shown += " "
        shown, last_row = shown + letters[view.status], row
    return shown


class TestSeveralSeats:
    async def test_holds_every_seat_in_the_order_asked(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=5)
        mina = await admitted_customer(deps, "mina@example.com")
        asked = [venue.seats[3].seat_id, venue.seats[0].seat_id, venue.seats[1].seat_id]
        held = await hold_seats(mina.user_id, mina.queue_token, asked, deps=deps)
        assert [r.seat_id for r in held] == asked
        assert {r.status for r in held} == {"held"}
        assert await statuses(deps, mina, venue.dates[0].date_id) == "hh.h."

    async def test_holds_none_when_one_is_taken_and_names_it(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=4)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        await hold_seat(joon.user_id, joon.queue_token, venue.seats[2].seat_id, deps=deps)
        asked = [seat.seat_id for seat in venue.seats[1:4]]
        with pytest.raises(SeatUnavailable, match="seat Floor A-3 is held"):
            await hold_seats(mina.user_id, mina.queue_token, asked, deps=deps)
        assert await statuses(deps, mina, venue.dates[0].date_id) == "..h."
        # the seats that were free are free for others at once: no timer was left behind
        again = [venue.seats[1].seat_id, venue.seats[3].seat_id]
        assert len(await hold_seats(joon.user_id, joon.queue_token, again, deps=deps)) == 2

    async def test_a_refusal_by_the_database_names_the_seats_taken_too(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=4)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        taken = [venue.seats[1].seat_id, venue.seats[2].seat_id]
        await hold_seats(joon.user_id, joon.queue_token, taken, deps=deps)
        for seat_id in taken:  # as if Redis had lost them: only the database knows
            await deps.timers.release(seat_id, joon.user_id)
        asked = [seat.seat_id for seat in venue.seats[:3]]
        with pytest.raises(SeatUnavailable, match="seats Floor A-2, Floor A-3 are held"):
            await hold_seats(mina.user_id, mina.queue_token, asked, deps=deps)
        assert await statuses(deps, mina, venue.dates[0].date_id) == ".hh."

    async def test_holds_none_past_the_hold_limit(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=6)
        mina = await admitted_customer(deps, "mina@example.com")
        await hold_seats(mina.user_id, mina.queue_token, [venue.seats[0].seat_id], deps=deps)
        asked = [seat.seat_id for seat in venue.seats[1:5]]
        with pytest.raises(HoldLimitReached):
            await hold_seats(mina.user_id, mina.queue_token, asked, deps=deps)
        assert await statuses(deps, mina, venue.dates[0].date_id) == "h....."
        joon = await admitted_customer(deps, "joon@example.com")
        assert len(await hold_seats(joon.user_id, joon.queue_token, asked, deps=deps)) == 4

    async def test_refuses_bad_lists(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=6, days=(7, 14))
        mina = await admitted_customer(deps, "mina@example.com")
        one = venue.seats[0].seat_id
        other_date = await _seat_of(deps, mina, venue.dates[1].date_id)
        for asked in ([], [one, one], [s.seat_id for s in venue.seats[:5]], [one, other_date]):
            with pytest.raises(InvalidRequest):
                await hold_seats(mina.user_id, mina.queue_token, asked, deps=deps)
        with pytest.raises(NotFound):
            await hold_seats(mina.user_id, mina.queue_token, [one, SeatId(10_000)], deps=deps)


async def _seat_of(deps: Dependencies, customer: Customer, date_id: DateId) -> SeatId:
    async with deps.uow(read_only=True) as uow:
        views = await uow.catalog.seat_map(date_id, deps.clock.now())
    return views[0].seat.seat_id


HALL = [
    SectionSpec("VIP", 150_000, [RowSpec("A", 6), RowSpec("B", 6)]),
    SectionSpec("Stalls", 80_000, [RowSpec("C", 8)]),
]


class TestBestAvailable:
    async def test_takes_the_best_row_nearest_its_middle(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, sections=HALL)
        mina = await admitted_customer(deps, "mina@example.com")
        held = await hold_best(mina.user_id, mina.queue_token, venue.dates[0].date_id, 2, deps=deps)
        assert [r.label for r in held] == ["VIP A-3", "VIP A-4"]
        assert await statuses(deps, mina, venue.dates[0].date_id) == "..hh.. ...... ........"

    async def test_never_strands_a_single_seat_when_another_block_would_not(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, sections=HALL)
        mina = await admitted_customer(deps, "mina@example.com")
        date_id = venue.dates[0].date_id
        # row A: seats 1-3 free, 4 taken, 5-6 free; a pair in the middle (2-3) strands 1
        taken = await admitted_customer(deps, "taken@example.com")
        await hold_seat(taken.user_id, taken.queue_token, venue.seats[3].seat_id, deps=deps)
        held = await hold_best(mina.user_id, mina.queue_token, date_id, 2, deps=deps)
        assert [r.label for r in held] == ["VIP A-5", "VIP A-6"]
        joon = await admitted_customer(deps, "joon@example.com")
        held = await hold_best(joon.user_id, joon.queue_token, date_id, 2, deps=deps)
        assert [r.label for r in held] == ["VIP B-3", "VIP B-4"]  # A-1..3 only strands

    async def test_strands_one_only_when_every_block_would(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, sections=[one_row(3, 10_000)])
        mina = await admitted_customer(deps, "mina@example.com")
        held = await hold_best(mina.user_id, mina.queue_token, venue.dates[0].date_id, 2, deps=deps)
        assert [r.number for r in held] == [1, 2]

    async def test_a_named_section_only(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, sections=HALL)
        mina = await admitted_customer(deps, "mina@example.com")
        date_id = venue.dates[0].date_id
        held = await hold_best(mina.user_id, mina.queue_token, date_id, 3, "Stalls", deps=deps)
        assert [r.label for r in held] == ["Stalls C-3", "Stalls C-4", "Stalls C-5"]
        assert {r.price for r in held} == {80_000}
        with pytest.raises(NotFound):
            await hold_best(mina.user_id, mina.queue_token, date_id, 1, "Balcony", deps=deps)

    async def test_a_block_the_database_refuses_is_passed_over(
        self, deps: Dependencies, database: InMemoryDatabase
    ) -> None:
        venue = await add_venue(deps, sections=[one_row(6, 10_000)])
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        date_id = venue.dates[0].date_id
        async with deps.uow(read_only=True) as uow:  # the section's map is read and kept
            await uow.catalog.seat_map(date_id, deps.clock.now(), "Floor")
        # joon holds the middle pair behind the read model's back, with no timers: the kept
        # map and the timers say free, only the database knows
        async with database.unit_of_work() as uow:
            now = deps.clock.now()
            middle = venue.seats[2:4]
            await uow.reservations.hold(joon.user_id, middle, now, now + timedelta(minutes=5), 4)
            await uow.commit()
        held = await hold_best(mina.user_id, mina.queue_token, date_id, 2, deps=deps)
        assert [r.number for r in held] == [1, 2]

    async def test_no_row_with_that_many_together(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, sections=[one_row(5, 10_000)])
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        date_id = venue.dates[0].date_id
        await hold_seat(joon.user_id, joon.queue_token, venue.seats[2].seat_id, deps=deps)
        with pytest.raises(SeatsNotTogether):
            await hold_best(mina.user_id, mina.queue_token, date_id, 3, deps=deps)
        assert await statuses(deps, mina, date_id) == "..h.."

    async def test_passes_over_seats_whose_timers_another_customer_holds(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, sections=[one_row(6, 10_000)])
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        date_id = venue.dates[0].date_id
        # joon's timers on 3-4 are taken, as in a rush, before his hold reaches the database
        await deps.timers.take(
            joon.queue_token,
            joon.user_id,
            [Offer([venue.seats[2].seat_id, venue.seats[3].seat_id])],
            deps.clock.now(),
            deps.clock.now() + timedelta(minutes=5),
            0,
        )
        # the map shows 3-4 available, and the best pair is 3-4: the timers turn it down
        held = await hold_best(mina.user_id, mina.queue_token, date_id, 2, deps=deps)
        assert [r.number for r in held] == [1, 2]

    async def test_refuses_bad_quantities_and_dates(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, sections=HALL)
        mina = await admitted_customer(deps, "mina@example.com")
        date_id = venue.dates[0].date_id
        for quantity in (0, 5, -1):
            with pytest.raises(InvalidRequest):
                await hold_best(mina.user_id, mina.queue_token, date_id, quantity, deps=deps)
        with pytest.raises(NotFound):
            await hold_best(mina.user_id, mina.queue_token, DateId(10_000), 2, deps=deps)

    async def test_refuses_a_date_whose_sale_has_not_opened(self, deps: Dependencies) -> None:
        now = deps.clock.now()
        concert = await create_concert(OPERATOR, "Later", "Hall", deps=deps)
        spec = DateSpec(now + timedelta(days=7), HALL, sale_opens_at=now + timedelta(days=1))
        created = await create_date(OPERATOR, concert.concert_id, spec, deps=deps)
        mina = await admitted_customer(deps, "mina@example.com")
        with pytest.raises(SaleNotOpen):
            await hold_best(mina.user_id, mina.queue_token, created.date.date_id, 2, deps=deps)


class TestPayingSeveralHolds:
    async def test_one_debit_one_payment_every_seat_sold_token_expired(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=4, price=30_000)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 100_000, deps=deps)
        asked = [seat.seat_id for seat in venue.seats[:3]]
        held = await hold_seats(mina.user_id, mina.queue_token, asked, deps=deps)
        ids = [r.reservation_id for r in held]
        receipt = await pay_holds(mina.user_id, mina.queue_token, ids, "basket-1", deps=deps)
        assert (receipt.amount, receipt.balance, receipt.reservation_ids) == (
            90_000,
            10_000,
            tuple(ids),
        )
        page = await list_transactions(mina.user_id, deps=deps)
        assert [(e.kind, e.signed_amount) for e in page.items] == [
            ("payment", -90_000),
            ("charge", 100_000),
        ]
        for reservation_id in ids:
            found = await get_reservation(mina.user_id, reservation_id, deps=deps)
            assert found.status == "paid"
        again = await pay_holds(mina.user_id, mina.queue_token, ids, "basket-1", deps=deps)
        assert again == receipt  # replayed, though the token has expired
        with pytest.raises(QueueTokenInvalid):
            await hold_seat(mina.user_id, mina.queue_token, venue.seats[3].seat_id, deps=deps)

    async def test_nothing_is_paid_when_one_hold_cannot_be(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=4, price=30_000)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 100_000, deps=deps)
        early = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        clock.advance(timedelta(minutes=3))
        late = await hold_seat(mina.user_id, mina.queue_token, venue.seats[1].seat_id, deps=deps)
        cancelled = await hold_seat(
            mina.user_id, mina.queue_token, venue.seats[2].seat_id, deps=deps
        )
        await cancel_reservation(mina.user_id, cancelled.reservation_id, deps=deps)
        token = mina.queue_token
        ids = [late.reservation_id, cancelled.reservation_id]
        with pytest.raises(ReservationNotHeld):
            await pay_holds(mina.user_id, token, ids, deps=deps)
        with pytest.raises(NotFound):
            await pay_holds(
                mina.user_id, token, [late.reservation_id, ReservationId(999)], deps=deps
            )
        clock.advance(timedelta(minutes=2))  # the early hold lapses
        with pytest.raises(HoldExpired):
            await pay_holds(
                mina.user_id, token, [late.reservation_id, early.reservation_id], deps=deps
            )
        assert await get_balance(mina.user_id, deps=deps) == 100_000
        found = await get_reservation(mina.user_id, late.reservation_id, deps=deps)
        assert found.status == "held"

    async def test_nothing_is_paid_when_the_total_is_not_covered(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=2, price=30_000)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 50_000, deps=deps)
        asked = [seat.seat_id for seat in venue.seats]
        held = await hold_seats(mina.user_id, mina.queue_token, asked, deps=deps)
        with pytest.raises(InsufficientBalance):
            await pay_holds(
                mina.user_id, mina.queue_token, [r.reservation_id for r in held], deps=deps
            )
        assert await get_balance(mina.user_id, deps=deps) == 50_000

    async def test_refuses_bad_lists(self, deps: Dependencies) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        one = ReservationId(1)
        for ids in ([], [one, one], [ReservationId(n) for n in range(1, 6)]):
            with pytest.raises(InvalidRequest):
                await pay_holds(mina.user_id, mina.queue_token, ids, deps=deps)


class TestExtension:
    async def test_moves_the_expiry_once_and_the_seat_stays_held(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=2)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        extended = await extend_hold(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        assert extended.expires_at == held.expires_at + timedelta(seconds=120)
        with pytest.raises(ExtensionLimitReached):
            await extend_hold(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        clock.advance(timedelta(minutes=6))  # past the first expiry, before the second
        await sweep_expired_holds(deps=deps)
        with pytest.raises(SeatUnavailable):  # the timer moved with the hold
            await hold_seat(joon.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)
        clock.advance(timedelta(minutes=1))
        again = await hold_seat(joon.user_id, joon.queue_token, venue.seats[0].seat_id, deps=deps)
        assert again.seat_id == held.seat_id

    async def test_refuses_what_is_not_a_live_hold_of_the_caller(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=3)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        token = mina.queue_token
        cancelled = await hold_seat(mina.user_id, token, venue.seats[0].seat_id, deps=deps)
        await cancel_reservation(mina.user_id, cancelled.reservation_id, deps=deps)
        with pytest.raises(ReservationNotHeld):
            await extend_hold(mina.user_id, token, cancelled.reservation_id, deps=deps)
        held = await hold_seat(mina.user_id, token, venue.seats[1].seat_id, deps=deps)
        with pytest.raises(NotFound):
            await extend_hold(joon.user_id, joon.queue_token, held.reservation_id, deps=deps)
        clock.advance(timedelta(minutes=5))
        mina = await rejoin(deps, mina)
        with pytest.raises(HoldExpired):
            await extend_hold(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)

    async def test_needs_an_active_queue_token(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=2, price=10_000)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 10_000, deps=deps)
        first = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[1].seat_id, deps=deps)
        await pay(mina.user_id, mina.queue_token, first.reservation_id, deps=deps)  # expires it
        with pytest.raises(QueueTokenInvalid):
            await extend_hold(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)


class TestRetriedHolds:
    """A hold sent again with its idempotency key, as a customer does whose answer was lost
    with the host that gave it."""

    async def test_a_retry_gets_the_same_holds_and_holds_nothing_more(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=4)
        mina = await admitted_customer(deps, "mina@example.com")
        asked = [venue.seats[1].seat_id, venue.seats[2].seat_id]
        first = await hold_seats(mina.user_id, mina.queue_token, asked, "basket-1", deps=deps)
        again = await hold_seats(mina.user_id, mina.queue_token, asked, "basket-1", deps=deps)
        assert again == first
        assert await statuses(deps, mina, venue.dates[0].date_id) == ".hh."
        page = await list_reservations(mina.user_id, deps=deps)
        assert [r.reservation_id for r in page.items] == [2, 1]  # no third, no fourth

    async def test_one_seat_asked_alone_or_as_a_list_is_one_request(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=3)
        mina = await admitted_customer(deps, "mina@example.com")
        seat = venue.seats[0].seat_id
        held = await hold_seat(mina.user_id, mina.queue_token, seat, "k", deps=deps)
        assert await hold_seats(mina.user_id, mina.queue_token, [seat], "k", deps=deps) == [held]

    async def test_the_same_key_for_another_request_is_refused(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=3)
        mina = await admitted_customer(deps, "mina@example.com")
        await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, "k", deps=deps)
        with pytest.raises(IdempotencyKeyReused):
            await hold_seat(mina.user_id, mina.queue_token, venue.seats[1].seat_id, "k", deps=deps)
        with pytest.raises(IdempotencyKeyReused):
            await hold_best(
                mina.user_id, mina.queue_token, venue.dates[0].date_id, 1, None, "k", deps=deps
            )
        assert await statuses(deps, mina, venue.dates[0].date_id) == "h.."
        # keys are the customer's own: another may use the same one
        joon = await admitted_customer(deps, "joon@example.com")
        await hold_seat(joon.user_id, joon.queue_token, venue.seats[1].seat_id, "k", deps=deps)

    async def test_replays_the_first_answer_after_the_hold_was_paid(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=3)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 100_000, deps=deps)
        date_id = venue.dates[0].date_id
        first = await hold_best(mina.user_id, mina.queue_token, date_id, 2, None, "k", deps=deps)
        clock.advance(timedelta(seconds=30))
        await extend_hold(mina.user_id, mina.queue_token, first[0].reservation_id, deps=deps)
        await pay_holds(
            mina.user_id, mina.queue_token, [r.reservation_id for r in first], deps=deps
        )
        # the queue token has expired with the payment: the retry is answered all the same
        again = await hold_best(mina.user_id, mina.queue_token, date_id, 2, None, "k", deps=deps)
        assert again == first
        assert {r.status for r in again} == {"held"}
        assert await statuses(deps, mina, date_id) == "ss."

    async def test_a_refusal_is_the_answer_too(self, deps: Dependencies) -> None:
        venue = await add_venue(deps, seats=2)
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        seat = venue.seats[0].seat_id
        held = await hold_seat(joon.user_id, joon.queue_token, seat, deps=deps)
        with pytest.raises(SeatUnavailable):
            await hold_seat(mina.user_id, mina.queue_token, seat, "k", deps=deps)
        await cancel_reservation(joon.user_id, held.reservation_id, deps=deps)
        with pytest.raises(SeatUnavailable):  # the first answer, though the seat is free now
            await hold_seat(mina.user_id, mina.queue_token, seat, "k", deps=deps)
        assert await hold_seat(mina.user_id, mina.queue_token, seat, "k2", deps=deps)

    async def test_a_refusal_for_pace_or_place_in_line_keeps_nothing(
        self, deps: Dependencies
    ) -> None:
        venue = await add_venue(deps, seats=2)
        mina = await admitted_customer(deps, "mina@example.com")
        seat = venue.seats[0].seat_id
        with pytest.raises(QueueTokenInvalid):
            await hold_seat(mina.user_id, "not-a-token", seat, "k", deps=deps)
        held = await hold_seat(mina.user_id, mina.queue_token, seat, "k", deps=deps)
        assert held.seat_id == seat

    async def test_a_customer_still_in_line_writes_nothing_and_is_answered_what_was_kept(
        self, deps: Dependencies
    ) -> None:
        """Keys or none, the crowd waiting in line costs the database a read at most, for
        holds and payments alike; a key answered before its customer went back into line
        still replays that answer."""
        small = attrs.evolve(deps, policy=BookingPolicy(queue=QueuePolicy(capacity=1)))
        venue = await add_venue(small, seats=3)
        mina = await admitted_customer(small, "mina@example.com")
        await charge_wallet(mina.user_id, 100_000, deps=small)
        seat, date_id = venue.seats[0].seat_id, venue.dates[0].date_id
        held = await hold_seat(mina.user_id, mina.queue_token, seat, "h", deps=small)
        paid = await pay(mina.user_id, mina.queue_token, held.reservation_id, "p", deps=small)
        joon = await usecases.sign_up("joon@example.com", "a long password 123", deps=small)
        await usecases.join_queue(joon.user_id, deps=small)  # the one place, mina's before
        again, _ = await usecases.join_queue(mina.user_id, deps=small)
        assert again.status == "waiting"
        opened: list[bool] = []

        def counted(*, read_only: bool = False) -> UnitOfWork:
            opened.append(read_only)
            return small.uow(read_only=read_only)

        counting = attrs.evolve(small, uow=counted)
        user, token, two = mina.user_id, again.token, [s.seat_id for s in venue.seats[1:]]
        for attempt in (
            hold_seat(user, token, two[0], "k1", deps=counting),
            hold_seats(user, token, two, "k2", deps=counting),
            hold_best(user, token, date_id, 2, None, "k3", deps=counting),
            pay_holds(user, token, [held.reservation_id], "k4", deps=counting),
        ):
            with pytest.raises(QueueTokenNotActive):
                await attempt
        assert await hold_seat(user, token, seat, "h", deps=counting) == held
        replayed = await pay(user, token, held.reservation_id, "p", deps=counting)
        assert attrs.evolve(replayed, replayed=False) == paid
        with pytest.raises(IdempotencyKeyReused):
            await pay(user, token, ReservationId(99), "p", deps=counting)
        # no write: a read each, and one more for the reservations the hold's replay names
        assert opened == [True] * 8
        assert await statuses(small, mina, date_id) == "s.."

    async def test_a_retry_is_answered_from_its_key_while_the_line_cannot_be_asked(
        self, deps: Dependencies
    ) -> None:
        """Redis holds nothing a kept answer depends on: with the line's store down, a hold
        and a payment sent again get their first answers."""
        venue = await add_venue(deps, seats=2)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 100_000, deps=deps)
        seat = venue.seats[0].seat_id
        held = await hold_seat(mina.user_id, mina.queue_token, seat, "h", deps=deps)
        paid = await pay(mina.user_id, mina.queue_token, held.reservation_id, "p", deps=deps)
        down = attrs.evolve(deps, queue=_LineDown(deps.queue))
        assert await hold_seat(mina.user_id, mina.queue_token, seat, "h", deps=down) == held
        again = await pay(mina.user_id, mina.queue_token, held.reservation_id, "p", deps=down)
        assert attrs.evolve(again, replayed=False) == paid

    async def test_a_retry_after_its_first_run_died_before_the_database_holds_the_seat(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        """Its host killed after the timers were taken and the key claimed, before the hold
        was written: the key answers 409 while its lease runs, then the retry holds the seat
        (the customer's own timer is no bar)."""
        venue = await add_venue(deps, seats=2)
        mina = await admitted_customer(deps, "mina@example.com")
        seat = venue.seats[0].seat_id
        now = clock.now()
        request = fingerprint("hold", seat_id=seat)
        async with deps.uow() as uow:  # what the dead run left behind
            await uow.idempotency.claim(mina.user_id, "k", request, now, PENDING_LEASE)
            await uow.commit()
        offer = [Offer([seat])]
        until = now + timedelta(minutes=5)
        await deps.timers.take(mina.queue_token, mina.user_id, offer, now, until, 0)
        with pytest.raises(IdempotencyKeyInUse):
            await hold_seat(mina.user_id, mina.queue_token, seat, "k", deps=deps)
        clock.advance(PENDING_LEASE)
        held = await hold_seat(mina.user_id, mina.queue_token, seat, "k", deps=deps)
        assert held.seat_id == seat
        assert await hold_seat(mina.user_id, mina.queue_token, seat, "k", deps=deps) == held


class _LineDown:
    """The line's store as it is while Redis is down: every look at a ticket fails."""

    def __init__(self, inner: QueueStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get(self, token: QueueToken, now: datetime) -> QueueTicket | None:
        raise StoreUnavailable("redis cannot be reached")
