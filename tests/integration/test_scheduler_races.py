"""Any number of schedulers may tick at once: four scheduler processes over 10,000 lapsed holds
and a full line release each hold once, drop every timer and never admit past capacity."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

import races
import services
from adapters.redis import Keys, RedisLink, RedisQueueStore
from adapters.sql import SqlDatabase
from concert_domain.ids import SeatId, UserId
from concert_domain.queue import QueuePolicy
from contracts.database import HOLD, NOW
from inspection import sync_engine

pytestmark = pytest.mark.integration

HOLDS = 10_000
CUSTOMERS = 2_500  # four holds each: the limit
CAPACITY = 1_000
WAITING = 2_000


async def seed_lapsed_holds(database: SqlDatabase) -> list[tuple[int, int]]:
    """10,000 held reservations, all lapsed by NOW + HOLD; returns (seat, user)."""
    with sync_engine(str(database.url)).begin() as connection:
        for sql in (
            "INSERT INTO accounts (email, password_hash, created_at) "
            f"SELECT 'u' || n || '@example.com', 'x', now() FROM generate_series(1, {CUSTOMERS}) n",
            "INSERT INTO concerts (title) VALUES ('sweep')",
            "INSERT INTO concert_dates (concert_id, day, starts_at, sale_opens_at, sale_closes_at) "
            "VALUES (1, DATE '2027-01-01', TIMESTAMPTZ '2027-01-01 19:00+09', "
            "TIMESTAMPTZ '2026-01-01 00:00Z', TIMESTAMPTZ '2027-01-01 19:00+09')",
            "INSERT INTO seats (date_id, concert_id, section, section_order, row_label, row_order,"
            " number, price) "
            f"SELECT 1, 1, 'Floor', 0, 'A', 0, n, 50000 FROM generate_series(1, {HOLDS}) n",
        ):
            connection.execute(text(sql))
        connection.execute(
            text(
                "INSERT INTO reservations (user_id, seat_id, date_id, concert_id, section,"
                " row_label, number, price, status, created_at, expires_at) "
                "SELECT 1 + (seat_id - 1) % :customers, seat_id, 1, 1, section, row_label, number,"
                " price, 'held', :created, :expires FROM seats"
            ),
            {"customers": CUSTOMERS, "created": NOW, "expires": NOW + HOLD},
        )
        rows = connection.execute(text("SELECT seat_id, user_id FROM reservations"))
        return [(int(s), int(u)) for s, u in rows]


async def test_four_schedulers_release_ten_thousand_lapsed_holds_each_exactly_once(
    postgres_database: SqlDatabase, redis_keys: tuple[RedisLink, Keys], redis_url: str
) -> None:
    redis, keys = redis_keys
    holds = await seed_lapsed_holds(postgres_database)
    # each hold's timer as RedisHoldTimers leaves one: its owner and expiry, living past NOW
    expires = int((NOW + HOLD).timestamp() * 1000)
    for batch in range(0, len(holds), 1_000):
        await asyncio.gather(
            *(
                redis.call("SET", keys.hold(SeatId(seat)), f"{user}|{expires}", "EX", 600)
                for seat, user in holds[batch : batch + 1_000]
            )
        )
    line = RedisQueueStore(redis, keys)
    policy = QueuePolicy(capacity=CAPACITY, active_seconds=600)
    for user in range(1, CAPACITY + WAITING + 1):
        await line.join(UserId(user), NOW, policy)

    later = NOW + timedelta(minutes=10)
    url = str(postgres_database.url)
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
    with sync_engine(url).connect() as connection:
        result = connection.execute(
            text("SELECT status, count(*) FROM reservations GROUP BY status")
        )
        statuses = {str(status): int(count) for status, count in result.all()}
    assert statuses == {"expired": HOLDS}
    timers = keys.hold(SeatId(0)).removesuffix("0") + "*"
    assert await services.redis_keys_matching(redis, timers) == []
    assert await redis.call("ZCARD", keys.active) == CAPACITY
    assert await redis.call("ZCARD", keys.waiting) == WAITING - CAPACITY
