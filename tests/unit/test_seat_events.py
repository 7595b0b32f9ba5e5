"""The live seat map: one feed per date and process, a change read and encoded once for every
listener, slow listeners let go, the feed gone with its last listener."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from adapters.clock import ManualClock
from booking import Venue, add_venue, admitted_customer
from concert_domain import Dependencies, usecases
from concert_domain.catalog import SeatView
from entrypoints.http.seat_events import BACKLOG, SeatFeeds, event, stream

POLL = 0.005


def parsed(message: bytes) -> tuple[str, Any]:
    name, data = message.decode().strip().split("\n")
    return name.removeprefix("event: "), json.loads(data.removeprefix("data: "))


async def next_message(queue: asyncio.Queue[bytes]) -> bytes:
    return await asyncio.wait_for(queue.get(), timeout=5)


@pytest.fixture
async def venue(deps: Dependencies) -> Venue:
    return await add_venue(deps, seats=3)


async def test_a_hold_and_its_lapse_reach_the_listener(
    deps: Dependencies, clock: ManualClock, venue: Venue
) -> None:
    feeds = SeatFeeds(poll=POLL)
    date_id = venue.dates[0].date_id
    mina = await admitted_customer(deps, "mina@example.com")
    async with feeds.listening(date_id, deps) as listener:
        seat = venue.seats[1].seat_id
        await usecases.hold_seat(mina.user_id, mina.queue_token, seat, deps=deps)
        assert parsed(await next_message(listener.queue)) == (
            "seats",
            [{"seat_id": seat, "status": "held"}],
        )
        clock.advance(timedelta(minutes=5))  # the hold lapses, with no write at all
        assert parsed(await next_message(listener.queue)) == (
            "seats",
            [{"seat_id": seat, "status": "available"}],
        )


async def test_one_change_is_one_message_for_a_thousand_listeners(
    deps: Dependencies, venue: Venue
) -> None:
    feeds = SeatFeeds(poll=POLL)
    date_id = venue.dates[0].date_id
    mina = await admitted_customer(deps, "mina@example.com")
    async with contextlib_all(feeds, date_id, deps, 1_000) as listeners:
        await usecases.hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        received = [await next_message(listener.queue) for listener in listeners]
        assert len({id(message) for message in received}) == 1  # the very same bytes
        assert feeds.listeners(date_id) == 1_000
    assert feeds.listeners(date_id) == 0


async def test_a_listener_that_falls_behind_is_let_go(deps: Dependencies, venue: Venue) -> None:
    feeds = SeatFeeds(poll=POLL)
    date_id = venue.dates[0].date_id
    mina = await admitted_customer(deps, "mina@example.com")
    async with feeds.listening(date_id, deps) as slow:
        for n in range(BACKLOG + 1):  # a change a poll, and nobody reads them
            seat = venue.seats[n % 2].seat_id
            held = await usecases.hold_seat(mina.user_id, mina.queue_token, seat, deps=deps)
            await _wait_for(lambda n=n: slow.queue.qsize() > n or feeds.listeners(date_id) == 0)
            await usecases.cancel_reservation(mina.user_id, held.reservation_id, deps=deps)
            if feeds.listeners(date_id) == 0:
                break
        assert feeds.listeners(date_id) == 0
        messages = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        assert messages[-1] == b"" and len(messages) <= BACKLOG + 1


async def test_a_stream_starts_with_a_snapshot_then_the_changes(
    deps: Dependencies, venue: Venue
) -> None:
    feeds = SeatFeeds(poll=POLL)
    date_id = venue.dates[0].date_id
    mina = await admitted_customer(deps, "mina@example.com")

    def snapshot(seats: Any) -> bytes:
        views: list[SeatView] = list(seats)
        return event("snapshot", [[v.seat.seat_id, v.status.value] for v in views])

    events = stream(feeds, date_id, deps, snapshot)
    first = parsed(await anext(events))
    assert first == ("snapshot", [[s.seat_id, "available"] for s in venue.seats])
    await usecases.hold_seat(mina.user_id, mina.queue_token, venue.seats[2].seat_id, deps=deps)
    assert parsed(await asyncio.wait_for(anext(events), 5))[0] == "seats"
    await events.aclose()
    assert feeds.listeners(date_id) == 0


class contextlib_all:
    """``count`` listeners of one feed at once."""

    def __init__(self, feeds: SeatFeeds, date_id: Any, deps: Dependencies, count: int) -> None:
        self._managers = [feeds.listening(date_id, deps) for _ in range(count)]

    async def __aenter__(self) -> list[Any]:
        return [await manager.__aenter__() for manager in self._managers]

    async def __aexit__(self, *exc: object) -> None:
        for manager in self._managers:
            await manager.__aexit__(None, None, None)


async def _wait_for(condition: Any) -> None:
    for _ in range(1_000):
        if condition():
            return
        await asyncio.sleep(POLL)
    raise AssertionError("never happened")
