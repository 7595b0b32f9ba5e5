"""The service's own `RedisClusterLink` on a real three-node Redis Cluster: the whole Redis
contract through it, every Lua script included (a node refuses a ``#!lua`` script any key
outside the slot of its KEYS, so a script that reached past its slot would fail here), and the
cluster's redirections: a slot moved under the link (``MOVED``), a slot on the move (``ASK``),
and a script whose keys the move has split (``TRYAGAIN``); and a master killed, its replica
taking over. The tests that move slots or kill a node have a cluster of their own, thrown
away afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from redis.exceptions import ResponseError

import services
from adapters.redis import (
    Keys,
    RedisClusterLink,
    RedisLink,
    RedisQueueStore,
    connect,
)
from adapters.redis.client import translated
from adapters.redis.cluster import key_slot
from adapters.redis.link import RedisAddress
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import DateId, UserId
from concert_domain.queue import QueuePolicy, TicketStatus
from contracts.on_redis import (
    OnRedisAttemptLimiter,
    OnRedisHoldTimers,
    OnRedisQueueStore,
    OnRedisSeatMapVersions,
)
from redis_cluster import redis_cluster

pytestmark = pytest.mark.integration


def _cluster() -> Iterator[list[int]]:
    """A three-node cluster; without redis-server or redis-cli the tests skip loudly (fail
    under CI=true)."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(redis_cluster(3))
        except services.ServiceMissing as e:
            services.missing(str(e))
        yield cluster.ports


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    yield from _cluster()


@pytest.fixture
async def redis_keys(cluster_ports: list[int]) -> AsyncIterator[tuple[RedisLink, Keys]]:
    """The service's link to the cluster, by its URL, and a prefix of this test's own (the
    cluster is thrown away)."""
    link = connect(f"redis+cluster://127.0.0.1:{cluster_ports[0]}")
    assert isinstance(link, RedisClusterLink)
    yield link, Keys(prefix=f"concert-test-{secrets.token_hex(6)}")
    await link.aclose()


