"""Random interleavings on a real Redis: batches of commands issued at once, some failing, some
given up by their callers, some hit by a killed connection. Each caller gets its own reply, the
one a model of the keys predicts, unless a kill cut its connection; the link works afterwards.

Kills go by client ID (``CLIENT KILL ID``, from a second link) or close the transport from our
side, so a shared Redis loses no other client's connection; the keys live under a prefix of
this test's own and are deleted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any, Literal

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from redis import exceptions

from adapters.redis import RedisLink
from adapters.redis.link import NotUtf8Error

pytestmark = pytest.mark.integration

GUARD = 30.0  # seconds for one example: a bound on a broken test, never a measurement
KEYS = 3
INT64 = 2**63
INTEGER = re.compile(rb"0|-?[1-9][0-9]*")  # what INCR reads as a number (Redis's string2ll)
WRITES = frozenset({"SET", "APPEND", "INCR"})
Cancel = Literal["before it runs", "once written"]


@attrs.frozen
class Command:
    name: Literal["SET", "GET", "APPEND", "INCR", "ECHO", "NOSUCHCOMMAND"]
    key: int
    value: bytes
    cancel: Cancel | None


@attrs.frozen
class Kill:
    how: Literal["by the server", "by our side"]
    after: int  # issued after this many of the batch's commands


@attrs.frozen
class Batch:
    commands: list[Command]
    kill: Kill | None


@attrs.frozen
class Fails:
    """An error reply expected: its class and a part of its message."""

    kind: type[exceptions.ResponseError]
    words: str


values = st.one_of(
    st.binary(max_size=6),
    st.text(max_size=4).map(str.encode),
    st.integers(-3, 3).map(lambda n: b"%d" % n),
    st.sampled_from(
        [
            b"\xff\xfe",  # not UTF-8
            b"caf\xc3",  # a character cut short
            b"\xed\xa0\x80",  # a lone surrogate, which UTF-8 forbids
            b"-0",  # no number for INCR
            b"%d" % (INT64 - 1),  # INCR overflows
            b"\xe2\x82\xac" * 30_000,  # long enough to arrive in pieces
            b"\xe2\x82" * 30_000,
        ]
    ),
)
commands = st.builds(
    Command,
    name=st.sampled_from(["SET", "GET", "APPEND", "INCR", "ECHO", "NOSUCHCOMMAND"]),
    key=st.integers(0, KEYS - 1),
    value=values,
    cancel=st.one_of(st.none(), st.none(), st.sampled_from(["before it runs", "once written"])),
)
kills = st.builds(
    Kill, how=st.sampled_from(["by the server", "by our side"]), after=st.integers(0, 10)
)
batches = st.builds(
    Batch, commands=st.lists(commands, min_size=1, max_size=10), kill=st.none() | kills
)


class Model:
    """The keys' values as the commands written so far leave them; `None` for no key."""

    def __init__(self) -> None:
        self.values: list[bytes | None] = [None] * KEYS

    def apply(self, command: Command) -> Any:
        """The reply ``command`` gets (or `Fails`), and its effect on the keys."""
        old = self.values[command.key]
        if command.name == "SET":
            self.values[command.key] = command.value
            return "OK"
        if command.name == "APPEND":
            new = (old or b"") + command.value
            self.values[command.key] = new
            return len(new)
        if command.name == "INCR":
            number = 0 if old is None else int(old) if INTEGER.fullmatch(old) else None
            if number is None or not -INT64 <= number < INT64:
                return Fails(exceptions.ResponseError, "not an integer")
            if number + 1 >= INT64:
                return Fails(exceptions.ResponseError, "overflow")
            self.values[command.key] = b"%d" % (number + 1)
            return number + 1
        if command.name == "GET":
            return None if old is None else text(old)
        if command.name == "ECHO":
            return text(command.value)
        return Fails(exceptions.ResponseError, "unknown command")


def text(value: bytes) -> str | Fails:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return Fails(NotUtf8Error, "not UTF-8")


def matches(result: object, expected: object) -> bool:
    if isinstance(expected, Fails):
        return isinstance(result, expected.kind) and expected.words in str(result)
    return type(result) is type(expected) and result == expected


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"concert-test-{secrets.token_hex(6)}"


@settings(max_examples=60, deadline=None)
@given(scenario=st.lists(batches, min_size=1, max_size=3))
def test_every_caller_gets_its_own_reply_whatever_runs_beside_it(
    redis_url: str, prefix: str, scenario: list[Batch]
) -> None:
    reported: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        async with asyncio.timeout(GUARD):
            await run(redis_url, prefix, scenario)

    asyncio.run(main())
    gc.collect()
    assert [(c["message"], str(c.get("exception"))) for c in reported] == []


