"""The contract of the database-backed ports: every `UnitOfWork` repository.

A subclass provides a ``uow`` fixture (a `UnitOfWorkFactory` over an empty, migrated store).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, date, datetime, timedelta

import attrs
import pytest

from concert_domain.accounts import Role
from concert_domain.catalog import ConcertDate, NewSeat, Seat
from concert_domain.errors import (
    EmailTaken,
    HoldLimitReached,
    InsufficientBalance,
    InvalidRequest,
    SeatUnavailable,
    TransactionAborted,
    TransactionClosed,
)
from concert_domain.idempotency import IdempotencyState, JsonScalar, StoredOutcome
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId, UserId
from concert_domain.paging import Position
from concert_domain.ports import UnitOfWork, UnitOfWorkFactory
from concert_domain.reservations import ReservationStatus
from concert_domain.wallet import LedgerKind, Sale, ledger_balance
from inspection import StoreInspector

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOLD = timedelta(minutes=5)
LEASE = timedelta(seconds=60)


async def add_customer(uow: UnitOfWorkFactory, email: str = "mina@example.com") -> UserId:
    async with uow() as tx:
        account = await tx.accounts.add(email, "hash", NOW)
        await tx.wallets.open(account.user_id)
        await tx.commit()
    return account.user_id


def row_of(
    count: int, price: int = 50_000, section: str = "Floor", row: str = "A"
) -> list[NewSeat]:
    """Seats 1 to ``count`` of one row, as a layout makes them."""
    return [NewSeat(section, 0, row, 0, n, price) for n in range(1, count + 1)]


async def add_date(
    tx: UnitOfWork, concert_id: ConcertId, starts_in: timedelta = timedelta(days=7)
) -> ConcertDate:
    """A date starting ``starts_in`` after NOW, on sale from a day before NOW to its start."""
    starts_at = NOW + starts_in
    return await tx.catalog.add_date(
        concert_id, starts_at.date(), starts_at, NOW - timedelta(days=1), starts_at
    )


async def add_seats(
    uow: UnitOfWorkFactory, count: int = 3, price: int = 50_000, layout: list[NewSeat] | None = None
) -> list[Seat]:
    """A concert with one date whose seats are ``layout`` (one row of ``count`` seats unless
    given); the seats in layout order."""
    async with uow() as tx:
        concert = await tx.catalog.add_concert("Contract Night", "Contract Hall")
        concert_date = await add_date(tx, concert.concert_id)
        await tx.catalog.add_seats(concert_date.date_id, layout or row_of(count, price))
        await tx.commit()
    async with uow(read_only=True) as tx:
        return [view.seat for view in await tx.catalog.seat_map(concert_date.date_id, NOW)]


async def hold(
    uow: UnitOfWorkFactory, user: UserId, seat: Seat, now: datetime = NOW, limit: int = 4
) -> ReservationId:
    async with uow() as tx:
        [reservation] = await tx.reservations.hold(user, [seat], now, now + HOLD, limit)
        await tx.commit()
    return reservation.reservation_id


async def hold_all(
    uow: UnitOfWorkFactory, user: UserId, seats: list[Seat], limit: int = 4
) -> list[ReservationId]:
    """Hold ``seats`` together, in one unit of work."""
    async with uow() as tx:
        held = await tx.reservations.hold(user, seats, NOW, NOW + HOLD, limit)
        await tx.commit()
    return [reservation.reservation_id for reservation in held]


async def credit(uow: UnitOfWorkFactory, user: UserId, amount: int) -> int | None:
    async with uow() as tx:
        balance = await tx.wallets.credit(user, amount, NOW, 100_000_000)
        await tx.commit()
    return balance


async def sell_all(
    uow: UnitOfWorkFactory, user: UserId, reservation_ids: list[ReservationId]
) -> Sale | None:
    async with uow() as tx:
        sale = await tx.payments.pay(reservation_ids, user, NOW)
        await tx.commit()
    return sale


async def sell(
    uow: UnitOfWorkFactory, user: UserId, reservation_id: ReservationId, now: datetime = NOW
) -> Sale | None:
    async with uow() as tx:
        sale = await tx.payments.pay([reservation_id], user, now)
        await tx.commit()
    return sale


class DatabaseContract:
    """A subclass provides ``uow`` and ``inspect`` (a `StoreInspector` of the same store)."""

    # -- unit of work -------------------------------------------------------------------------

    async def test_a_unit_of_work_left_without_commit_keeps_nothing(
        self, uow: UnitOfWorkFactory
    ) -> None:
        async with uow() as tx:
            await tx.accounts.add("mina@example.com", "hash", NOW)
        async with uow() as tx:
            assert await tx.accounts.get_by_email("mina@example.com") is None

    async def test_a_failed_unit_of_work_rolls_back_its_earlier_writes(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        user = await add_customer(uow)

        async def credit_then_clash() -> None:
            async with uow() as tx:
                await tx.wallets.credit(user, 1_000, NOW, 100_000_000)
                await tx.accounts.add("mina@example.com", "hash", NOW)

        with pytest.raises(EmailTaken):
            await credit_then_clash()
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 0
        assert await inspect.ledger(user) == []

    async def test_a_refused_hold_leaves_nothing_of_its_unit_of_work(
        self, uow: UnitOfWorkFactory
    ) -> None:
        [seat] = await add_seats(uow, count=1)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        first = await hold(uow, user, seat)

        async def credit_and_hold() -> None:
            async with uow() as tx:
                await tx.wallets.credit(other, 5_000, NOW, 100_000_000)
                await tx.reservations.hold(other, [seat], NOW, NOW + HOLD, 4)
                await tx.commit()

        with pytest.raises(SeatUnavailable):  # from the hold or from the commit: either way
            await credit_and_hold()
        async with uow() as tx:
            views = await tx.catalog.seat_map(seat.date_id, NOW)
            assert await tx.reservations.get(first) is not None
            assert await tx.wallets.balance(other) == 0
        assert [(v.status, v.held_until) for v in views] == [("held", NOW + HOLD)]

    async def test_a_committed_unit_of_work_may_read_but_not_write(
        self, uow: UnitOfWorkFactory
    ) -> None:
        user = await add_customer(uow)

        async def credit_after_commit() -> None:
            async with uow() as tx:
                await tx.wallets.credit(user, 100, NOW, 100_000_000)
                await tx.commit()
                assert await tx.wallets.balance(user) == 100  # reads may follow
                await tx.wallets.credit(user, 5, NOW, 100_000_000)

        with pytest.raises(TransactionClosed):
            await credit_after_commit()
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 100

    async def test_a_commit_after_a_failed_change_raises_and_keeps_nothing(
        self, uow: UnitOfWorkFactory
    ) -> None:
        user = await add_customer(uow)

        async def carry_on_regardless() -> None:
            async with uow() as tx:
                await tx.wallets.credit(user, 100, NOW, 100_000_000)
                with contextlib.suppress(EmailTaken):
                    await tx.accounts.add("mina@example.com", "hash", NOW)
                await tx.commit()

        with pytest.raises(TransactionAborted):
            await carry_on_regardless()
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 0

    async def test_a_read_only_unit_of_work_changes_nothing(self, uow: UnitOfWorkFactory) -> None:
        user = await add_customer(uow)
        with pytest.raises(TransactionClosed):
            async with uow(read_only=True) as tx:
                await tx.wallets.credit(user, 100, NOW, 100_000_000)
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 0

    # -- accounts -----------------------------------------------------------------------------

    async def test_accounts_are_found_by_email(self, uow: UnitOfWorkFactory) -> None:
        user = await add_customer(uow)
        async with uow() as tx:
            account = await tx.accounts.get_by_email("mina@example.com")
        assert account is not None
        assert (account.user_id, account.email, account.password_hash) == (
            user,
            "mina@example.com",
            "hash",
        )
        assert account.created_at == NOW

    async def test_concurrent_sign_ups_with_one_email_make_one_account(
        self, uow: UnitOfWorkFactory
    ) -> None:
        results = await asyncio.gather(
            *(add_customer(uow, "same@example.com") for _ in range(8)), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, EmailTaken) for r in results if isinstance(r, BaseException))

    # -- catalog ------------------------------------------------------------------------------

    async def test_the_catalog_keeps_concerts_dates_and_seats(self, uow: UnitOfWorkFactory) -> None:
        seats = await add_seats(uow, count=3, price=70_000)
        async with uow() as tx:
            [concert] = await tx.catalog.list_concerts()
            concert_date = await tx.catalog.get_date(seats[0].date_id)
            seat = await tx.catalog.get_seat(seats[2].seat_id)
            missing = await tx.catalog.get_seat(SeatId(10_000))
        assert (concert.title, concert.venue) == ("Contract Night", "Contract Hall")
        assert concert_date is not None
        starts_at = NOW + timedelta(days=7)
        assert (concert_date.date, concert_date.starts_at) == (starts_at.date(), starts_at)
        assert (concert_date.sale_opens_at, concert_date.sale_closes_at) == (
            NOW - timedelta(days=1),
            starts_at,
        )
        assert seat == seats[2]
        assert (seat.label, seat.price, seat.concert_id) == (
            "Floor A-3",
            70_000,
            concert.concert_id,
        )
        assert missing is None

    async def test_seats_keep_the_layout_order_and_a_section_reads_alone(
        self, uow: UnitOfWorkFactory
    ) -> None:
        # given out of order: the best section (0) and its rows come first however given
        layout = [
            NewSeat("Balcony", 1, "K", 0, 2, 30_000),
            NewSeat("VIP", 0, "B", 1, 1, 150_000),
            NewSeat("Balcony", 1, "K", 0, 1, 30_000),
            NewSeat("VIP", 0, "A", 0, 2, 150_000),
            NewSeat("VIP", 0, "A", 0, 1, 150_000),
        ]
        seats = await add_seats(uow, layout=layout)
        async with uow() as tx:
            vip = await tx.catalog.seat_map(seats[0].date_id, NOW, "VIP")
            nothing = await tx.catalog.seat_map(seats[0].date_id, NOW, "Stalls")
        assert [s.label for s in seats] == [
            "VIP A-1",
            "VIP A-2",
            "VIP B-1",
            "Balcony K-1",
            "Balcony K-2",
        ]
        assert [v.seat.label for v in vip] == ["VIP A-1", "VIP A-2", "VIP B-1"]
        assert {v.seat.price for v in vip} == {150_000}
        assert nothing == []

    async def test_a_seat_is_unique_by_section_row_and_number_within_a_date(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=2)
        async with uow() as tx:  # the same number in another row or section is another seat
            added = await tx.catalog.add_seats(
                seats[0].date_id, [*row_of(1, row="B"), *row_of(1, section="Box")]
            )
            await tx.commit()
        assert added == 2
        async with uow() as tx:
            with pytest.raises(InvalidRequest):
                await tx.catalog.add_seats(seats[0].date_id, row_of(1))

    async def test_a_date_takes_a_big_layout_in_one_call(self, uow: UnitOfWorkFactory) -> None:
        layout = [
            NewSeat(f"S{s}", s, f"R{r}", r, n, 10_000 + s)
            for s in range(4)
            for r in range(10)
            for n in range(1, 51)
        ]
        async with uow() as tx:
            concert = await tx.catalog.add_concert("Arena")
            concert_date = await add_date(tx, concert.concert_id)
            added = await tx.catalog.add_seats(concert_date.date_id, iter(layout))
            await tx.commit()
        async with uow() as tx:
            whole = await tx.catalog.seat_map(concert_date.date_id, NOW)
            section = await tx.catalog.seat_map(concert_date.date_id, NOW, "S2")
        assert added == len(whole) == 2_000
        assert [v.seat.label for v in section][:2] == ["S2 R0-1", "S2 R0-2"]
        assert len(section) == 500 and {v.seat.price for v in section} == {10_002}

    async def test_dates_need_a_concert_and_seats_need_a_date(self, uow: UnitOfWorkFactory) -> None:
        with pytest.raises(InvalidRequest):
            async with uow() as tx:
                await add_date(tx, ConcertId(10_000))
        with pytest.raises(InvalidRequest):
            async with uow() as tx:
                await tx.catalog.add_seats(DateId(10_000), row_of(1))

    async def test_the_seat_map_shows_live_reservations_at_the_given_instant(
        self, uow: UnitOfWorkFactory
    ) -> None:
        one, two, three = await add_seats(uow, count=3)
        user = await add_customer(uow)
        await hold(uow, user, one)
        paid = await hold(uow, user, two, now=NOW - HOLD)  # lapses at NOW...
        await hold(uow, user, three, now=NOW - timedelta(minutes=10))
        await credit(uow, user, 50_000)
        # ...so it cannot be paid at NOW; paid a moment before it lapsed, it stays sold
        assert await sell(uow, user, paid, NOW) is None
        assert await sell(uow, user, paid, NOW - timedelta(seconds=1)) is not None
        async with uow() as tx:
            statuses = [v.status for v in await tx.catalog.seat_map(one.date_id, NOW)]
            later = [v.status for v in await tx.catalog.seat_map(one.date_id, NOW + HOLD)]
        assert statuses == ["held", "sold", "available"]
        assert later == ["available", "sold", "available"]
        async with uow() as tx:
            until = [v.held_until for v in await tx.catalog.seat_map(one.date_id, NOW)]
        assert until == [NOW + HOLD, None, None]  # a held seat says when it frees

    async def test_open_dates_count_available_seats_and_skip_closed_or_full_dates(
        self, uow: UnitOfWorkFactory
    ) -> None:
        user = await add_customer(uow)
        async with uow() as tx:
            concert = await tx.catalog.add_concert("Three Nights")
            dates = [await add_date(tx, concert.concert_id, timedelta(days=d)) for d in (9, 2, 5)]
            closed = await tx.catalog.add_date(  # its sale closed at NOW, a day before it starts
                concert.concert_id, date(2026, 12, 2), NOW + timedelta(days=1), NOW - HOLD, NOW
            )
            for d in [*dates, closed]:
                await tx.catalog.add_seats(d.date_id, row_of(2, 10))
            await tx.commit()
        seats = {}
        async with uow() as tx:
            for d in dates:
                seats[d.date_id] = [v.seat for v in await tx.catalog.seat_map(d.date_id, NOW)]
        full = dates[2]
        for seat in seats[full.date_id]:
            await hold(uow, user, seat)
        await hold(uow, user, seats[dates[0].date_id][0])
        async with uow() as tx:
            found = await tx.catalog.open_dates(concert.concert_id, NOW)
            before_close = await tx.catalog.open_dates(concert.concert_id, NOW - HOLD)
        assert [(a.date.date_id, a.available_seats) for a in found] == [
            (dates[1].date_id, 2),
            (dates[0].date_id, 1),
        ]
        assert closed.date_id in {a.date.date_id for a in before_close}

    async def test_sales_count_each_section_at_the_given_instant(
        self, uow: UnitOfWorkFactory
    ) -> None:
        layout = [*row_of(3, 100_000, section="VIP"), *row_of(2, 40_000, section="Floor")]
        layout = [*layout[:3], *(attrs.evolve(s, section_order=1) for s in layout[3:])]
        vip1, vip2, vip3, floor1, _ = await add_seats(uow, layout=layout)
        user = await add_customer(uow)
        await credit(uow, user, 1_000_000)
        for seat in (vip1, floor1):
            assert await sell(uow, user, await hold(uow, user, seat)) is not None
        await hold(uow, user, vip2)
        await hold(uow, user, vip3, now=NOW - HOLD)  # lapsed at NOW
        async with uow() as tx:
            sales = await tx.catalog.sales(vip1.date_id, NOW)
        assert [
            (s.name, s.seats_total, s.available, s.held, s.sold, s.revenue) for s in sales.sections
        ] == [("VIP", 3, 1, 1, 1, 100_000), ("Floor", 2, 1, 0, 1, 40_000)]
        assert (sales.seats_total, sales.available, sales.held, sales.sold, sales.revenue) == (
            5,
            2,
            1,
            2,
            140_000,
        )

    async def test_sold_seats_are_listed_by_reservation_a_page_at_a_time(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=5, price=1_000)
        user = await add_customer(uow)
        await credit(uow, user, 100_000)
        sold = []
        for seat in seats[:4]:
            reservation_id = await hold(uow, user, seat)
            assert await sell(uow, user, reservation_id) is not None
            sold.append(reservation_id)
        await hold(uow, user, seats[4])  # held, not sold
        async with uow() as tx:
            first = await tx.catalog.sold_seats(seats[0].date_id, None, 3)
            rest = await tx.catalog.sold_seats(seats[0].date_id, first[-1].reservation_id, 3)
        assert [s.reservation_id for s in first + rest] == sold
        assert (rest[0].section, rest[0].row, rest[0].number, rest[0].price) == (
            "Floor",
            "A",
            4,
            1_000,
        )
        assert (rest[0].email, rest[0].paid_at) == ("mina@example.com", NOW)

    # -- reservations -------------------------------------------------------------------------

    async def test_a_hold_records_the_seat_and_its_expiry(self, uow: UnitOfWorkFactory) -> None:
        [seat] = await add_seats(uow, count=1)
        user = await add_customer(uow)
        reservation_id = await hold(uow, user, seat)
        async with uow() as tx:
            reservation = await tx.reservations.get(reservation_id)
        assert reservation is not None
        assert (reservation.user_id, reservation.seat_id, reservation.price) == (
            user,
            seat.seat_id,
            seat.price,
        )
        assert (reservation.status, reservation.created_at, reservation.expires_at) == (
            "held",
            NOW,
            NOW + HOLD,
        )

    async def test_a_seat_with_a_live_hold_or_a_payment_cannot_be_held(
        self, uow: UnitOfWorkFactory
    ) -> None:
        one, two = await add_seats(uow, count=2)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        await hold(uow, user, one)
        paid = await hold(uow, user, two)
        await credit(uow, user, 50_000)
        assert await sell(uow, user, paid) is not None
        for seat, when in (
            (one, NOW + HOLD - timedelta(seconds=1)),
            (two, NOW + timedelta(days=1)),
        ):
            with pytest.raises(SeatUnavailable):
                await hold(uow, other, seat, now=when)

    async def test_a_lapsed_hold_gives_way_to_the_next_customer(
        self, uow: UnitOfWorkFactory
    ) -> None:
        [seat] = await add_seats(uow, count=1)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        first = await hold(uow, user, seat)
        second = await hold(uow, other, seat, now=NOW + HOLD)
        async with uow() as tx:
            old, new = await tx.reservations.get(first), await tx.reservations.get(second)
        assert old is not None
        assert old.as_of(NOW + HOLD).status == "expired"
        assert new is not None
        assert new.status == "held"

    async def test_cancelled_holds_free_the_seat(self, uow: UnitOfWorkFactory) -> None:
        [seat] = await add_seats(uow, count=1)
        user = await add_customer(uow)
        first = await hold(uow, user, seat)
        async with uow() as tx:
            cancelled = await tx.reservations.cancel(first, NOW)
            await tx.commit()
        assert cancelled is not None and cancelled.status == "cancelled"
        await hold(uow, user, seat)

    async def test_the_hold_limit_counts_only_unexpired_holds(self, uow: UnitOfWorkFactory) -> None:
        seats = await add_seats(uow, count=4)
        user = await add_customer(uow)
        await hold(uow, user, seats[0], now=NOW - HOLD, limit=2)  # lapsed by NOW
        await hold(uow, user, seats[1], limit=2)
        await hold(uow, user, seats[2], limit=2)
        with pytest.raises(HoldLimitReached):
            await hold(uow, user, seats[3], limit=2)

    async def test_pay_and_cancel_succeed_only_on_an_unexpired_hold(
        self, uow: UnitOfWorkFactory
    ) -> None:
        one, two = await add_seats(uow, count=2)
        user = await add_customer(uow)
        first, second = await hold(uow, user, one), await hold(uow, user, two)
        await credit(uow, user, 100_000)
        async with uow() as tx:
            assert await tx.payments.pay([first], user, NOW + HOLD) is None
            assert await tx.reservations.cancel(first, NOW + HOLD) is None
            sale = await tx.payments.pay([first], user, NOW)
            assert sale is not None and sale.reservations[0].status == "paid"
            assert await tx.payments.pay([first], user, NOW) is None
            assert await tx.reservations.cancel(first, NOW) is None
            assert await tx.reservations.cancel(second, NOW) is not None
            assert await tx.payments.pay([second], user, NOW) is None
            assert await tx.payments.pay([ReservationId(10_000)], user, NOW) is None
            await tx.commit()

    async def test_the_sweep_expires_each_lapsed_hold_once_and_nothing_else(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=5)
        user = await add_customer(uow)
        lapsed = [await hold(uow, user, s, now=NOW - HOLD, limit=9) for s in seats[:3]]
        paid = await hold(uow, user, seats[3], now=NOW - HOLD, limit=9)
        await credit(uow, user, 50_000)
        assert await sell(uow, user, paid, NOW - HOLD) is not None
        await hold(uow, user, seats[4], limit=9)
        async with uow() as tx:
            first = await tx.reservations.expire_due(NOW, limit=2)
            second = await tx.reservations.expire_due(NOW, limit=2)
            third = await tx.reservations.expire_due(NOW, limit=2)
            await tx.commit()
        assert [len(first), len(second), len(third)] == [2, 1, 0], (first, second, third)
        assert sorted(r.reservation_id for r in first + second) == sorted(lapsed)
        assert {r.status for r in first + second} == {"expired"}

    async def test_concurrent_contenders_for_one_seat_get_one_hold(
        self, uow: UnitOfWorkFactory
    ) -> None:
        [seat] = await add_seats(uow, count=1)
        users = [await add_customer(uow, f"p{n}@example.com") for n in range(12)]
        results = await asyncio.gather(*(hold(uow, u, seat) for u in users), return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, SeatUnavailable) for r in results if isinstance(r, BaseException))

    async def test_concurrent_holds_by_one_customer_stop_at_the_limit(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=10)
        user = await add_customer(uow)
        results = await asyncio.gather(
            *(hold(uow, user, s, limit=4) for s in seats), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 4
        assert all(isinstance(r, HoldLimitReached) for r in results if isinstance(r, BaseException))

    # -- wallets and payments -----------------------------------------------------------------

    async def test_credits_and_sales_move_the_balance_and_write_the_ledger(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        [seat] = await add_seats(uow, count=1, price=20_000)
        user = await add_customer(uow)
        reservation_id = await hold(uow, user, seat)
        assert await credit(uow, user, 30_000) == 30_000
        async with uow() as tx:
            sale = await tx.payments.pay([reservation_id], user, NOW)
            assert sale is not None
            assert sale.balance == 10_000
            assert await tx.wallets.credit(user, 91, NOW, 10_090) is None
            assert await tx.wallets.credit(user, 90, NOW, 10_090) == 10_090
            await tx.commit()
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 10_090
        entries = await inspect.ledger(user)
        assert [(e.kind, e.amount, e.payment_id) for e in entries] == [
            (LedgerKind.CHARGE, 30_000, None),
            (LedgerKind.PAYMENT, 20_000, sale.payment.payment_id),
            (LedgerKind.CHARGE, 90, None),
        ]
        assert ledger_balance(entries) == 10_090

    async def test_opening_a_wallet_twice_keeps_its_balance(self, uow: UnitOfWorkFactory) -> None:
        user = await add_customer(uow)
        await credit(uow, user, 500)
        async with uow() as tx:
            await tx.wallets.open(user)
            await tx.commit()
            assert await tx.wallets.balance(user) == 500

    async def test_concurrent_credits_lose_no_update(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        user = await add_customer(uow)
        await asyncio.gather(*(credit(uow, user, 100) for _ in range(20)))
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 2_000
        assert len(await inspect.ledger(user)) == 20

    async def test_concurrent_sales_never_take_the_balance_below_zero(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        seats = await add_seats(uow, count=10, price=300)
        user = await add_customer(uow)
        held = [await hold(uow, user, seat, limit=10) for seat in seats]
        await credit(uow, user, 1_000)

        async def balance_after(reservation_id: ReservationId) -> int:
            sale = await sell(uow, user, reservation_id)
            assert sale is not None
            return sale.balance

        results = await asyncio.gather(*(balance_after(r) for r in held), return_exceptions=True)
        assert sorted(r for r in results if isinstance(r, int)) == [100, 400, 700]
        assert all(isinstance(r, InsufficientBalance) for r in results if not isinstance(r, int))
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 100
            after = [await tx.reservations.get(r) for r in held]
        assert len(await inspect.ledger(user)) == 4
        assert sorted(r.status for r in after if r is not None) == ["held"] * 7 + ["paid"] * 3

    async def test_a_sale_the_balance_does_not_cover_raises_and_is_rolled_back(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        [seat] = await add_seats(uow, count=1, price=50_000)
        user = await add_customer(uow)
        await credit(uow, user, 49_999)
        reservation_id = await hold(uow, user, seat)
        with pytest.raises(InsufficientBalance, match=f"reservation {reservation_id}"):
            await sell(uow, user, reservation_id)
        async with uow() as tx:
            reservation = await tx.reservations.get(reservation_id)
            assert reservation is not None
            assert reservation.status == "held"
            assert await tx.wallets.balance(user) == 49_999
        assert await inspect.payment_for(reservation_id) is None
        assert len(await inspect.ledger(user)) == 1

    async def test_a_reservation_is_sold_once_and_to_its_holder_only(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        [seat] = await add_seats(uow, count=1)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        await credit(uow, user, 100_000)
        await credit(uow, other, 100_000)
        reservation_id = await hold(uow, user, seat)
        assert await sell(uow, other, reservation_id) is None
        sale = await sell(uow, user, reservation_id)
        assert await sell(uow, user, reservation_id) is None
        assert sale is not None
        assert await inspect.payment_for(reservation_id) == sale.payment
        async with uow() as tx:
            assert await tx.wallets.balance(other) == 100_000
            assert await tx.wallets.balance(user) == sale.balance == 50_000
        payment = sale.payment
        assert (payment.amount, payment.user_id, payment.created_at) == (50_000, user, NOW)

    # -- idempotency --------------------------------------------------------------------------

    async def test_an_idempotency_key_is_claimed_once_and_keeps_its_answer(
        self, uow: UnitOfWorkFactory
    ) -> None:
        user = await add_customer(uow)
        body: dict[str, JsonScalar] = {"payment_id": 4, "status": "paid", "note": None}
        async with uow() as tx:
            assert await tx.idempotency.claim(user, "k", "fp", NOW, LEASE) is None
            await tx.commit()
        async with uow() as tx:
            pending = await tx.idempotency.claim(user, "k", "other", NOW, LEASE)
            assert await tx.idempotency.complete(user, "k", NOW, StoredOutcome(body=body))
            await tx.commit()
        async with uow() as tx:
            done = await tx.idempotency.claim(user, "k", "fp", NOW + timedelta(hours=1), LEASE)
        assert pending is not None
        assert (pending.state, pending.fingerprint) == (IdempotencyState.PENDING, "fp")
        assert done is not None
        assert (done.state, done.outcome) == (IdempotencyState.DONE, StoredOutcome(body=body))

    async def test_an_idempotency_key_is_found_as_it_stands_without_a_claim(
        self, uow: UnitOfWorkFactory
    ) -> None:
        user = await add_customer(uow)
        async with uow(read_only=True) as tx:
            assert await tx.idempotency.find(user, "k") is None
        async with uow() as tx:
            await tx.idempotency.claim(user, "k", "fp", NOW, LEASE)
            await tx.commit()
        async with uow(read_only=True) as tx:
            pending = await tx.idempotency.find(user, "k")
            assert await tx.idempotency.find(user, "other") is None
        async with uow() as tx:
            assert await tx.idempotency.complete(user, "k", NOW, StoredOutcome(body={"a": 1}))
            await tx.commit()
        async with uow(read_only=True) as tx:
            done = await tx.idempotency.find(user, "k")
        assert pending is not None
        assert (pending.state, pending.fingerprint, pending.created_at) == (
            IdempotencyState.PENDING,
            "fp",
            NOW,
        )
        assert pending.abandoned(NOW + LEASE, LEASE) and not pending.abandoned(NOW, LEASE)
        assert done is not None and done.outcome == StoredOutcome(body={"a": 1})
        assert not done.abandoned(NOW + LEASE, LEASE)

    async def test_an_error_answer_round_trips(self, uow: UnitOfWorkFactory) -> None:
        user = await add_customer(uow)
        outcome = StoredOutcome(error_code="insufficient_balance", error_message="top up")
        async with uow() as tx:
            await tx.idempotency.claim(user, "k", "fp", NOW, LEASE)
            assert await tx.idempotency.complete(user, "k", NOW, outcome)
            await tx.commit()
        async with uow() as tx:
            record = await tx.idempotency.claim(user, "k", "fp", NOW, LEASE)
        assert record is not None and record.outcome == outcome

    async def test_a_lapsed_pending_claim_is_taken_over_once(self, uow: UnitOfWorkFactory) -> None:
        user = await add_customer(uow)
        async with uow() as tx:
            await tx.idempotency.claim(user, "k", "fp", NOW, LEASE)
            await tx.commit()

        async def claim() -> object:
            async with uow() as tx:
                record = await tx.idempotency.claim(user, "k", "fp2", NOW + LEASE, LEASE)
                await tx.commit()
            return record

        results = await asyncio.gather(*(claim() for _ in range(5)))
        assert results.count(None) == 1

    async def test_a_claim_taken_over_is_no_longer_its_first_requests(
        self, uow: UnitOfWorkFactory
    ) -> None:
        """The first request ran past its lease and a retry took the claim over: the first
        can neither complete nor release it, and its own change must then not commit."""
        user = await add_customer(uow)
        async with uow() as tx:
            await tx.idempotency.claim(user, "k", "fp", NOW, LEASE)
            await tx.commit()
        retried = NOW + LEASE
        async with uow() as tx:
            assert await tx.idempotency.claim(user, "k", "fp", retried, LEASE) is None
            await tx.commit()
        async with uow() as tx:
            await tx.idempotency.release(user, "k", NOW)
            assert not await tx.idempotency.complete(user, "k", NOW, StoredOutcome(body={}))
            await tx.commit()
        kept = StoredOutcome(body={"balance": 1})
        async with uow() as tx:
            assert await tx.idempotency.complete(user, "k", retried, kept)
            await tx.commit()
        async with uow() as tx:
            record = await tx.idempotency.claim(user, "k", "fp", retried, LEASE)
            assert not await tx.idempotency.complete(user, "k", retried, StoredOutcome(body={}))
        assert record is not None and record.outcome == kept

    async def test_released_claims_free_the_key_and_purges_forget_old_ones(
        self, uow: UnitOfWorkFactory
    ) -> None:
        user = await add_customer(uow)
        async with uow() as tx:
            await tx.idempotency.claim(user, "a", "fp", NOW, LEASE)
            await tx.idempotency.claim(user, "b", "fp", NOW + timedelta(hours=1), LEASE)
            await tx.idempotency.release(user, "a", NOW)
            assert await tx.idempotency.claim(user, "a", "fp", NOW, LEASE) is None
            assert await tx.idempotency.purge(NOW + timedelta(minutes=30)) == 1
            assert await tx.idempotency.claim(user, "a", "new", NOW, LEASE) is None
            assert await tx.idempotency.claim(user, "b", "fp", NOW, LEASE) is not None
            await tx.commit()

    # -- roles and what a customer sees of themselves ----------------------------------------

    async def test_accounts_carry_a_role_that_can_change(self, uow: UnitOfWorkFactory) -> None:
        user = await add_customer(uow)
        async with uow() as tx:
            admin = await tx.accounts.add("ops@example.com", "hash", NOW, Role.ADMIN)
            await tx.accounts.set_role(user, Role.ADMIN)
            await tx.commit()
        async with uow() as tx:
            promoted = await tx.accounts.get(user)
            found = await tx.accounts.get(admin.user_id)
            missing = await tx.accounts.get(UserId(10_000))
        assert promoted is not None and promoted.role is Role.ADMIN
        assert found is not None and (found.email, found.role) == ("ops@example.com", Role.ADMIN)
        assert missing is None

    async def test_an_overview_reads_the_account_its_balance_and_unexpired_holds(
        self, uow: UnitOfWorkFactory
    ) -> None:
        one, two, three = await add_seats(uow, count=3)
        user = await add_customer(uow)
        await credit(uow, user, 7_000)
        later = await hold(uow, user, one)
        sooner = await hold(uow, user, two, now=NOW - timedelta(minutes=1))
        await hold(uow, user, three, now=NOW - HOLD)  # lapsed at NOW
        async with uow(read_only=True) as tx:
            overview = await tx.accounts.overview(user, NOW)
            nobody = await tx.accounts.overview(UserId(10_000), NOW)
        assert overview is not None and nobody is None
        assert (overview.account.user_id, overview.balance) == (user, 7_000)
        assert [h.reservation_id for h in overview.holds] == [sooner, later]

    # -- a customer's records ----------------------------------------------------------------

    async def test_a_customers_reservations_come_newest_first_by_status_as_of_now(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=4)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        made = [
            await hold(uow, user, seat, now=NOW + timedelta(seconds=n), limit=9)
            for n, seat in enumerate(seats[:3])
        ]
        await hold(uow, other, seats[3])
        async with uow() as tx:
            everything = await tx.reservations.of_customer(user, None, None, 10, NOW + HOLD)
            lapsed = await tx.reservations.of_customer(
                user, ReservationStatus.EXPIRED, None, 10, NOW + HOLD + timedelta(seconds=1)
            )
            held = await tx.reservations.of_customer(
                user, ReservationStatus.HELD, None, 10, NOW + HOLD + timedelta(seconds=1)
            )
        assert [r.reservation_id for r in everything] == made[::-1]
        assert [r.reservation_id for r in lapsed] == made[:2][::-1]  # stored as held still
        assert [r.reservation_id for r in held] == [made[2]]

    async def test_a_page_of_reservations_ends_where_the_cursor_says_while_new_ones_arrive(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=6)
        user = await add_customer(uow)
        # two made at one instant: the id breaks the tie
        made = [await hold(uow, user, seat, now=NOW, limit=9) for seat in seats[:2]]
        made += [
            await hold(uow, user, seat, now=NOW + timedelta(seconds=n), limit=9)
            for n, seat in enumerate(seats[2:4], start=1)
        ]
        async with uow() as tx:
            first = await tx.reservations.of_customer(user, None, None, 2, NOW)
        newer = await hold(uow, user, seats[4], now=NOW + timedelta(minutes=1), limit=9)
        last = first[-1]
        async with uow() as tx:
            second = await tx.reservations.of_customer(
                user, None, Position(last.created_at, last.reservation_id), 2, NOW
            )
        assert [r.reservation_id for r in first] == [made[3], made[2]]
        assert [r.reservation_id for r in second] == [made[1], made[0]]
        assert newer not in {r.reservation_id for r in first + second}

    async def test_transactions_come_newest_first_with_the_balance_each_left(
        self, uow: UnitOfWorkFactory
    ) -> None:
        [seat] = await add_seats(uow, count=1, price=20_000)
        user = await add_customer(uow)
        await credit(uow, user, 30_000)
        sale = await sell(uow, user, await hold(uow, user, seat))
        await credit(uow, user, 5)
        async with uow() as tx:
            first = await tx.wallets.transactions(user, None, 2)
            last = first[-1]
            rest = await tx.wallets.transactions(user, Position(last.created_at, last.entry_id), 2)
        assert sale is not None
        assert [(e.kind, e.signed_amount, e.balance) for e in first + rest] == [
            (LedgerKind.CHARGE, 5, 10_005),
            (LedgerKind.PAYMENT, -20_000, 10_000),
            (LedgerKind.CHARGE, 30_000, 30_000),
        ]

    # -- refunds ------------------------------------------------------------------------------

    async def test_a_refund_frees_the_seat_and_pays_back_whatever_the_cap(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        [seat] = await add_seats(uow, count=1, price=50_000)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        await credit(uow, user, 100_000_000)
        reservation_id = await hold(uow, user, seat)
        sale = await sell(uow, user, reservation_id)
        await credit(uow, user, 50_000)  # back at the cap
        later = NOW + timedelta(minutes=1)
        async with uow() as tx:
            refund = await tx.payments.refund(reservation_id, later)
            await tx.commit()
        assert sale is not None and refund is not None
        assert (refund.reservation.status, refund.amount) == ("refunded", 50_000)
        assert refund.balance == 100_050_000
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 100_050_000
            [view] = await tx.catalog.seat_map(seat.date_id, later)
        assert view.status == "available"
        assert await inspect.payment_for(reservation_id) == sale.payment  # kept on record
        entries = await inspect.ledger(user)
        assert (entries[-1].kind, entries[-1].amount, entries[-1].payment_id) == (
            LedgerKind.REFUND,
            50_000,
            sale.payment.payment_id,
        )
        assert ledger_balance(entries) == entries[-1].balance == 100_050_000
        await hold(uow, other, seat, now=later)

    async def test_only_a_paid_reservation_is_refunded(self, uow: UnitOfWorkFactory) -> None:
        one, two = await add_seats(uow, count=2)
        user = await add_customer(uow)
        held = await hold(uow, user, one)
        cancelled = await hold(uow, user, two)
        async with uow() as tx:
            await tx.reservations.cancel(cancelled, NOW)
            assert await tx.payments.refund(held, NOW) is None
            assert await tx.payments.refund(cancelled, NOW) is None
            assert await tx.payments.refund(ReservationId(10_000), NOW) is None
            await tx.commit()
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 0

    async def test_concurrent_refunds_of_one_reservation_refund_it_once(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        [seat] = await add_seats(uow, count=1, price=50_000)
        user = await add_customer(uow)
        await credit(uow, user, 50_000)
        reservation_id = await hold(uow, user, seat)
        assert await sell(uow, user, reservation_id) is not None

        async def refund() -> object:
            async with uow() as tx:
                done = await tx.payments.refund(reservation_id, NOW)
                await tx.commit()
            return done

        results = await asyncio.gather(*(refund() for _ in range(8)))
        assert sum(r is not None for r in results) == 1
        async with uow() as tx:
            assert await tx.wallets.balance(user) == 50_000
        assert [e.kind for e in await inspect.ledger(user)].count(LedgerKind.REFUND) == 1

    # -- several seats, several holds, one extension (invariants 9 and 12) ------------------

    async def test_seats_held_together_are_all_held_in_the_order_asked_or_none(
        self, uow: UnitOfWorkFactory
    ) -> None:
        one, two, three, four = await add_seats(uow, count=4)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        await hold(uow, other, three)
        with pytest.raises(SeatUnavailable):
            await hold_all(uow, user, [one, two, three])
        async with uow() as tx:
            held = await tx.reservations.hold(user, [four, two, one], NOW, NOW + HOLD, 4)
            await tx.commit()
        assert [r.seat_id for r in held] == [four.seat_id, two.seat_id, one.seat_id]
        async with uow(read_only=True) as tx:
            views = await tx.catalog.seat_map(one.date_id, NOW)
            mine = await tx.reservations.of_customer(user, None, None, 10, NOW)
        assert [v.status for v in views] == ["held", "held", "held", "held"]
        assert sorted(r.reservation_id for r in mine) == sorted(r.reservation_id for r in held)

    async def test_seats_held_together_count_against_the_limit_all_at_once(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=4)
        user = await add_customer(uow)
        await hold(uow, user, seats[0])
        with pytest.raises(HoldLimitReached):
            await hold_all(uow, user, seats[1:], limit=3)
        async with uow(read_only=True) as tx:
            statuses = [v.status for v in await tx.catalog.seat_map(seats[0].date_id, NOW)]
        assert statuses == ["held", "available", "available", "available"]
        async with uow() as tx:
            assert len(await tx.reservations.hold(user, seats[1:3], NOW, NOW + HOLD, 3)) == 2
            await tx.commit()

    async def test_a_basket_past_the_limit_is_refused_as_such_whatever_its_seats(
        self, uow: UnitOfWorkFactory
    ) -> None:
        seats = await add_seats(uow, count=5)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        await hold(uow, other, seats[0])
        for seat in seats[2:]:
            await hold(uow, user, seat)
        for basket in ([seats[0], seats[1]], [seats[1], seats[0]]):  # the taken seat first, last
            with pytest.raises(HoldLimitReached):
                await hold_all(uow, user, basket)

    async def test_holds_paid_together_make_one_payment_of_their_total(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        seats = await add_seats(uow, layout=[*row_of(2, 50_000), *row_of(1, 70_000, row="B")])
        user = await add_customer(uow)
        await credit(uow, user, 200_000)
        ids = [await hold(uow, user, seat) for seat in reversed(seats)]
        async with uow() as tx:
            sale = await tx.payments.pay(ids, user, NOW)
            await tx.commit()
        assert sale is not None and sale.balance == 30_000
        assert [r.reservation_id for r in sale.reservations] == ids
        assert {r.status for r in sale.reservations} == {ReservationStatus.PAID}
        assert (sale.payment.amount, sale.payment.reservation_ids) == (170_000, tuple(ids))
        for reservation_id in ids:
            paid = await inspect.payment_for(reservation_id)
            assert paid is not None and paid.payment_id == sale.payment.payment_id
            assert sorted(paid.reservation_ids) == sorted(ids)
        payments = [e for e in await inspect.ledger(user) if e.kind is LedgerKind.PAYMENT]
        assert [(e.amount, e.payment_id) for e in payments] == [(170_000, sale.payment.payment_id)]

    async def test_holds_paid_together_are_all_paid_or_none(self, uow: UnitOfWorkFactory) -> None:
        seats = await add_seats(uow, count=6)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        await credit(uow, user, 500_000)
        await credit(uow, other, 60_000)  # one seat's price, not two
        mine = [await hold(uow, user, seat) for seat in seats[:3]]
        theirs = [await hold(uow, other, seat) for seat in seats[3:5]]
        async with uow() as tx:
            await tx.reservations.cancel(mine[2], NOW)
            await tx.commit()
        cases = [mine, [mine[0], theirs[0]], [mine[0], ReservationId(10_000)]]
        async with uow() as tx:
            for ids in cases:
                assert await tx.payments.pay(ids, user, NOW) is None
            assert await tx.payments.pay(mine[:2], user, NOW + HOLD) is None  # lapsed
            await tx.commit()
        with pytest.raises(InsufficientBalance):
            await sell_all(uow, other, theirs)
        async with uow() as tx:
            balances = [await tx.wallets.balance(user), await tx.wallets.balance(other)]
            statuses = [v.status for v in await tx.catalog.seat_map(seats[0].date_id, NOW)]
        assert balances == [500_000, 60_000]
        assert statuses == ["held", "held", "available", "held", "held", "available"]

    async def test_each_seat_of_a_payment_is_refunded_once_on_its_own(
        self, uow: UnitOfWorkFactory, inspect: StoreInspector
    ) -> None:
        seats = await add_seats(uow, count=2, price=40_000)
        user = await add_customer(uow)
        await credit(uow, user, 80_000)
        ids = [await hold(uow, user, seat) for seat in seats]
        async with uow() as tx:
            sale = await tx.payments.pay(ids, user, NOW)
            await tx.commit()
        assert sale is not None
        async with uow() as tx:
            first = await tx.payments.refund(ids[0], NOW)
            again = await tx.payments.refund(ids[0], NOW)
            second = await tx.payments.refund(ids[1], NOW)
            await tx.commit()
        assert first is not None and second is not None and again is None
        assert (first.balance, second.balance) == (40_000, 80_000)
        refunds = [e for e in await inspect.ledger(user) if e.kind is LedgerKind.REFUND]
        assert [(e.reservation_id, e.payment_id, e.amount) for e in refunds] == [
            (ids[0], sale.payment.payment_id, 40_000),
            (ids[1], sale.payment.payment_id, 40_000),
        ]

    async def test_a_hold_is_extended_once_while_held_and_by_its_holder_only(
        self, uow: UnitOfWorkFactory
    ) -> None:
        one, two = await add_seats(uow, count=2)
        user, other = await add_customer(uow), await add_customer(uow, "joon@example.com")
        held, lapsing = await hold(uow, user, one), await hold(uow, user, two)
        by = timedelta(minutes=2)
        async with uow() as tx:
            assert await tx.reservations.extend(held, other, NOW, by) is None
            extended = await tx.reservations.extend(held, user, NOW, by)
            assert await tx.reservations.extend(held, user, NOW, by) is None
            assert await tx.reservations.extend(lapsing, user, NOW + HOLD, by) is None
            assert await tx.reservations.extend(ReservationId(10_000), user, NOW, by) is None
            await tx.commit()
        assert extended is not None and extended.extended
        assert extended.expires_at == NOW + HOLD + by
        async with uow(read_only=True) as tx:
            stored = await tx.reservations.get(held)
            [view, _] = await tx.catalog.seat_map(one.date_id, NOW + HOLD)
        assert stored == extended
        assert (view.status, view.held_until) == ("held", NOW + HOLD + by)

    async def test_concurrent_extensions_of_one_hold_extend_it_once(
        self, uow: UnitOfWorkFactory
    ) -> None:
        [seat] = await add_seats(uow, count=1)
        user = await add_customer(uow)
        held = await hold(uow, user, seat)

        async def extend() -> object:
            async with uow() as tx:
                done = await tx.reservations.extend(held, user, NOW, timedelta(minutes=2))
                await tx.commit()
            return done

        results = await asyncio.gather(*(extend() for _ in range(8)))
        assert sum(r is not None for r in results) == 1
        async with uow(read_only=True) as tx:
            stored = await tx.reservations.get(held)
        assert stored is not None and stored.expires_at == NOW + HOLD + timedelta(minutes=2)

    async def test_a_dates_sections_come_in_layout_order(self, uow: UnitOfWorkFactory) -> None:
        layout = [
            NewSeat("Balcony", 2, "K", 0, 1, 30_000),
            NewSeat("VIP", 0, "A", 0, 1, 150_000),
            NewSeat("Stalls", 1, "C", 0, 1, 80_000),
            NewSeat("VIP", 0, "B", 1, 1, 150_000),
        ]
        seats = await add_seats(uow, layout=layout)
        async with uow(read_only=True) as tx:
            assert await tx.catalog.sections(seats[0].date_id) == ["VIP", "Stalls", "Balcony"]
            assert await tx.catalog.sections(DateId(10_000)) == []
