"""The link against a server that misbehaves on cue: a fake on 127.0.0.1 that accepts
connections and answers only what the test tells it to. Counts, not stopwatches, tell how the
link behaved; where time must pass, the test moves its event loop's clock by hand."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
from redis import exceptions

from adapters.redis import RedisLink
from loop_clock import LoopClock

pytestmark = pytest.mark.integration

GUARD = 10.0  # seconds: a bound on a broken test, never a measurement
OK, PONG = b"+OK\r\n", b"+PONG\r\n"


class FakeRedis:
    """A server that counts the connections it accepts and the commands it reads, and
    answers a command only when `answers` has a reply for its name."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}
        self.connections = 0
        self.commands: list[str] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._news = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, credentials: str = "", db: int = 0) -> str:
        return f"redis://{credentials}127.0.0.1:{self.port}/{db}"

    async def heard(self, name: str, times: int = 1) -> None:
        """Until ``times`` commands called ``name`` have come in, all told."""
        async with self._news:
            await self._news.wait_for(lambda: self.commands.count(name) >= times)

    def reply(self, data: bytes) -> None:
        """Write ``data`` on every open connection, whatever was asked."""
        for writer in self._writers:
            writer.write(data)

    def drop(self) -> None:
        """Close every open connection from the server's side."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=GUARD)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    name = command[0].decode().upper()
                    self.commands.append(name)
                    if name in self.answers:
                        writer.write(self.answers[name])
                async with self._news:
                    self._news.notify_all()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._handlers.discard(task)


@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server = FakeRedis()
    await server.start()
    yield server
    await server.close()


async def pings(link: RedisLink, count: int) -> list[BaseException | None]:
    async with asyncio.timeout(GUARD):
        return await asyncio.gather(*(link.ping() for _ in range(count)), return_exceptions=True)


async def unanswered(
    link: RedisLink, count: int, fake: FakeRedis, clock: LoopClock
) -> list[BaseException | None]:
    """``count`` pings at once while the server leaves AUTH unanswered: once it has the AUTH,
    the clock skips the link's timeout (0.3 s) rather than wait for it."""
    calls = [asyncio.ensure_future(link.ping()) for _ in range(count)]
    async with asyncio.timeout(GUARD):
        await fake.heard("AUTH", fake.commands.count("AUTH") + 1)
    clock.shift(0.3)
    async with asyncio.timeout(GUARD):
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, exceptions.ConnectionError) for r in results), results
    return results


async def refused_at_once(link: RedisLink, clock: LoopClock) -> str:
    """The message of a command refused in the pause after a failed attempt; the clock is
    held back a second so that the pause cannot run out however slow the machine."""
    clock.shift(-1.0)
    try:
        with pytest.raises(exceptions.ConnectionError) as refused:
            await link.ping()
    finally:
        clock.shift(1.0)
    return str(refused.value)


async def test_callers_share_one_attempt_at_a_silent_server_then_pause(
    fake: FakeRedis, clock: LoopClock
) -> None:
    link = RedisLink.from_url(fake.url(":secret@"), timeout=0.3)
    try:
        results = await unanswered(link, 10, fake, clock)
        assert fake.connections == 1  # one attempt for the ten, not one each in turn
        assert "cannot reach Redis" in str(results[0])
        assert "no answer within 0.3 s" in str(results[0])
        assert "pause of 0.1 s" in await refused_at_once(link, clock)
        assert fake.connections == 1

        clock.shift(0.1)  # the pause is over: the next commands try again, once
        await unanswered(link, 10, fake, clock)
        assert fake.connections == 2
        assert "pause of 0.2 s" in await refused_at_once(link, clock)  # longer each time
        for pause in ("0.4", "0.8", "1.6", "2.0", "2.0"):  # and no longer than 2 s
            clock.shift(2.0)
            await unanswered(link, 1, fake, clock)
            assert f"pause of {pause} s" in await refused_at_once(link, clock)
        assert fake.connections == 7

        fake.answers.update(AUTH=OK, PING=PONG)
        clock.shift(2.0)
        assert await pings(link, 3) == [None] * 3
        assert fake.connections == 8

        await link.aclose()  # an attempt that succeeds forgets the pauses before it
        fake.answers.clear()
        await unanswered(link, 2, fake, clock)
        assert "pause of 0.1 s" in await refused_at_once(link, clock)
        assert fake.connections == 9
    finally:
        await link.aclose()


async def test_a_command_waits_no_longer_than_the_timeout_connecting_included(
    fake: FakeRedis, clock: LoopClock
) -> None:
    link = RedisLink.from_url(fake.url(":secret@"), timeout=100.0)
    try:
        ping = asyncio.ensure_future(link.ping())
        async with asyncio.timeout(GUARD):
            await fake.heard("AUTH")
        clock.shift(60.0)  # connecting takes 60 of the command's 100 seconds
        fake.reply(OK)
        async with asyncio.timeout(GUARD):
            await fake.heard("PING")
        clock.shift(50.0)  # 110 seconds since the command was issued, 50 since it was written
        async with asyncio.timeout(GUARD):  # far less than the 50 s a late clock would wait
            with pytest.raises(exceptions.TimeoutError, match=r"did not answer within 100\.0 s"):
                await ping
    finally:
        await link.aclose()


