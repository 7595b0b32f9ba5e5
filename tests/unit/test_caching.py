"""The caching adapters on their own: what each keeps, when it reads through, and when a
write makes it forget."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from adapters.caching import CatalogCache, SeatMapReadModel, VerifiedTokens
from adapters.caching.wrapping import WrappedCatalog, WrappedUnitOfWork
from adapters.clock import ManualClock
from adapters.memory import InMemoryDatabase, InMemorySeatMapVersions
from adapters.security import JwtAccessTokens
from booking import START
from concert_domain.accounts import Role
from concert_domain.catalog import ConcertDate, NewSeat, Seat, SeatView
from concert_domain.errors import StoreUnavailable, Unauthorized
from concert_domain.ids import DateId, SeatId, UserId
from concert_domain.ports import CatalogRepository, UnitOfWork, UnitOfWorkFactory
from contracts.database import add_customer, add_seats, row_of

NOW = START
HOLD = timedelta(minutes=5)


class CountedReads:
    """A unit-of-work factory over an in-memory database that counts the reads that reach
    it, and can hold them at a gate or fail them."""

    def __init__(self, database: InMemoryDatabase) -> None:
        self.database = database
        self.reads: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        uow = WrappedUnitOfWork(self.database.unit_of_work(read_only=read_only))
        uow.catalog = _Counting(uow.inner.catalog, self)
        return uow


class _Counting(WrappedCatalog):
    def __init__(self, inner: CatalogRepository, counted: CountedReads) -> None:
        super().__init__(inner)
        self._counted = counted

    async def _reached(self, what: str) -> None:
        self._counted.reads.append(what)
        if self._counted.gate is not None:
            await self._counted.gate.wait()
        if self._counted.fail:
            raise StoreUnavailable("the database cannot be reached")

    async def seat_map(
        self, date_id: DateId, now: datetime, section: str | None = None
    ) -> Sequence[SeatView]:
        await self._reached("seat_map" if section is None else f"seat_map {section}")
        return await self.inner.seat_map(date_id, now, section)

    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        await self._reached("seat")
        return await self.inner.get_seat(seat_id)

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        await self._reached("date")
        return await self.inner.get_date(date_id)


@pytest.fixture
def counted() -> CountedReads:
    return CountedReads(InMemoryDatabase())


@pytest.fixture
def model(counted: CountedReads) -> SeatMapReadModel:
    return SeatMapReadModel(counted, InMemorySeatMapVersions(), max_age=timedelta(hours=1))


async def statuses(
    model: SeatMapReadModel, date_id: DateId, now: datetime = NOW, section: str | None = None
) -> list[str]:
    async with model(read_only=True) as uow:
        return [view.status.value for view in await uow.catalog.seat_map(date_id, now, section)]


async def fresh_seats(
    counted: CountedReads, count: int, layout: list[NewSeat] | None = None
) -> list[Seat]:
    """Seats of a new date, the reads that made them left uncounted."""
    seats = await add_seats(counted, count=count, layout=layout)
    counted.reads.clear()
    return seats


async def hold_through(uow_factory: UnitOfWorkFactory, user: UserId, seat: Seat) -> None:
    async with uow_factory() as uow:
        await uow.reservations.hold(user, [seat], NOW, NOW + HOLD, 4)
        await uow.commit()


class TestSeatMapReadModel:
    async def test_each_section_is_kept_apart_and_a_change_renews_them_all(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        layout = [*row_of(2, section="VIP"), *row_of(1, section="Floor")]
        layout[2] = NewSeat("Floor", 1, "A", 0, 1, 50_000)
        vip, _, floor = await fresh_seats(counted, count=0, layout=layout)
        user = await add_customer(counted.database.unit_of_work)
        for _ in range(2):
            assert await statuses(model, vip.date_id, section="VIP") == ["available"] * 2
            assert await statuses(model, vip.date_id, section="Floor") == ["available"]
            assert len(await statuses(model, vip.date_id)) == 3
        assert counted.reads == ["seat_map VIP", "seat_map Floor", "seat_map"]
        await hold_through(model, user, floor)
        assert await statuses(model, vip.date_id, section="Floor") == ["held"]
        assert await statuses(model, vip.date_id, section="VIP") == ["available"] * 2
        assert counted.reads[3:] == ["seat_map Floor", "seat_map VIP"]

    async def test_a_kept_map_is_served_while_nothing_changes(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        [seat] = await fresh_seats(counted, count=1)
        assert await statuses(model, seat.date_id) == ["available"]
        assert await statuses(model, seat.date_id, NOW + timedelta(seconds=1)) == ["available"]
        assert counted.reads.count("seat_map") == 1

    async def test_a_change_through_the_model_is_seen_by_the_next_read(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        [seat] = await fresh_seats(counted, count=1)
        user = await add_customer(counted)
        assert await statuses(model, seat.date_id) == ["available"]
        await hold_through(model, user, seat)
        assert await statuses(model, seat.date_id) == ["held"]
        assert counted.reads.count("seat_map") == 2

    async def test_a_change_rolled_back_changes_no_version(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        [seat] = await fresh_seats(counted, count=1)
        user = await add_customer(counted)
        await statuses(model, seat.date_id)
        async with model() as uow:
            await uow.reservations.hold(user, [seat], NOW, NOW + HOLD, 4)  # never committed
        assert await statuses(model, seat.date_id) == ["available"]
        assert counted.reads.count("seat_map") == 1

    async def test_a_held_seat_is_read_again_from_the_moment_its_hold_lapses(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        [seat] = await fresh_seats(counted, count=1)
        await hold_through(model, await add_customer(counted), seat)
        lapses = NOW + HOLD
        assert await statuses(model, seat.date_id, lapses - timedelta(milliseconds=1)) == ["held"]
        assert await statuses(model, seat.date_id, lapses - timedelta(microseconds=1)) == ["held"]
        assert counted.reads.count("seat_map") == 1
        assert await statuses(model, seat.date_id, lapses) == ["available"]
        assert counted.reads.count("seat_map") == 2

    async def test_a_change_the_model_did_not_see_is_late_by_at_most_max_age(
        self, counted: CountedReads
    ) -> None:
        model = SeatMapReadModel(counted, InMemorySeatMapVersions(), max_age=timedelta(seconds=2))
        [seat] = await fresh_seats(counted, count=1)
        assert await statuses(model, seat.date_id) == ["available"]
        await hold_through(counted, await add_customer(counted), seat)  # around the model
        assert await statuses(model, seat.date_id, NOW + timedelta(seconds=1)) == ["available"]
        assert await statuses(model, seat.date_id, NOW + timedelta(seconds=2)) == ["held"]

    async def test_a_clock_earlier_than_the_read_reads_again(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        [seat] = await fresh_seats(counted, count=1)
        await statuses(model, seat.date_id)
        await statuses(model, seat.date_id, NOW - timedelta(milliseconds=1))
        assert counted.reads.count("seat_map") == 2

    async def test_misses_at_once_share_one_read_and_one_that_gives_up_leaves_it_to_the_rest(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        [seat] = await fresh_seats(counted, count=1)
        counted.gate = asyncio.Event()
        waiting = [asyncio.ensure_future(statuses(model, seat.date_id)) for _ in range(20)]
        await asyncio.sleep(0.01)
        waiting[0].cancel()
        counted.gate.set()
        found = await asyncio.gather(*waiting[1:])
        assert found == [["available"]] * 19
        assert counted.reads.count("seat_map") == 1

    async def test_a_failed_read_fails_every_waiter_and_is_not_kept(
        self, model: SeatMapReadModel, counted: CountedReads
    ) -> None:
        [seat] = await fresh_seats(counted, count=1)
        counted.fail, counted.gate = True, asyncio.Event()
        waiting = [asyncio.ensure_future(statuses(model, seat.date_id)) for _ in range(3)]
        await asyncio.sleep(0.01)
        counted.gate.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(result, StoreUnavailable) for result in results)
        counted.fail, counted.gate = False, None
        assert await statuses(model, seat.date_id) == ["available"]
        assert counted.reads.count("seat_map") == 2

    async def test_past_its_limit_the_model_forgets_the_least_recently_used_date(
        self, counted: CountedReads
    ) -> None:
        model = SeatMapReadModel(counted, InMemorySeatMapVersions(), limit=2)
        dates = [(await fresh_seats(counted, count=1))[0].date_id for _ in range(3)]
        for date_id in (dates[0], dates[1], dates[0], dates[2]):  # dates[1] is the oldest used
            await statuses(model, date_id)
        assert counted.reads.count("seat_map") == 3
        await statuses(model, dates[0])
        assert counted.reads.count("seat_map") == 3
        await statuses(model, dates[1])
        assert counted.reads.count("seat_map") == 4


class TestCatalogCache:
    async def test_seats_and_dates_are_read_once_by_read_only_units_of_work(
        self, counted: CountedReads
    ) -> None:
        cache = CatalogCache(counted)
        [seat] = await fresh_seats(counted, count=1)
        for _ in range(3):
            async with cache(read_only=True) as uow:
                assert await uow.catalog.get_seat(seat.seat_id) == seat
                assert await uow.catalog.get_date(seat.date_id) is not None
        assert sorted(counted.reads) == ["date", "seat", "seat_map"]  # the date's seats came too

    async def test_what_a_writing_unit_of_work_reads_is_not_kept(
        self, counted: CountedReads
    ) -> None:
        cache = CatalogCache(counted)
        async with cache() as uow:
            concert = await uow.catalog.add_concert("Never")
            added = await uow.catalog.add_date(
                concert.concert_id, NOW.date(), NOW + HOLD, NOW, NOW + HOLD
            )
            assert await uow.catalog.get_date(added.date_id) == added  # rolled back below
        async with cache(read_only=True) as uow:
            assert await uow.catalog.get_date(added.date_id) is None

    async def test_a_cold_process_met_by_many_lookups_reads_each_date_once(
        self, counted: CountedReads
    ) -> None:
        cache = CatalogCache(counted)
        seats = await fresh_seats(counted, count=5)

        async def look_up(seat: Seat) -> Seat | None:
            async with cache(read_only=True) as uow:
                return await uow.catalog.get_seat(seat.seat_id)

        wanted = [seats[0]] * 10 + seats
        assert await asyncio.gather(*(look_up(seat) for seat in wanted)) == wanted
        assert counted.reads.count("seat_map") == 1
        assert counted.reads.count("seat") <= 5  # those asked before the date's seats came

    async def test_past_its_limit_it_forgets_the_least_recently_used(
        self, counted: CountedReads
    ) -> None:
        cache = CatalogCache(counted, limit=2)
        dates = [(await fresh_seats(counted, count=1))[0].date_id for _ in range(3)]
        for date_id in (dates[0], dates[1], dates[0], dates[2], dates[0], dates[1]):
            async with cache(read_only=True) as uow:
                await uow.catalog.get_date(date_id)
        assert counted.reads == ["date"] * 4  # dates[1] was forgotten when dates[2] came


class TestVerifiedTokens:
    def test_a_kept_token_is_still_judged_for_expiry_and_only_a_genuine_one_is_kept(
        self,
    ) -> None:
        clock = ManualClock(START)
        inner = JwtAccessTokens(b"s" * 32, lifetime_seconds=60)
        tokens = VerifiedTokens(inner, limit=10)
        token = tokens.issue(UserId(7), Role.CUSTOMER, clock.now()).access_token
        assert [tokens.verify(token).at(clock.now()) for _ in range(2)] == [7, 7]
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        for _ in range(2):
            with pytest.raises(Unauthorized):
                tokens.verify(forged)
        clock.advance(timedelta(seconds=60))
        with pytest.raises(Unauthorized, match="expired"):
            tokens.verify(token).at(clock.now())
