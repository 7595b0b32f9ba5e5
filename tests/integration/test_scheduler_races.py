"""Any number of schedulers may tick at once: four scheduler processes over 10,000 lapsed holds
and a full line release each hold once, drop every timer and never admit past capacity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

import races
import services
from adapters.redis import Keys, RedisHoldTimers, RedisLink, RedisQueueStore
from adapters.sql import SqlDatabase
from concert_domain.ids import ConcertId, SeatId, UserId
from concert_domain.queue import QueuePolicy
from contracts.database import HOLD, NOW

pytestmark = pytest.mark.integration

HOLDS = 10_000
CUSTOMERS = 2_500  # four holds each: the limit
CAPACITY = 1_000
WAITING = 2_000


async def seed_lapsed_holds(database: SqlDatabase) -> list[tuple[int, int, int]]:
    """10,000 held reservations, all lapsed by NOW + HOLD; returns (concert, seat, user)."""
    async with database.engine.begin() as connection:
        for sql in (
            "INSERT INTO accounts (email, password_hash, created_at) "
            f"SELECT 'u' || n || '@example.com', 'x', now() FROM generate_series(1, {CUSTOMERS}) n",
            "INSERT INTO concerts (title) VALUES ('sweep')",
            "INSERT INTO concert_dates (concert_id, day, starts_at) "
            "VALUES (1, DATE '2027-01-01', TIMESTAMPTZ '2027-01-01 19:00+09')",
            "INSERT INTO seats (date_id, concert_id, number, price) "
            f"SELECT 1, 1, n, 50000 FROM generate_series(1, {HOLDS}) n",
        ):
            await connection.execute(text(sql))
        await connection.execute(
            text(
                "INSERT INTO reservations (user_id, seat_id, date_id, concert_id, number, price,"
                " status, created_at, expires_at) "
                "SELECT 1 + (seat_id - 1) % :customers, seat_id, 1, 1, number, price, 'held',"
                " :created, :expires FROM seats"
            ),
            {"customers": CUSTOMERS, "created": NOW, "expires": NOW + HOLD},
        )
        rows = await connection.execute(
            text("SELECT concert_id, seat_id, user_id FROM reservations")
        )
        return [(int(c), int(s), int(u)) for c, s, u in rows]


async def test_four_schedulers_release_ten_thousand_lapsed_holds_each_exactly_once(
    postgres_database: SqlDatabase, redis_keys: tuple[RedisLink, Keys], redis_url: str
) -> None:
    redis, keys = redis_keys
    holds = await seed_lapsed_holds(postgres_database)
    timers = RedisHoldTimers(redis, keys)
    for concert, seat, user in holds:
        taken = await timers.acquire(
            ConcertId(concert), SeatId(seat), f"user:{user}", NOW, NOW + HOLD
        )
        assert taken
    line = RedisQueueStore(redis, keys)
    policy = QueuePolicy(capacity=CAPACITY, active_seconds=600)
    for user in range(1, CAPACITY + WAITING + 1):
        await line.join(UserId(user), NOW, policy)

    later = NOW + timedelta(minutes=10)
    url = postgres_database.engine.url.render_as_string(hide_password=False)
    per_process = races.run_in_processes(
        races.scheduler_ticks, [(url, redis_url, keys.prefix, later, CAPACITY) for _ in range(4)]
    )

    swept = sum(h for ticks in per_process for h, _, _ in ticks)
    expired_tokens = sum(t for ticks in per_process for _, t, _ in ticks)
    admitted = sum(a for ticks in per_process for _, _, a in ticks)
    print(
        f"\nfour schedulers: holds swept per process {[sum(t[0] for t in p) for p in per_process]}"
    )
    assert swept == HOLDS
    assert expired_tokens == CAPACITY
    assert admitted == CAPACITY
    async with postgres_database.engine.connect() as connection:
        result = await connection.execute(
            text("SELECT status, count(*) FROM reservations GROUP BY status")
        )
        statuses = {str(status): int(count) for status, count in result.all()}
    assert statuses == {"expired": HOLDS}
    assert await services.redis_keys_matching(redis, f"{keys.prefix}:{{concert:*") == []
    assert await redis.call("ZCARD", keys.active) == CAPACITY
    assert await redis.call("ZCARD", keys.waiting) == WAITING - CAPACITY
