"""The one connection every request shares: each caller gets its own reply, whatever the others
do, and the link outlives a lost connection and a server that stops answering."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import exceptions

import services
from adapters.redis import Keys, RedisLink, connect
from adapters.redis.link import RedisAddress
from loop_clock import LoopClock

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis() -> Iterator[services.RedisServer]:
    """A throwaway server of this test's own, with a password: one we may also kill."""
    try:
        server = services.RedisServer("--requirepass", "open sesame")
    except services.ServiceMissing as e:
        services.missing(str(e))
    server.start()
    try:
        yield server
    finally:
        server.remove()


async def test_every_caller_gets_its_own_reply_among_hundreds_in_flight(
    redis_keys: tuple[RedisLink, Keys],
) -> None:
    link, keys = redis_keys
    names = [f"{keys.prefix}:n{n}" for n in range(500)]
    await asyncio.gather(*(link.call("SET", name, n) for n, name in enumerate(names)))
    replies = await asyncio.gather(*(link.call("GET", name) for name in names))
    assert replies == [str(n) for n in range(500)]


async def test_an_error_reply_fails_its_own_command_only(
    redis_keys: tuple[RedisLink, Keys],
) -> None:
    link, keys = redis_keys
    text, number = f"{keys.prefix}:text", f"{keys.prefix}:number"
    await link.call("SET", text, "words")
    results = await asyncio.gather(
        link.call("INCR", number), link.call("INCR", text), link.call("INCR", number),
        return_exceptions=True,
    )  # fmt: skip
    assert results[0] == 1
    assert isinstance(results[1], exceptions.ResponseError)
    assert results[2] == 2


async def test_a_reply_that_is_not_utf8_fails_its_own_command_only(
    redis_keys: tuple[RedisLink, Keys],
) -> None:
    link, keys = redis_keys
    binary, text = f"{keys.prefix}:binary", f"{keys.prefix}:text"
    await link.call("SET", binary, b"\xff\xfe")
    await link.call("SET", text, "caf\u00e9")
    client_id = await link.call("CLIENT", "ID")
    results = await asyncio.gather(
        link.call("GET", text),
        link.call("GET", binary),
        link.call("ECHO", b"caf\xc3"),  # cut short in the middle of a character
        link.call("MGET", text, binary),
        link.call("ECHO", b"x" * 100_000 + b"\xff"),  # read in many pieces
        link.call("GET", text),
        return_exceptions=True,
    )
    assert results[0] == results[-1] == "caf\u00e9"
    for failed in results[1:-1]:
        assert isinstance(failed, exceptions.ResponseError), failed
        assert "not UTF-8" in str(failed)
    assert await link.call("CLIENT", "ID") == client_id  # the same connection all along
    assert await link.call("STRLEN", binary) == 2


async def test_a_caller_who_gives_up_leaves_the_others_replies_in_order(
    redis_keys: tuple[RedisLink, Keys],
) -> None:
    link, _ = redis_keys
    await link.ping()  # connected: the next commands queue at once
    given_up = asyncio.ensure_future(link.call("EVAL", "return redis.call('TIME')", 0))
    after = asyncio.ensure_future(link.call("ECHO", "mine"))
    await asyncio.sleep(0)  # both commands are written
    given_up.cancel()
    assert await after == "mine"
    assert await link.call("ECHO", "next") == "next"


async def test_a_script_redis_does_not_know_is_loaded_on_the_spot(
    redis_keys: tuple[RedisLink, Keys],
) -> None:
    link, keys = redis_keys
    name = f"{keys.prefix}:scripted"
    script = link.script(f"-- {secrets.token_hex(8)}\nreturn redis.call('INCR', KEYS[1])")
    assert await link.call("SCRIPT", "EXISTS", script.sha) == [0]
    assert await script(keys=[name]) == 1
    assert await script(keys=[name]) == 2
    assert await link.call("SCRIPT", "EXISTS", script.sha) == [1]