class TestTheCluster:
    async def test_has_three_nodes_and_the_keys_spread_over_them(
        self, redis_keys: tuple[RedisLink, Keys], cluster_ports: list[int]
    ) -> None:
        link, keys = redis_keys
        assert isinstance(link, RedisClusterLink)
        await link.ping()  # learns the slots, and every master answers
        names = [keys.waiting, *(keys.seat_map_version(DateId(n)) for n in range(30))]
        nodes = {link.node(key_slot(name)) for name in names}
        assert nodes == {f"127.0.0.1:{port}" for port in cluster_ports}
        await asyncio.gather(*(link.call("SET", name, name) for name in names))
        assert await asyncio.gather(*(link.call("GET", name) for name in names)) == names
        assert link.connections_opened == 3

    async def test_computes_the_slots_the_nodes_do(
        self, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        link, keys = redis_keys
        names = [
            keys.waiting,
            keys.hold_attempts(UserId(1)),
            keys.attempts("a@example.com"),
            "{}x",
            "a{",
        ]
        names += [f"{keys.prefix}:{n}" for n in range(50)]
        answers = await asyncio.gather(*(link.call("CLUSTER", "KEYSLOT", n) for n in names))
        assert answers == [key_slot(name) for name in names]

    async def test_refuses_a_script_a_key_outside_its_slot(
        self, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        link, keys = redis_keys
        reaching = link.script("#!lua\nreturn redis.call('GET', ARGV[1])")
        with pytest.raises(ResponseError, match="Script attempted to access"):
            await reaching(keys=[keys.waiting], args=[keys.seat_map_version(DateId(1))])

    async def test_an_unreachable_cluster_is_an_unavailable_store(self) -> None:
        link = connect(f"redis+cluster://127.0.0.1:{services.free_port()}")
        with pytest.raises(StoreUnavailable), translated():
            await link.call("GET", "anything")
        await link.aclose()


class TestClusterQueueStore(OnRedisQueueStore):
    """The contract on the cluster."""


class TestClusterHoldTimers(OnRedisHoldTimers):
    """The contract on the cluster."""


class TestClusterAttemptLimiter(OnRedisAttemptLimiter):
    """The contract on the cluster."""


class TestClusterSeatMapVersions(OnRedisSeatMapVersions):
    """The contract on the cluster."""


class Nodes:
    """Direct links to each node of a cluster, to move slots as ``redis-cli --cluster
    reshard`` does."""

    def __init__(self, ports: list[int]) -> None:
        self.links = {port: RedisLink(RedisAddress("127.0.0.1", port)) for port in ports}

    async def id(self, port: int) -> str:
        return str(await self.links[port].call("CLUSTER", "MYID"))

    async def start_moving(self, slot: int, source: int, target: int) -> None:
        """The slot on the move: ``target`` imports it, ``source`` migrates it."""
        await self.links[target].call(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", await self.id(source)
        )
        await self.links[source].call(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", await self.id(target)
        )

    async def migrate(self, source: int, target: int, *keys: str) -> None:
        await self.links[source].call("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)

    async def finish_moving(self, slot: int, source: int, target: int) -> None:
        """Whatever keys are left go, and every node learns that ``target`` serves the slot."""
        while left := await self.links[source].call("CLUSTER", "GETKEYSINSLOT", slot, 100):
            await self.migrate(source, target, *left)
        owner = await self.id(target)
        for port in [target, source, *(p for p in self.links if p not in (source, target))]:
            await self.links[port].call("CLUSTER", "SETSLOT", slot, "NODE", owner)

    async def move(self, slot: int, source: int, target: int) -> None:
        await self.start_moving(slot, source, target)
        await self.finish_moving(slot, source, target)

    async def aclose(self) -> None:
        for link in self.links.values():
            await link.aclose()


@pytest.fixture(scope="class")
def moving_ports() -> Iterator[list[int]]:
    """A cluster whose slots the tests move: its own, thrown away after them."""
    yield from _cluster()


class TestRedirections:
    @pytest.fixture
    async def moving(
        self, moving_ports: list[int]
    ) -> AsyncIterator[tuple[RedisClusterLink, Nodes, str]]:
        """The link, the nodes, and a hash tag of this test's own."""
        link = RedisClusterLink.from_url(f"redis+cluster://127.0.0.1:{moving_ports[0]}")
        nodes = Nodes(moving_ports)
        yield link, nodes, f"{{moving-{secrets.token_hex(6)}}}"
        await link.aclose()
        await nodes.aclose()

    @staticmethod
    async def _placed(link: RedisClusterLink, tag: str) -> tuple[int, int, int]:
        """The tag's slot, the port of the node serving it, and that of another node."""
        slot = key_slot(tag)
        await link.ping()
        source = int(str(link.node(slot)).rpartition(":")[2])
        target = next(port for port in (await _ports(link)) if port != source)
        return slot, source, target

    async def test_a_slot_moved_under_the_link_is_followed(
        self, moving: tuple[RedisClusterLink, Nodes, str]
    ) -> None:
        link, nodes, tag = moving
        slot, source, target = await self._placed(link, tag)
        await link.call("SET", f"{tag}:a", "before")
        learnt = link.maps_learnt
        await nodes.move(slot, source, target)  # the link's map is stale now
        read = link.script("return redis.call('GET', KEYS[1])")
        assert await read([f"{tag}:a"]) == "before"  # MOVED, then NOSCRIPT on the new node
        assert link.node(slot) == f"127.0.0.1:{target}"  # from the reply, at once
        if link._learning is not None:  # and the whole map learnt again, in the background
            await link._learning
        assert link.node(slot) == f"127.0.0.1:{target}"
        assert link.maps_learnt == learnt + 1
        assert link.redirected == {"MOVED": 1}
        assert await nodes.links[target].call("SCRIPT", "EXISTS", read.sha) == [1]
        assert await link.call("GET", f"{tag}:a") == "before"  # no redirection now
        assert link.maps_learnt == learnt + 1

    async def test_a_slot_on_the_move_is_asked_for_where_the_key_went(
        self, moving: tuple[RedisClusterLink, Nodes, str]
    ) -> None:
        link, nodes, tag = moving
        slot, source, target = await self._placed(link, tag)
        await link.call("SET", f"{tag}:gone", "moved")
        await link.call("SET", f"{tag}:stays", "here")
        learnt = link.maps_learnt
        await nodes.start_moving(slot, source, target)
        await nodes.migrate(source, target, f"{tag}:gone")
        with pytest.raises(ResponseError, match="MOVED"):  # the target, if not asked
            await nodes.links[target].call("GET", f"{tag}:gone")
        assert await link.call("GET", f"{tag}:gone") == "moved"  # ASK, then ASKING + GET
        assert await link.call("GET", f"{tag}:stays") == "here"  # from the source
        assert await link.call("SET", f"{tag}:new", "made") == "OK"  # ASK: a new key, there
        assert await nodes.links[target].call("CLUSTER", "COUNTKEYSINSLOT", slot) == 2
        read = link.script("return redis.call('GET', KEYS[1])")
        assert await read([f"{tag}:gone"]) == "moved"  # ASK, then NOSCRIPT there: EVAL there
        assert link.redirected == {"ASK": 3}
        assert link.maps_learnt == learnt  # ASK leaves the map as it was
        assert link.node(slot) == f"127.0.0.1:{source}"

    async def _split(self, link: RedisClusterLink, nodes: Nodes, tag: str) -> tuple[int, int, int]:
        """The tag's slot half moved: ``{tag}:gone`` (1) on the target, ``{tag}:stays`` (2)
        still on the source; the slot, the source's and the target's ports."""
        slot, source, target = await self._placed(link, tag)
        await link.call("SET", f"{tag}:gone", "1")
        await link.call("SET", f"{tag}:stays", "2")
        await nodes.start_moving(slot, source, target)
        await nodes.migrate(source, target, f"{tag}:gone")
        return slot, source, target

    async def test_a_script_whose_keys_the_move_split_waits_for_it(
        self, moving: tuple[RedisClusterLink, Nodes, str]
    ) -> None:
        link, nodes, tag = moving
        slot, source, target = await self._split(link, nodes, tag)
        both = link.script("return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])")

        async def finish_soon() -> None:
            await asyncio.sleep(0.05)
            await nodes.finish_moving(slot, source, target)

        finishing = asyncio.create_task(finish_soon())
        # TRYAGAIN from the source until the move ends, then MOVED to the target
        assert await both([f"{tag}:gone", f"{tag}:stays"]) == "12"
        await finishing
        # the move over, the source sends a last straggler on (unless a MOVED already did;
        # an ASK could, were the retry to fall between the key's move and the slot's)
        assert await link.call("GET", f"{tag}:stays") == "2"
        assert link.node(slot) == f"127.0.0.1:{target}"
        assert link.redirected["TRYAGAIN"] >= 1 and link.redirected["MOVED"] >= 1

    async def test_a_split_that_lasts_fails_as_an_unavailable_store(
        self, moving: tuple[RedisClusterLink, Nodes, str]
    ) -> None:
        link, nodes, tag = moving
        slot, source, target = await self._split(link, nodes, tag)
        with pytest.raises(StoreUnavailable), translated():
            await link.call("MGET", f"{tag}:gone", f"{tag}:stays")
        assert link.redirected == {"TRYAGAIN": 6}
        await nodes.finish_moving(slot, source, target)


class TestFailover:
    # a master is deemed failed after this long without an answer; the replica's election
    # follows within a second or two
    NODE_TIMEOUT_MS = 1000
    # how long the line may be unavailable after its master is killed: the node timeout, the
    # election, and the link's next map (learnt at most once a second)
    RECOVERY_SECONDS = 15.0

    async def test_a_killed_masters_replica_takes_over_and_the_line_is_served_again(
        self,
    ) -> None:
        """Three masters with a replica each; the master of the line, which is also the link's
        seed, is killed once its replica has every write. The line answers 503 for a while
        (as a store that cannot be reached), then again from the replica with nothing lost:
        who waits, in what order, and who is admitted; readiness follows."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                cluster = stack.enter_context(
                    redis_cluster(3, replicas=1, node_timeout_ms=self.NODE_TIMEOUT_MS)
                )
            except services.ServiceMissing as e:
                services.missing(str(e))
            keys = Keys(prefix="concert-failover")
            slot = key_slot(keys.waiting)
            probe = RedisClusterLink.from_url(f"redis+cluster://127.0.0.1:{cluster.ports[0]}")
            await probe.ping()
            master = int(str(probe.node(slot)).rpartition(":")[2])
            await probe.aclose()
            link = RedisClusterLink.from_url(f"redis+cluster://127.0.0.1:{master}")
            stack.push_async_callback(link.aclose)
            queue = RedisQueueStore(link, keys)
            now, policy = datetime(2026, 12, 1, 12, tzinfo=UTC), QueuePolicy(capacity=1)
            tickets = [(await queue.join(UserId(n), now, policy))[0] for n in (1, 2, 3)]
            assert [t.status for t in tickets] == [TicketStatus.ACTIVE] + [TicketStatus.WAITING] * 2
            direct = RedisLink(RedisAddress("127.0.0.1", master))
            assert await direct.call("WAIT", 1, 5000) == 1  # the replica has every write
            await direct.aclose()

            cluster.kill(master)
            loop = asyncio.get_running_loop()
            killed_at, refused = loop.time(), 0
            while True:  # bounded by RECOVERY_SECONDS
                try:
                    second = await queue.get(tickets[1].token, now)
                    break
                except StoreUnavailable:
                    refused += 1
                    assert loop.time() - killed_at < self.RECOVERY_SECONDS, "never recovered"
                    await asyncio.sleep(0.1)
            recovered = loop.time() - killed_at
            print(f"\nline served again {recovered:.1f} s after its master was killed")

            assert refused > 0  # the kill was felt: no command went through it unnoticed
            assert link.node(slot) not in (None, f"127.0.0.1:{master}")
            assert second is not None and second.position == 1
            third = await queue.get(tickets[2].token, now)
            assert third is not None and third.position == 2
            first = await queue.get(tickets[0].token, now)
            assert first is not None and first.status is TicketStatus.ACTIVE
            assert (await queue.sizes(now))[:2] == (2, 1)
            await queue.expire(tickets[0].token, now)  # the first leaves: the second goes in
            assert await queue.admit(now, policy) == 1
            second = await queue.get(tickets[1].token, now)
            assert second is not None and second.status is TicketStatus.ACTIVE
            await link.ping()  # readiness: every master answers, the new one included


async def _ports(link: RedisClusterLink) -> list[int]:
    slots = await link.call("CLUSTER", "SLOTS")
    return sorted({int(master[1]) for _first, _last, master, *_ in slots})
