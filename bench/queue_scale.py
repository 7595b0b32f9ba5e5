"""The waiting line at scale: 100,000 customers join one Redis line.

    python bench/queue_scale.py [--customers 100000] [--workers 64]

Reports joins per second, the time of one admission step, the time to read a waiting
customer's position, and Redis memory per waiting customer; each speed also as a ratio to a
bare Redis round trip (PING) measured in the same run with the same concurrency. Runs on a
throwaway redis-server (or CONCERT_TEST_REDIS_URL, under a prefix deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import services
from adapters.redis import Keys, RedisLink, RedisQueueStore, connect
from concert_domain.ids import QueueToken, UserId
from concert_domain.queue import QueuePolicy

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = QueuePolicy(capacity=1_000, active_seconds=600)


async def rate(workers: int, count: int, operation: Callable[[int], Awaitable[object]]) -> float:
    """Operations per second for ``count`` operations spread over ``workers`` coroutines."""
    counter = itertools.count()

    async def worker() -> None:
        while (n := next(counter)) < count:
            await operation(n)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return count / (time.perf_counter() - start)


async def used_memory(redis: RedisLink) -> int:
    info = await redis.call("INFO", "memory")
    return int(info.split("used_memory:", 1)[1].split()[0])


async def measure(url: str, customers: int, workers: int) -> None:
    redis = connect(url)
    keys = Keys(prefix=f"bench-{secrets.token_hex(4)}")
    line = RedisQueueStore(redis, keys)
    used_before = await used_memory(redis)
    ping = await rate(workers, 20_000, lambda _: redis.ping())

    tokens: list[QueueToken] = [QueueToken("")] * customers

    async def join(n: int) -> None:
        ticket, _ = await line.join(UserId(n + 1), NOW, POLICY)
        tokens[n] = ticket.token

    joins = await rate(workers, customers, join)
    used_after = await used_memory(redis)
    waiting = await redis.call("ZCARD", keys.waiting)

    sample = [tokens[i] for i in range(POLICY.capacity, customers, max(customers // 2_000, 1))]
    gets = await rate(workers, len(sample), lambda n: line.get(sample[n], NOW))
    latencies = []
    for token in sample[:500]:
        start = time.perf_counter()
        await line.get(token, NOW)
        latencies.append(time.perf_counter() - start)

    later = NOW + timedelta(seconds=POLICY.active_seconds)
    start = time.perf_counter()
    admitted = await line.admit(later, POLICY)
    admit_ms = (time.perf_counter() - start) * 1000

    print(f"customers {customers:,}, {workers} concurrent clients, capacity {POLICY.capacity:,}")
    print(f"bare PING          {ping:9,.0f} /s")
    print(f"join               {joins:9,.0f} /s   = {joins / ping:.2f} of PING")
    print(
        f"position (GET)     {gets:9,.0f} /s   = {gets / ping:.2f} of PING;"
        f" one alone: median {statistics.median(latencies) * 1e6:.0f} µs"
    )
    print(f"admission step     {admit_ms:9.1f} ms  to admit {admitted:,} of {waiting:,} waiting")
    print(
        f"memory             {(used_after - used_before) / customers:9.0f} bytes per customer"
        f" ({(used_after - used_before) / 2**20:.1f} MiB in all)"
    )

    for key in await services.redis_keys_matching(redis, f"{keys.prefix}:*"):
        await redis.call("DEL", key)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=64)
    args = parser.parse_args()
    with services.redis_server() as url:
        asyncio.run(measure(url, args.customers, args.workers))


if __name__ == "__main__":
    main()