async def test_url_selects_the_database_and_authenticates(
    own_redis: services.RedisServer,
) -> None:
    base = f"redis://:open%20sesame@127.0.0.1:{own_redis.port}"
    first, second = connect(f"{base}/0"), connect(f"{base}/1")
    try:
        await second.call("SET", "where", "db 1")
        assert await first.call("GET", "where") is None
        assert await second.call("GET", "where") == "db 1"
    finally:
        await first.aclose()
        await second.aclose()
    wrong = connect(f"redis://:wrong@127.0.0.1:{own_redis.port}/0")
    with pytest.raises(exceptions.ConnectionError, match=r"WRONGPASS|invalid"):
        await wrong.ping()


async def test_a_killed_connection_fails_what_was_in_flight_and_the_next_command_reconnects(
    own_redis: services.RedisServer,
) -> None:
    url = f"redis://:open%20sesame@127.0.0.1:{own_redis.port}/0"
    link, killer = connect(url), connect(url)
    try:
        client_id = await link.call("CLIENT", "ID")
        stuck = asyncio.ensure_future(link.call("EVAL", "return 1", 0))
        await killer.call("CLIENT", "KILL", "ID", client_id)
        with contextlib.suppress(exceptions.ConnectionError):
            await stuck  # written before or after the kill: either answered or failed
        assert await link.call("ECHO", "again") == "again"
        assert await link.call("CLIENT", "ID") != client_id
    finally:
        await link.aclose()
        await killer.aclose()


async def test_a_server_that_stops_answering_times_out_and_the_link_recovers(
    own_redis: services.RedisServer, clock: LoopClock
) -> None:
    url = f"redis://:open%20sesame@127.0.0.1:{own_redis.port}/0"
    link = RedisLink.from_url(url, timeout=0.3)
    assert own_redis.process is not None
    await link.ping()
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(10):  # a bound on a broken test, not a measurement
            results = await asyncio.gather(link.ping(), link.ping(), return_exceptions=True)
        assert [str(r) for r in results] == ["Redis did not answer within 0.3 s"] * 2
        assert all(isinstance(r, exceptions.TimeoutError) for r in results), results
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    clock.shift(0.1)  # past the pause that follows a timeout
    assert await link.call("ECHO", "back") == "back"
    await link.aclose()


async def test_an_unreachable_server_fails_at_once() -> None:
    link = RedisLink(RedisAddress(port=services.free_port()), timeout=2.0)
    with pytest.raises(exceptions.ConnectionError, match="cannot reach Redis"):
        await link.ping()


def test_a_url_may_loosen_tls_checks_but_carries_no_option_the_link_would_ignore() -> None:
    assert RedisLink.from_url("rediss://cache.internal:6380/0?ssl_cert_reqs=none")
    with pytest.raises(ValueError, match="health_check_interval"):
        RedisLink.from_url("redis://cache.internal/0?health_check_interval=5")


def test_a_redis_that_refuses_the_client_stops_a_command_with_one_line(
    own_redis: services.RedisServer, tmp_path: Path
) -> None:
    """A server that wants a password (as one in protected mode refuses a client) answers
    PING with an error: the command says so in one line, with status 2, no traceback."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONCERT_REDIS_URL": own_redis.url,  # no password given
    }
    result = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "seed-demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "concert: CONCERT_REDIS_URL: Redis cannot be reached "
        "(redis refuses this client: NOAUTH Authentication required.)"
    )


async def test_a_link_closes_only_when_idle_and_opens_again_at_its_next_command(
    redis_keys: tuple[RedisLink, Keys],
) -> None:
    """What a cluster link does with a node that left the map."""
    link, keys = redis_keys
    own = RedisLink(link._address, timeout=5.0)
    await own.call("PING")
    waiting = asyncio.create_task(own.call("BLPOP", f"{keys.prefix}:never", "0.2"))
    await asyncio.sleep(0)
    assert not own.close_if_idle()
    assert await waiting is None  # answered on the connection kept for it
    assert own.close_if_idle()
    assert await own.call("PING") == "PONG"
    assert own.connections_opened == 2
    await own.aclose()
