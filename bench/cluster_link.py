"""Per-command cost of RedisClusterLink vs RedisLink, same cluster node, same run.

    .venv/bin/python bench/cluster_link.py [--count 50000] [--rounds 3]

Starts a throwaway 3-node cluster (tests/redis_cluster.py); RedisLink goes straight to the node
serving the line's slot (no redirection ever), RedisClusterLink routes by slot. Workload: the
TICKET script (a waiting customer's ticket) by EVALSHA, 1 in flight and 64 in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from adapters.redis import Keys, RedisClusterLink, RedisLink, RedisQueueStore, scripts
from adapters.redis.cluster import key_slot
from adapters.redis.link import RedisAddress
from concert_domain.ids import UserId
from concert_domain.queue import QueuePolicy
from redis_cluster import redis_cluster

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def timed(
    link: RedisLink, keys: Keys, token: str, count: int, workers: int
) -> tuple[float, float]:
    """Wall and client CPU time per command, in µs, of ``count`` TICKET reads."""
    ticket = link.script(scripts.TICKET)
    args: list[str | int] = [token, int(NOW.timestamp() * 1000), 60_000]
    k = [keys.tickets, keys.waiting, keys.admitted]
    counter = itertools.count()

    async def worker() -> None:
        while next(counter) < count:
            await ticket(keys=k, args=args)

    await ticket(keys=k, args=args)  # loaded, connected
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return (time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6


async def main(count: int, rounds: int) -> None:
    """Both links, alternating, ``rounds`` times at 1 and at 64 in flight; medians."""
    with redis_cluster(3) as nodes:
        cluster = RedisClusterLink(RedisAddress("127.0.0.1", nodes.ports[0]))
        keys = Keys(prefix=f"bench-{secrets.token_hex(4)}")
        queue = RedisQueueStore(cluster, keys)
        policy = QueuePolicy(capacity=10, active_seconds=600)
        tickets = [(await queue.join(UserId(n), NOW, policy))[0] for n in range(100)]
        token = tickets[-1].token  # waiting
        await cluster.ping()
        where = cluster.node(key_slot(keys.waiting))
        host, _, port = str(where).rpartition(":")
        single = RedisLink(RedisAddress(host, int(port)))
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for workers in (1, 64):
                for name, link in (("RedisLink", single), ("RedisClusterLink", cluster)):
                    results.setdefault((name, workers), []).append(
                        await timed(link, keys, str(token), count, workers)
                    )
        for workers in (1, 64):
            row: dict[str, tuple[float, float]] = {}
            for name in ("RedisLink", "RedisClusterLink"):
                runs = results[(name, workers)]
                wall = statistics.median(w for w, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                row[name] = (wall, cpu)
                each = ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs)
                print(
                    f"{workers:>2} in flight  {name:<17} wall {wall:7.2f} µs/cmd  "
                    f"client CPU {cpu:7.2f} µs/cmd  (runs: {each})"
                )
            (sw, sc), (cw, cc) = row["RedisLink"], row["RedisClusterLink"]
            print(
                f"{workers:>2} in flight  ratio cluster/single: wall {cw / sw:.3f}, "
                f"client CPU {cc / sc:.3f}"
            )
        print(f"maps learnt {cluster.maps_learnt}, redirections {dict(cluster.redirected)}")
        await single.aclose()
        await cluster.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.count, options.rounds))
