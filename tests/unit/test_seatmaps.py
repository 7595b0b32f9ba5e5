"""The seat-map read model on its own: when a kept map is served, and when the database is read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from concert_domain.catalog import Seat, SeatStatus, SeatView
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import ConcertId, DateId, SeatId
from concert_domain.seatmaps import SeatMapCache

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DATE = DateId(1)
SEAT = Seat(SeatId(1), DATE, ConcertId(1), 1, 50_000)


class Database:
    """Stands in for the read: counts calls and answers with whatever ``shown`` is now."""

    def __init__(self) -> None:
        self.reads = 0
        self.shown = [SeatView(SEAT, SeatStatus.AVAILABLE)]
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def read(self) -> list[SeatView]:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise StoreUnavailable("the database cannot be reached")
        return list(self.shown)


@pytest.fixture
def db() -> Database:
    return Database()


async def test_a_kept_map_is_served_while_the_stamp_is_the_same(db: Database) -> None:
    cache = SeatMapCache()
    first = await cache.get(DATE, "a", NOW, db.read)
    again = await cache.get(DATE, "a", NOW + timedelta(seconds=1), db.read)
    assert again is first
    assert db.reads == 1


async def test_a_new_stamp_reads_the_database_again(db: Database) -> None:
    cache = SeatMapCache()
    await cache.get(DATE, "a", NOW, db.read)
    db.shown = [SeatView(SEAT, SeatStatus.SOLD)]
    seats = await cache.get(DATE, "b", NOW, db.read)
    assert [view.status for view in seats] == ["sold"]
    assert db.reads == 2


async def test_a_held_seat_is_read_again_from_the_moment_its_hold_lapses(db: Database) -> None:
    cache = SeatMapCache(max_age=timedelta(hours=1))
    lapses = NOW + timedelta(minutes=5)
    db.shown = [SeatView(SEAT, SeatStatus.HELD, lapses)]
    await cache.get(DATE, "a", NOW, db.read)
    await cache.get(DATE, "a", lapses - timedelta(milliseconds=1), db.read)
    assert db.reads == 1
    db.shown = [SeatView(SEAT, SeatStatus.AVAILABLE)]
    seats = await cache.get(DATE, "a", lapses, db.read)
    assert [view.status for view in seats] == ["available"]
    assert db.reads == 2


async def test_a_lost_renewal_is_late_by_at_most_max_age(db: Database) -> None:
    cache = SeatMapCache(max_age=timedelta(seconds=2))
    await cache.get(DATE, "a", NOW, db.read)
    await cache.get(DATE, "a", NOW + timedelta(seconds=2), db.read)
    assert db.reads == 2


async def test_a_clock_earlier_than_the_read_reads_again(db: Database) -> None:
    cache = SeatMapCache()
    await cache.get(DATE, "a", NOW, db.read)
    await cache.get(DATE, "a", NOW - timedelta(milliseconds=1), db.read)
    assert db.reads == 2


async def test_misses_at_once_share_one_read(db: Database) -> None:
    cache = SeatMapCache()
    db.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(cache.get(DATE, "a", NOW, db.read)) for _ in range(20)]
    await asyncio.sleep(0)
    db.gate.set()
    found = await asyncio.gather(*waiting)
    assert db.reads == 1
    assert all(seats is found[0] for seats in found)


async def test_a_request_that_gives_up_leaves_the_shared_read_to_the_others(
    db: Database,
) -> None:
    cache = SeatMapCache()
    db.gate = asyncio.Event()
    first = asyncio.ensure_future(cache.get(DATE, "a", NOW, db.read))
    second = asyncio.ensure_future(cache.get(DATE, "a", NOW, db.read))
    await asyncio.sleep(0)
    first.cancel()
    db.gate.set()
    assert [view.status for view in await second] == ["available"]
    assert first.cancelled()
    assert db.reads == 1


async def test_a_waiter_past_a_lapse_on_the_shared_read_reads_for_itself(db: Database) -> None:
    cache = SeatMapCache()
    lapses = NOW + timedelta(seconds=1)
    db.shown = [SeatView(SEAT, SeatStatus.HELD, lapses)]
    db.gate = asyncio.Event()
    early = asyncio.ensure_future(cache.get(DATE, "a", NOW, db.read))
    late = asyncio.ensure_future(cache.get(DATE, "a", lapses, db.read))
    await asyncio.sleep(0)
    db.gate.set()
    await early
    await late
    assert db.reads == 2  # the shared read judged the hold at NOW; the late one reads at lapses


async def test_a_failed_read_fails_every_waiter_and_is_not_kept(db: Database) -> None:
    cache = SeatMapCache()
    db.fail = True
    db.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(cache.get(DATE, "a", NOW, db.read)) for _ in range(3)]
    await asyncio.sleep(0)
    db.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(result, StoreUnavailable) for result in results)
    db.fail, db.gate = False, None
    assert [view.status for view in await cache.get(DATE, "a", NOW, db.read)] == ["available"]
    assert db.reads == 2


async def test_past_its_limit_the_cache_forgets_and_reads_again(db: Database) -> None:
    cache = SeatMapCache(limit=2)
    for date in (DateId(1), DateId(2), DateId(3)):
        await cache.get(date, "a", NOW, db.read)
    await cache.get(DateId(1), "a", NOW, db.read)
    assert db.reads == 4
