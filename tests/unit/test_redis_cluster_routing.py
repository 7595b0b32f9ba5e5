"""How `RedisClusterLink` picks a node: the slot of a key and of a command, the cluster URL, and
what it does with each of a node's redirections, against nodes that answer as told (no
server; tests/integration/test_redis_cluster.py has the real cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import exceptions as errors

from adapters.redis import RedisClusterLink, RedisLink, connect
from adapters.redis import cluster as cluster_module
from adapters.redis.client import translated
from adapters.redis.cluster import cluster_address, command_slot, key_slot
from adapters.redis.link import Arg, RedisAddress
from concert_domain.errors import StoreUnavailable
from entrypoints.settings import SettingsError, load_settings
from loop_clock import LoopClock


class TestKeySlot:
    @pytest.mark.parametrize(
        ("key", "slot"),
        [
            ("123456789", 12739),  # the cluster specification's CRC16 check value
            ("foo", 12182),  # CLUSTER KEYSLOT's documented answers
            ("somekey", 11058),
            ("hello", 866),
            ("", 0),
        ],
    )
    def test_is_crc16_of_the_key_modulo_16384(self, key: str, slot: int) -> None:
        assert key_slot(key) == slot
        assert key_slot(key.encode()) == slot

    def test_of_keys_with_one_hash_tag_is_the_tags(self) -> None:
        assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
        assert key_slot("{user1000}.following") == key_slot("user1000")
        assert key_slot("concert:{line}:waiting") == key_slot("line")

    @pytest.mark.parametrize(
        ("key", "hashed"),
        [
            ("foo{}{bar}", "foo{}{bar}"),  # an empty first tag: the whole key
            ("foo{{bar}}zap", "{bar"),  # from the first { to the first } after it
            ("foo{bar}{zap}", "bar"),  # the first tag only
            ("foo{bar", "foo{bar"),  # no closing brace: the whole key
            ("foo}bar{", "foo}bar{"),
        ],
    )
    def test_follows_the_specifications_hash_tag_rule(self, key: str, hashed: str) -> None:
        assert key_slot(key) == key_slot(hashed)

    def test_of_a_number_is_that_of_its_digits(self) -> None:
        assert key_slot(123456789) == 12739


class TestCommandSlot:
    def test_is_the_first_keys(self) -> None:
        assert command_slot(("GET", "foo")) == 12182
        assert command_slot(("set", b"foo", "bar")) == 12182
        assert command_slot(("ZCOUNT", "{x}:active", "(1", "+inf")) == key_slot("x")

    def test_of_a_script_is_its_first_keys_after_numkeys(self) -> None:
        assert command_slot(("EVALSHA", "ab" * 20, 2, "foo", "bar", "arg")) == 12182
        assert command_slot(("EVAL", "return 1", "1", "hello")) == 866
        assert command_slot(("evalsha", "ab" * 20, 0, "foo")) is None

    @pytest.mark.parametrize(
        "command",
        [("PING",), ("SCRIPT", "LOAD", "return 1"), ("INFO", "memory"), ("CLUSTER", "SLOTS")],
    )
    def test_is_none_without_keys(self, command: tuple[Arg, ...]) -> None:
        assert command_slot(command) is None


class TestTheUrl:
    def test_gives_the_seed_node_and_its_options(self) -> None:
        assert cluster_address("redis+cluster://:pw@cache:7000/0") == RedisAddress(
            "cache", 7000, password="pw"
        )
        assert cluster_address("rediss+cluster://cache").tls

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("redis+cluster://cache:7000/1", "only database 0"),
            ("redis+cluster://cache?socket_timeout=3", "no option socket_timeout"),
            ("redis://cache", "not a redis\\+cluster://"),
        ],
    )
    def test_refuses_what_a_cluster_cannot_be(self, url: str, problem: str) -> None:
        with pytest.raises(ValueError, match=problem):
            cluster_address(url)

    def test_picks_the_cluster_link(self) -> None:
        assert isinstance(connect("redis+cluster://cache:7000"), RedisClusterLink)
        assert type(connect("redis://cache:7000")) is RedisLink

    def test_is_checked_with_the_settings_in_one_line(self, tmp_path: Path) -> None:
        url = "redis+cluster://cache:7000"
        assert load_settings({"CONCERT_REDIS_URL": url}, tmp_path).redis_url == url
        with pytest.raises(SettingsError) as error:
            load_settings({"CONCERT_REDIS_URL": "redis+cluster://cache/2"}, tmp_path)
        assert str(error.value) == ("CONCERT_REDIS_URL: a Redis Cluster has only database 0, not 2")


Answer = Callable[[tuple[Arg, ...], bool], Any]


Ranges = list[list[Any]]  # CLUSTER SLOTS's answer: first slot, last slot, the master


class Node(RedisLink):
    """A node that answers each command as ``answer`` says (an exception: raised; a future:
    awaited), ``CLUSTER SLOTS`` with ``ranges``, and keeps what it was sent, and whether after
    ``ASKING``; closes as a link does, when no command waits on it."""

    def __init__(self, answer: Answer, ranges: Ranges | None = None) -> None:
        super().__init__(RedisAddress("10.0.0.1", 1))
        self.answer = answer
        self.ranges = ranges if ranges is not None else [[0, 16383, ["10.0.0.1", 1, "a"]]]
        self.sent: list[tuple[tuple[Arg, ...], bool]] = []
        self.waiting = 0  # commands awaiting their answer
        self.awaited = asyncio.Event()  # set at the first
        self.map_answers = asyncio.Event()
        self.map_answers.set()
        self.closed = False

    async def call(self, *command: Arg) -> Any:
        return await self._answered(command, asking=False)

    async def call_after(self, first: Any, *command: Arg) -> Any:
        assert tuple(first) == ("ASKING",)
        return await self._answered(command, asking=True)

    async def _answered(self, command: tuple[Arg, ...], *, asking: bool) -> Any:
        self.sent.append((command, asking))
        if command == ("CLUSTER", "SLOTS"):
            return await self.map_given()
        reply = self.answer(command, asking)
        if isinstance(reply, asyncio.Future):
            self.waiting += 1
            self.awaited.set()
            try:
                reply = await reply
            finally:
                self.waiting -= 1
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def map_given(self) -> Ranges:
        """``ranges``, once ``map_answers`` is set (at once, unless a test clears it)."""
        await self.map_answers.wait()
        return self.ranges

    def close_if_idle(self) -> bool:
        self.closed = self.closed or not self.waiting
        return self.closed


def _cluster(**nodes: Answer) -> tuple[RedisClusterLink, dict[str, Node]]:
    """A link whose seed, 10.0.0.1:1 (node ``a``), serves every slot but slot 0, which the
    next node (``b``: 10.0.0.2:1), if any, serves; the others only answer redirections. Every
    node gives the same map (a test may change it)."""
    link = RedisClusterLink(RedisAddress("10.0.0.1", 1))
    ranges = [[0, 16383, ["10.0.0.1", 1, "a"]]]
    if "b" in nodes:
        ranges = [[1, 16383, ["10.0.0.1", 1, "a"]], [0, 0, ["10.0.0.2", 1, "b"]]]
    made = {name: Node(answer, ranges) for name, answer in nodes.items()}
    for name, node in made.items():
        link._nodes[f"10.0.0.{ord(name) - ord('a') + 1}:1"] = node
    return link, made


def _error(message: str) -> errors.ResponseError:
    return errors.ResponseError(message)


async def test_a_moved_command_goes_at_once_to_the_named_node_and_the_map_is_learnt_after() -> None:
    link, nodes = _cluster(a=lambda c, _: _error("MOVED 12182 10.0.0.2:1"), b=lambda c, _: "x")
    assert await link.call("GET", "foo") == "x"
    assert nodes["b"].sent == [(("GET", "foo"), False)]
    assert link.node(12182) == "10.0.0.2:1"  # from the reply, before any map
    assert link.maps_learnt == 1
    await _learning(link)
    assert [c for c, _ in nodes["a"].sent].count(("CLUSTER", "SLOTS")) == 2
    assert link.maps_learnt == 2


async def test_a_moved_command_does_not_wait_for_a_map_that_does_not_come() -> None:
    link, nodes = _cluster(a=lambda c, _: _error("MOVED 12182 10.0.0.2:1"), b=lambda c, _: "x")
    await link._learnt()  # the map, learnt
    nodes["a"].map_answers.clear()  # the seed stops answering CLUSTER SLOTS
    assert await link.call("GET", "foo") == "x"
    assert link._learning is not None and not link._learning.done()
    await link.aclose()


async def _learning(link: RedisClusterLink) -> None:
    """Wait for the map being learnt in the background, if any."""
    if link._learning is not None:
        await link._learning


async def test_an_asked_command_goes_with_asking_and_leaves_the_map() -> None:
    link, nodes = _cluster(
        a=lambda c, _: _error("ASK 12182 10.0.0.2:1"),
        b=lambda c, asking: "x" if asking else _error("MOVED 12182 10.0.0.1:1"),
    )
    assert await link.call("GET", "foo") == "x"
    assert nodes["b"].sent == [(("GET", "foo"), True)]
    assert link.maps_learnt == 1


async def test_a_script_unknown_where_it_was_asked_is_loaded_there() -> None:
    def b(command: tuple[Arg, ...], asking: bool) -> Any:
        assert asking
        return errors.NoScriptError("NOSCRIPT No matching script") if command[0] == "EVALSHA" else 7

    link, nodes = _cluster(a=lambda c, _: _error("ASK 12182 10.0.0.2:1"), b=b)
    script = link.script("return 7")
    assert await script(["foo"], [1]) == 7
    assert nodes["b"].sent == [
        (("EVALSHA", script.sha, 1, "foo", 1), True),
        (("EVAL", "return 7", 1, "foo", 1), True),
    ]


async def test_a_command_without_keys_goes_to_a_master() -> None:
    link, nodes = _cluster(a=lambda c, _: "PONG")
    assert await link.call("PING") == "PONG"
    await link.ping()
    assert nodes["a"].sent[-1] == (("PING",), False)


async def test_redirections_are_bounded() -> None:
    link, nodes = _cluster(
        a=lambda c, _: _error("MOVED 12182 10.0.0.2:1"),
        b=lambda c, _: _error("MOVED 12182 10.0.0.1:1"),
    )
    with pytest.raises(StoreUnavailable), translated():
        await link.call("GET", "foo")
    sent = [c for c, _ in nodes["a"].sent + nodes["b"].sent if c[0] == "GET"]
    assert len(sent) == 1 + cluster_module.REDIRECTS


async def test_try_again_is_waited_out_a_few_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "FIRST_RETRY_PAUSE", 0.0)
    answers = iter([_error("TRYAGAIN Multiple keys request during rehashing of slot")] * 2)
    link, _ = _cluster(a=lambda c, _: next(answers, "ok"))
    assert await link.call("MGET", "{t}a", "{t}b") == "ok"
    assert link.redirected == {"TRYAGAIN": 2}

    link, _ = _cluster(a=lambda c, _: _error("TRYAGAIN Multiple keys"))
    with pytest.raises(StoreUnavailable), translated():
        await link.call("MGET", "{t}a", "{t}b")
    assert link.redirected == {"TRYAGAIN": cluster_module.RETRIES + 1}


async def test_a_cluster_down_is_an_unavailable_store() -> None:
    link, _ = _cluster(a=lambda c, _: _error("CLUSTERDOWN The cluster is down"))
    with pytest.raises(StoreUnavailable), translated():
        await link.call("GET", "foo")


async def test_other_error_replies_are_the_commands_own() -> None:
    link, _ = _cluster(a=lambda c, _: _error("WRONGTYPE Operation against a key"))
    with pytest.raises(errors.ResponseError, match="WRONGTYPE"):
        await link.call("INCR", "foo")


async def test_an_unreachable_node_is_an_unavailable_store_and_the_map_is_learnt_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link, _ = _cluster(a=lambda c, _: errors.ConnectionError("gone"))
    with pytest.raises(StoreUnavailable), translated():
        await link.call("GET", "foo")
    assert link.maps_learnt == 1  # not again within a second
    monkeypatch.setattr(cluster_module, "RELEARN_AFTER_FAILURE", 0.0)
    with pytest.raises(StoreUnavailable), translated():
        await link.call("GET", "foo")
    await asyncio.sleep(0)  # learning in the background
    assert link.maps_learnt == 2
    await link.aclose()


async def test_a_master_that_fails_a_ping_has_the_map_learnt_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """So that readiness, which pings every master, follows a failover by itself."""
    link, _ = _cluster(a=lambda c, _: errors.ConnectionError("gone"))
    monkeypatch.setattr(cluster_module, "RELEARN_AFTER_FAILURE", 0.0)
    with pytest.raises(StoreUnavailable), translated():
        await link.ping()
    await asyncio.sleep(0)  # learning in the background
    assert link.maps_learnt == 2
    await link.aclose()


async def test_a_seed_not_in_cluster_mode_is_an_unavailable_store() -> None:
    link = RedisClusterLink(RedisAddress("10.0.0.1", 1))
    link._nodes["10.0.0.1:1"] = NotACluster(lambda c, _: "x")
    with pytest.raises(errors.ConnectionError, match="no slot map"):  # then StoreUnavailable
        await link.call("GET", "foo")


class NotACluster(Node):
    async def _answered(self, command: tuple[Arg, ...], *, asking: bool) -> Any:
        raise errors.ResponseError("ERR This instance has cluster support disabled")


async def test_a_closed_link_stays_closed() -> None:
    link, _ = _cluster(a=lambda c, _: "x")
    assert await link.call("GET", "foo") == "x"
    await link.aclose()
    with pytest.raises(errors.ConnectionError, match="closed"):  # then StoreUnavailable
        await link.call("GET", "foo")
    link._relearn_soon()
    assert link._learning is None and link._nodes == {}


async def test_a_redirected_command_has_the_links_timeout_in_all() -> None:
    """However the time goes (here a node that never answers, as far as the cluster link
    knows), a redirected command fails within `REDIRECTED_TIMEOUTS` times the timeout."""
    silent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    link, nodes = _cluster(a=lambda c, _: _error("MOVED 12182 10.0.0.2:1"), b=lambda c, _: silent)
    with LoopClock(asyncio.get_running_loop()) as clock:
        asked = asyncio.create_task(link.call("GET", "foo"))
        await nodes["b"].awaited.wait()
        clock.shift(2.0 * cluster_module.REDIRECTED_TIMEOUTS - 0.01)  # 2 s: the timeout
        await asyncio.sleep(0)
        assert not asked.done()
        clock.shift(0.02)
        with pytest.raises(StoreUnavailable) as failed, translated():
            await asyncio.wait_for(asked, 1.0)
    assert "within 2.0 s" in str(failed.value.__cause__)
    assert silent.cancelled()  # the caller stopped waiting for it


async def test_a_node_that_left_the_map_has_its_connection_closed_once_idle() -> None:
    pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    link, nodes = _cluster(a=lambda c, _: "x", b=lambda c, _: pending)
    assert await link.call("GET", "foo") == "x"
    assert link.node(0) == "10.0.0.2:1"
    on_b = asyncio.create_task(link.call("GET", ""))  # slot 0
    await nodes["b"].awaited.wait()
    nodes["a"].ranges[:] = [[0, 16383, ["10.0.0.1", 1, "a"]]]  # b's slot moved to a
    await link._learnt(again=True)
    assert link.node(0) == "10.0.0.1:1"
    assert "10.0.0.2:1" in link._nodes and not nodes["b"].closed  # a command waits on it
    pending.set_result("y")
    assert await on_b == "y"
    await link._learnt(again=True)
    assert [node.closed for node in nodes.values()] == [False, True]  # b only
    asked = [c for c, _ in nodes["a"].sent + nodes["b"].sent].count(("CLUSTER", "SLOTS"))
    await link._learnt(again=True)  # the seed answers: b, gone, is not asked
    assert [c for c, _ in nodes["a"].sent + nodes["b"].sent].count(("CLUSTER", "SLOTS")) == (
        asked + 1
    )
    await link.aclose()
