"""Redis dies mid-run and comes back empty: the service recovers by itself and sells nothing
twice, because the database decides every sale.

Always on a throwaway redis-server of its own: a shared one is never killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from sqlalchemy import text

import services
from adapters.clock import ManualClock
from adapters.redis import Keys, RedisLink, connect
from adapters.sql import SqlDatabase
from booking import PASSWORD, START, cheap_hasher
from concert_domain import Dependencies, usecases
from concert_domain.errors import SeatUnavailable, StoreUnavailable
from concert_domain.ids import QueueToken, UserId
from contracts.database import add_seats
from entrypoints.wiring import build_dependencies
from inspection import sync_engine

pytestmark = pytest.mark.integration
T = TypeVar("T")


@pytest.fixture
def own_redis() -> Iterator[services.RedisServer]:
    try:
        server = services.RedisServer()
    except services.ServiceMissing as e:
        services.missing(str(e))
    server.start()
    yield server
    server.remove()


@pytest.fixture
async def client(own_redis: services.RedisServer) -> AsyncIterator[RedisLink]:
    redis = connect(own_redis.url)
    yield redis
    await redis.aclose()


async def eventually(attempt: Callable[[], Awaitable[T]], seconds: float = 10.0) -> T:
    """The first success of ``attempt`` while Redis comes back; bounded in time."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await attempt()
        except StoreUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def join(deps: Dependencies, user: UserId) -> QueueToken:
    status, _ = await usecases.join_queue(user, deps=deps)
    return status.token


async def test_the_service_recovers_from_a_redis_restart_and_sells_nothing_twice(
    postgres_database: SqlDatabase, own_redis: services.RedisServer, client: RedisLink
) -> None:
    deps = build_dependencies(
        uow=postgres_database.unit_of_work,
        redis=client,
        redis_keys=Keys("fault"),
        clock=ManualClock(START),
        passwords=cheap_hasher(),
        jwt_secret=b"f" * 32,
    )
    seats = await add_seats(postgres_database.unit_of_work, count=4, price=10_000)
    users = [
        (await usecases.sign_up(f"p{n}@example.com", PASSWORD, deps=deps)).user_id for n in range(3)
    ]
    mina, joon, seo = users
    for user in users:
        await usecases.charge_wallet(user, 50_000, deps=deps)
    token = await join(deps, mina)
    sold = await usecases.hold_seat(mina, token, seats[0].seat_id, deps=deps)
    await usecases.pay(mina, token, sold.reservation_id, deps=deps)
    token = await join(deps, joon)
    held = await usecases.hold_seat(joon, token, seats[1].seat_id, deps=deps)

    own_redis.kill()
    with pytest.raises(StoreUnavailable):
        await usecases.join_queue(seo, deps=deps)
    with pytest.raises(StoreUnavailable):
        await usecases.hold_seat(joon, token, seats[2].seat_id, deps=deps)
    assert await usecases.get_balance(mina, deps=deps) == 40_000  # the database still answers

    own_redis.start()  # back on the same port, empty: the line and the timers are gone
    seo_token = await eventually(lambda: join(deps, seo))
    for seat in (seats[0], seats[1]):  # sold, and held: no timer guards them any more
        with pytest.raises(SeatUnavailable):
            await usecases.hold_seat(seo, seo_token, seat.seat_id, deps=deps)
    bought = await usecases.hold_seat(seo, seo_token, seats[2].seat_id, deps=deps)
    await usecases.pay(seo, seo_token, bought.reservation_id, deps=deps)
    joon_token = await join(deps, joon)  # joon lost his place in line, not his hold
    await usecases.pay(joon, joon_token, held.reservation_id, deps=deps)

    with sync_engine(str(postgres_database.url)).connect() as connection:
        live_per_seat = connection.execute(
            text(
                "SELECT seat_id, count(*) FROM reservations WHERE status IN ('held', 'paid') "
                "GROUP BY seat_id HAVING count(*) > 1"
            )
        ).all()
        paid = connection.execute(text("SELECT count(*) FROM payments")).scalar()
    assert live_per_seat == []
    assert paid == 3
    assert [await usecases.get_balance(u, deps=deps) for u in users] == [40_000] * 3