async def test_no_failure_is_left_unretrieved_whoever_gave_up(
    fake: FakeRedis, clock: LoopClock
) -> None:
    """Refused and silent handshakes, callers who give up, dropped connections, timeouts and
    a link closed while it connects: every exception set on a future is taken by someone, so
    the event loop never reports one that nobody retrieved."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        await failures_of_every_kind(fake, clock)
        gc.collect()
        await asyncio.sleep(0)  # what the collection reported on the loop's behalf
    finally:
        loop.set_exception_handler(None)
    assert [(c["message"], str(c.get("exception"))) for c in reported] == []


async def failures_of_every_kind(fake: FakeRedis, clock: LoopClock) -> None:
    def link(password: str = "secret") -> RedisLink:
        return RedisLink.from_url(fake.url(f":{password}@", db=1), timeout=0.3)

    async def issued(target: RedisLink, count: int, giving_up: int) -> list[asyncio.Future[None]]:
        """``count`` pings, the first ``giving_up`` cancelled once the others are written."""
        calls: list[asyncio.Future[None]]
        calls = [asyncio.ensure_future(target.ping()) for _ in range(count)]
        await asyncio.sleep(0)
        for call in calls[:giving_up]:
            call.cancel()
        return calls

    async def outcome(calls: list[asyncio.Future[None]], kind: type[Exception]) -> None:
        async with asyncio.timeout(GUARD):
            results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError | kind) for r in results), results

    async def handshake_heard(times: int) -> None:
        async with asyncio.timeout(GUARD):
            await fake.heard("SELECT", times)

    # AUTH refused, and SELECT answered after it with an error of its own
    fake.answers.update(AUTH=b"-WRONGPASS invalid password\r\n", SELECT=b"-NOAUTH no\r\n")
    wrong = link("wrong")
    await outcome(await issued(wrong, 3, giving_up=1), exceptions.ConnectionError)

    # a handshake never answered: some callers give up meanwhile, then all of them
    fake.answers.clear()
    for giving_up in (2, 3):
        silent = link()
        heard = fake.commands.count("SELECT")
        calls = await issued(silent, 3, giving_up)
        await handshake_heard(heard + 1)
        clock.shift(0.3)
        await outcome(calls, exceptions.ConnectionError)
        await silent.aclose()

    # connected; then callers give up, and the server drops the connection or stays silent
    fake.answers.update(AUTH=OK, SELECT=OK)
    for ending in ("drop", "silence"):
        connected = link()
        await connected.call("SELECT", 1)  # answered: the link is up
        heard = fake.commands.count("PING")
        calls = await issued(connected, 4, giving_up=2)
        async with asyncio.timeout(GUARD):
            await fake.heard("PING", heard + 4)
        if ending == "drop":
            fake.drop()
            await outcome(calls, exceptions.ConnectionError)
        else:
            clock.shift(0.3)
            await outcome(calls, exceptions.TimeoutError)
        await connected.aclose()

    # closed while it connects, and dropped by the server while it greets
    fake.answers.clear()
    closing, dropped = link(), link()
    calls = await issued(closing, 2, giving_up=1)
    await closing.aclose()
    await outcome(calls, exceptions.ConnectionError)
    heard = fake.commands.count("SELECT")
    calls = await issued(dropped, 3, giving_up=1)
    await handshake_heard(heard + 1)
    fake.drop()
    await outcome(calls, exceptions.ConnectionError)
    await wrong.aclose()
    await dropped.aclose()


async def test_a_server_that_stops_answering_costs_one_timeout_then_a_pause(
    fake: FakeRedis, clock: LoopClock
) -> None:
    """A server that takes connections but answers nothing (a stopped process): the command
    in flight times out, and the next ones fail at once rather than each wait again."""
    fake.answers["PING"] = PONG
    link = RedisLink.from_url(fake.url(), timeout=0.3)
    try:
        assert await pings(link, 1) == [None]
        del fake.answers["PING"]
        silent = asyncio.ensure_future(link.ping())
        async with asyncio.timeout(GUARD):
            await fake.heard("PING", 2)
        clock.shift(0.3)
        async with asyncio.timeout(GUARD):
            [timed_out] = await asyncio.gather(silent, return_exceptions=True)
        assert isinstance(timed_out, exceptions.TimeoutError), timed_out
        connections = fake.connections
        message = await refused_at_once(link, clock)
        assert "did not answer within 0.3 s (trying again after a pause of 0.1 s)" in message
        assert fake.connections == connections  # no new connection in the pause
        fake.answers["PING"] = PONG
        clock.shift(0.2)  # past the pause: a new connection, and the server answers again
        assert await pings(link, 1) == [None]
        assert fake.connections == connections + 1
    finally:
        await link.aclose()
