"""Every Lua script on a real three-node Redis Cluster: the Redis contract through redis-py's
cluster client, which sends each command to the node that serves its first key's slot and
follows MOVED and ASK. A node refuses a ``#!lua`` script any key outside the slot of the
script's KEYS, so a script that reached past its slot would fail here.

Our own `RedisLink` speaks to one server and follows no MOVED, so the service itself still
runs on one Redis: this proves the scripts ready for a cluster, not the link."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

import services
from adapters.redis import (
    Keys,
    RedisAttemptLimiter,
    RedisHoldTimers,
    RedisLink,
    RedisQueueStore,
    RedisSeatMapVersions,
)
from adapters.redis.link import Arg, RedisAddress
from concert_domain.ids import DateId
from contracts.line import (
    AttemptLimiterContract,
    HoldTimersContract,
    QueueStoreContract,
    SeatMapVersionsContract,
)
from redis_cluster import redis_cluster


class ClusterLink(RedisLink):
    """The adapters' link, its commands sent through redis-py's cluster client."""

    def __init__(self, port: int) -> None:
        super().__init__(RedisAddress("127.0.0.1", port))
        # RESP2, as the link speaks: a script's false is a nil reply, not a RESP3 boolean
        self.cluster = RedisCluster(host="127.0.0.1", port=port, decode_responses=True, protocol=2)

    async def call(self, *command: Arg) -> Any:
        return await self.cluster.execute_command(*command)

    async def aclose(self) -> None:
        await self.cluster.aclose()


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    """A three-node cluster for this module; without redis-server or redis-cli the tests skip
    loudly (fail under CI=true)."""
    with contextlib.ExitStack() as stack:
        try:
            ports = stack.enter_context(redis_cluster(3))
        except services.ServiceMissing as e:
            services.missing(str(e))
        yield ports


@pytest.fixture
async def redis_keys(cluster_ports: list[int]) -> AsyncIterator[tuple[RedisLink, Keys]]:
    """A link to the cluster, and a prefix of this test's own (the cluster is thrown away)."""
    link = ClusterLink(cluster_ports[0])
    # learn the slots before the first commands: redis-py 8.1, learning them as many commands
    # go at once, sends some on connections not yet open (AttributeError: '_writer')
    await link.cluster.initialize()
    yield link, Keys(prefix=f"concert-test-{secrets.token_hex(6)}")
    await link.aclose()


class TestTheCluster:
    async def test_has_three_nodes_and_the_keys_spread_over_them(
        self, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        link, keys = redis_keys
        assert isinstance(link, ClusterLink)
        await link.call("PING")  # the client learns the slots
        nodes = {
            link.cluster.get_node_from_key(key)
            for key in [keys.waiting, *(keys.seat_map_version(DateId(n)) for n in range(30))]
        }
        assert len(nodes) == 3 and None not in nodes

    async def test_refuses_a_script_a_key_outside_its_slot(
        self, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        link, keys = redis_keys
        reaching = link.script("#!lua\nreturn redis.call('GET', ARGV[1])")
        with pytest.raises(ResponseError, match="Script attempted to access"):
            await reaching(keys=[keys.waiting], args=[keys.seat_map_version(DateId(1))])


class TestClusterQueueStore(QueueStoreContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[RedisLink, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)


class TestClusterHoldTimers(HoldTimersContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[RedisLink, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)

    @pytest.fixture
    def timers(self, redis_keys: tuple[RedisLink, Keys]) -> RedisHoldTimers:
        return RedisHoldTimers(*redis_keys)


class TestClusterAttemptLimiter(AttemptLimiterContract):
    @pytest.fixture
    def limiter(self, redis_keys: tuple[RedisLink, Keys]) -> RedisAttemptLimiter:
        return RedisAttemptLimiter(*redis_keys)


class TestClusterSeatMapVersions(SeatMapVersionsContract):
    @pytest.fixture
    def versions(self, redis_keys: tuple[RedisLink, Keys]) -> RedisSeatMapVersions:
        return RedisSeatMapVersions(*redis_keys)