async def run(url: str, prefix: str, scenario: list[Batch]) -> None:
    link, killer = RedisLink.from_url(url), RedisLink.from_url(url)
    keys = [f"{prefix}:{n}" for n in range(KEYS)]
    model = Model()
    try:
        await link.call("DEL", *keys)
        for batch in scenario:
            await run_batch(link, killer, keys, model, batch)
        assert await link.call("ECHO", "still here") == "still here"
        digest = "return redis.sha1hex(redis.call('GET', KEYS[1]) or '')"
        for key, value in zip(keys, model.values, strict=True):  # the bytes as written
            assert await link.call("EXISTS", key) == (value is not None)
            assert await link.call("EVAL", digest, 1, key) == hashlib.sha1(value or b"").hexdigest()
    finally:
        with contextlib.suppress(exceptions.RedisError):  # the next example deletes them too
            await link.call("DEL", *keys)
        await link.aclose()
        await killer.aclose()


def arguments(command: Command, keys: list[str]) -> tuple[str | bytes, ...]:
    if command.name in {"SET", "APPEND"}:
        return (keys[command.key], command.value)
    if command.name in {"GET", "INCR"}:
        return (keys[command.key],)
    return (command.value,)


async def run_batch(
    link: RedisLink, killer: RedisLink, keys: list[str], model: Model, batch: Batch
) -> None:
    """Issue the batch's commands and its kill in one turn of the event loop; check them."""
    kill = batch.kill
    victim = await link.call("CLIENT", "ID") if kill is not None else 0
    size = len(batch.commands)
    calls: list[asyncio.Future[Any]] = []
    killing: list[asyncio.Future[None]] = []
    for n in range(size + 1):
        if kill is not None and n == min(kill.after, size):
            killing.append(asyncio.ensure_future(kill_now(link, killer, kill, victim)))
        if n < size:
            command = batch.commands[n]
            calls.append(asyncio.ensure_future(link.call(command.name, *arguments(command, keys))))
            if command.cancel == "before it runs":
                calls[-1].cancel()
    await asyncio.sleep(0)  # every command is written, or waits for the connection
    for call, command in zip(calls, batch.commands, strict=True):
        if command.cancel == "once written":
            call.cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    await asyncio.gather(*killing)
    check(batch, results, model)
    if kill is not None:
        cut = [lost(r) for r, c in zip(results, batch.commands, strict=True) if not c.cancel]
        share = "all" if cut and all(cut) else "some" if any(cut) else "no"
        event(f"killed {kill.how}: {share} calls lost")
        await settle(link)
        for n in set(uncertain(batch, results)):
            await link.call("DEL", keys[n])
            model.values[n] = None


async def kill_now(link: RedisLink, killer: RedisLink, kill: Kill, victim: int) -> None:
    if kill.how == "by the server":
        await killer.call("CLIENT", "KILL", "ID", victim)
    else:
        connection = link._connection
        transport = connection._transport if connection is not None else None
        if transport is not None:
            transport.abort()


def lost(result: object) -> bool:
    return isinstance(result, exceptions.ConnectionError | exceptions.TimeoutError)


def answered(batch: Batch, results: list[object]) -> int:
    """How many commands from the start of the batch Redis surely ran: up to the last that
    got an answer (a reply, or an error reply), since the connection keeps their order."""
    last = -1
    for n, (command, result) in enumerate(zip(batch.commands, results, strict=True)):
        if command.cancel is None and not lost(result):
            last = n
    return last + 1 if batch.kill is not None else len(batch.commands)


def check(batch: Batch, results: list[object], model: Model) -> None:
    ran = answered(batch, results)
    for n, (command, result) in enumerate(zip(batch.commands, results, strict=True)):
        if command.cancel == "before it runs":
            assert isinstance(result, asyncio.CancelledError), (command, result)
            continue
        if n >= ran:  # after the kill: lost, and maybe run or not (see `uncertain`)
            assert command.cancel is not None or lost(result), (command, result)
            continue
        expected = model.apply(command)
        if isinstance(expected, Fails) and expected.kind is NotUtf8Error:
            event("a reply that is not UTF-8")
        if command.cancel is None:
            assert matches(result, expected), (command, result, expected)


def uncertain(batch: Batch, results: list[object]) -> Iterator[int]:
    """The keys that commands cut off by a kill may or may not have written."""
    ran = answered(batch, results)
    for command in batch.commands[ran:]:
        if command.name in WRITES and command.cancel != "before it runs":
            yield command.key


async def settle(link: RedisLink) -> None:
    """A kill may reach us after the batch: the first command can still find the dead
    connection; the next connects again."""
    for _ in range(3):
        try:
            assert await link.call("ECHO", "settled") == "settled"
            return
        except exceptions.ConnectionError:
            continue
    pytest.fail("the link did not connect again")
