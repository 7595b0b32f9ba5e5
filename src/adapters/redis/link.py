"""One connection to Redis per process, shared by every request, pipelined by itself.

redis-py takes a pooled connection for each command, writes the command and waits on that
connection for its reply: more Python and system calls per command than all else a
queue-status request does (docs/benchmarks.md). Redis answers the commands of one connection
in the order they came, so a `RedisLink` writes every command issued in one turn of the event
loop in one write, whoever issued it, and hands out the replies in order as they arrive. Under
load many requests' commands travel together; alone, a command costs one round trip as before.

Failures come out as redis-py's exceptions, which `client.translated` turns into the core's
`StoreUnavailable`. A lost connection fails every command in flight with `ConnectionError`, and
the next command connects again: the commands issued meanwhile wait on that one attempt, in the
order they came, and go out once it has connected and greeted (AUTH, SELECT). An attempt that
fails (refused, or no answer) fails them all with `ConnectionError`, and for a pause after it
(0.1 s, doubled by each failure up to 2 s, gone once an attempt succeeds) commands fail at once
instead of trying again, so a dead or silent server costs a caller no more than ``timeout`` and
gets no storm of connections; a connection whose server stops answering starts the same pause,
so that a request's later commands do not each wait the timeout again. A command waits at most
``timeout`` from when it was issued, connecting included: a reply later than that fails every
command in flight with `TimeoutError` and drops the connection, for the replies behind it would
be as late. An error reply raises `ResponseError` (`NoScriptError` for an unknown script) for its
command only, and so does a reply that is not UTF-8 text (`NotUtf8Error`).

Since commands from everywhere share the connection, none may block it (no ``BLPOP``) and no
command may span several (no ``MULTI``): an atomic step is a Lua script (`script`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import math
import ssl
from collections.abc import Callable, Sequence
from typing import Any, cast

import attrs
import hiredis
from redis import exceptions as errors
from redis.connection import SSLConnection, parse_url

Arg = str | bytes | int | float

FIRST_PAUSE = 0.1  # seconds without a new attempt after one failed; doubled by each failure
LONGEST_PAUSE = 2.0


class NotUtf8Error(errors.ResponseError):
    """A reply that is not UTF-8 text (a value written as bytes): its command fails, the
    connection and the commands around it go on."""


@attrs.frozen
class RedisAddress:
    """Where a Redis server is and how to speak to it, as a URL gives it."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: str | None = None
    tls_verify: bool = True

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """For ``redis://[user:password@]host[:port][/db]``, ``unix:///path?db=N``, or
        ``rediss://`` (TLS, checked against the system's CAs, or ``?ssl_ca_certs=file``;
        ``ssl_cert_reqs=none`` skips the check). Raises `ValueError` for another option or
        scheme."""
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"not a redis://, rediss:// or unix:// URL: {url!r}")
        found = parse_url(url)  # type: ignore[no-untyped-call]
        tls = found.pop("connection_class", None) is SSLConnection
        ca_file = found.pop("ssl_ca_certs", None)
        verify = found.pop("ssl_cert_reqs", "required") != "none"
        unknown = sorted(set(found) - {"host", "port", "path", "db", "username", "password"})
        if unknown:
            raise ValueError(f"the Redis URL takes no option {', '.join(unknown)}")
        return cls(
            host=found.get("host", "localhost"),
            port=found.get("port", 6379),
            path=found.get("path"),
            db=int(found.get("db") or 0),
            username=found.get("username"),
            password=found.get("password"),
            tls=tls,
            tls_ca_file=ca_file,
            tls_verify=verify,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if not self.tls_verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context


class RedisLink:
    """Commands to one Redis server (`call`, `script`). Connects at its first command, in the
    event loop of the caller; build one per process and event loop."""

    def __init__(self, address: RedisAddress, *, timeout: float = 2.0) -> None:
        self.connections_opened = 0  # the first, then one a reconnect
        self._where = address.path or f"{address.host}:{address.port}"
        self._address = address
        self._tls = address.tls_context()
        hello: list[tuple[Arg, ...]] = []
        if address.password:
            username = [address.username] if address.username else []
            hello.append(("AUTH", *username, address.password))
        if address.db:
            hello.append(("SELECT", address.db))
        self._hello = [_packed(command) for command in hello]
        self._timeout = timeout
        self._connection: _Connection | None = None
        self._opening: asyncio.Task[None] | None = None
        self._pause = 0.0  # after the last attempt, if it failed
        self._retry_at = -math.inf
        self._failure = ""

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 2.0) -> RedisLink:
        return cls(RedisAddress.from_url(url), timeout=timeout)

    async def call(self, *command: Arg) -> Any:
        """Send one command; its reply (``str`` for text, ``int``, ``None``, lists of those)."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._reconnect()
        return await connection.send(_packed(command))

    async def call_after(self, first: Sequence[Arg], *command: Arg) -> Any:
        """Send ``first`` and ``command`` together, in one write with nothing between them
        (a cluster's ``ASKING`` and the command it lets through); ``command``'s reply."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._reconnect()
        before = connection.send(_packed(first))
        reply = connection.send(_packed(command))
        await asyncio.gather(before, reply, return_exceptions=True)
        return reply.result()

    def script(self, source: str) -> Script:
        """A Lua script, run by its SHA1 and loaded when Redis does not know it."""
        return Script(self, source)

    async def ping(self) -> None:
        await self.call("PING")

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        opening, self._opening = self._opening, None
        if opening is not None and not opening.done():
            opening.cancel()
            if opening.get_loop() is asyncio.get_running_loop():
                await asyncio.wait((opening,))
        if connection is not None:
            connection.close()

    def close_if_idle(self) -> bool:
        """Close the connection if no command waits on it (none unanswered, none waiting for
        it to open), and say whether it did; a later command opens another."""
        opening, connection = self._opening, self._connection
        if opening is not None and not opening.done():
            return False
        if connection is not None and connection.busy:
            return False
        self._connection = None
        if connection is not None:
            connection.close()
        return True

    def _reconnect(self) -> _Connection:
        """The connection for a command that found none: a new one, on which the commands
        issued while it connects wait. In the pause after a failed attempt, `ConnectionError`."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._retry_at:
            raise errors.ConnectionError(self._failure)
        connection = _Connection(loop, self._timeout, self._hello, self._went_silent)
        self._connection = connection
        self.connections_opened += 1
        self._opening = loop.create_task(self._open(connection, now + self._timeout))
        return connection

    def _went_silent(self, connection: _Connection) -> None:
        """A connection whose server stopped answering: pause as after a failed attempt, for
        a server that accepts connections but does not answer (a stopped process) would cost
        every command after it the whole timeout again."""
        if self._connection is connection:
            self._fail_for_a_while(
                f"Redis at {self._where} did not answer within {self._timeout} s"
            )

    def _fail_for_a_while(self, failure: str) -> None:
        self._pause = min(max(2 * self._pause, FIRST_PAUSE), LONGEST_PAUSE)
        self._retry_at = asyncio.get_running_loop().time() + self._pause
        self._failure = f"{failure} (trying again after a pause of {self._pause:.1f} s)"

    async def _open(self, connection: _Connection, deadline: float) -> None:
        """Connect and greet by ``deadline`` (no command issued since has a nearer one), then
        let the waiting commands go; or fail them all and pause."""
        loop = asyncio.get_running_loop()
        address = self._address
        try:
            async with asyncio.timeout_at(deadline):
                if address.path is not None:
                    await loop.create_unix_connection(lambda: connection, address.path)
                else:
                    await loop.create_connection(
                        lambda: connection, address.host, address.port, ssl=self._tls
                    )
                for greeted in connection.greeted:
                    await greeted
            if connection.closed:
                raise errors.ConnectionError("the connection to Redis was lost")
        except Exception as e:  # refused, no answer, a refused AUTH, TLS, a bad host name
            cause = str(e) or f"no answer within {self._timeout} s"
            failure = f"cannot reach Redis at {self._where}: {cause}"
            connection.fail(errors.ConnectionError(failure))
            if self._connection is connection:
                self._fail_for_a_while(failure)
        except BaseException:  # cancelled: the link is closing
            connection.close()
            raise
        else:
            self._pause, self._retry_at = 0.0, -math.inf
            connection.ready()
        finally:
            if self._opening is asyncio.current_task():
                self._opening = None


class Script:
    """A Lua script of a `RedisLink`, called like redis-py's: ``await script(keys, args)``."""

    def __init__(self, link: RedisLink, source: str) -> None:
        self._link = link
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Arg] = ()) -> Any:
        try:
            return await self._link.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except errors.NoScriptError:  # Redis restarted, or never saw it: EVAL loads it too
            return await self._link.call("EVAL", self._source, len(keys), *keys, *args)


class _Connection(asyncio.Protocol):
    """One connection's life: commands to write at the end of this turn of the event loop,
    and the callers awaiting replies, in the order the commands were written. Until the link
    has connected and greeted the server (`ready`), commands wait unwritten, the greeting's
    replies (`greeted`) first, and the link's deadline for connecting is the only clock."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
        greeting: Sequence[bytes],
        on_silence: Callable[[_Connection], None] | None = None,
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._on_silence = on_silence
        self._reader = hiredis.Reader(
            encoding="utf-8", errors="strict", replyError=errors.ResponseError
        )
        self._transport: asyncio.Transport | None = None
        self._greeting = b"".join(greeting)
        self._outgoing: list[bytes] = []
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._ready = False
        self.closed = False
        due = loop.time() + timeout
        self.greeted = [loop.create_future() for _ in greeting]
        self._waiting.extend((reply, due) for reply in self.greeted)

    @property
    def busy(self) -> bool:
        """Whether a caller still awaits a reply."""
        return bool(self._waiting)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise errors.ConnectionError("the connection to Redis is closed")
        reply = self._loop.create_future()
        self._waiting.append((reply, self._loop.time() + self._timeout))
        if self._ready:
            if not self._outgoing:
                self._loop.call_soon(self._flush)
            if self._watchdog is None:
                self._watchdog = self._loop.call_at(self._waiting[0][1], self._check_time)
        self._outgoing.append(command)
        return reply

    def ready(self) -> None:
        """Connected and greeted: write what waited, and from now on watch the time."""
        if self.closed:
            return
        self._ready = True
        self._flush()
        if self._waiting and self._watchdog is None:
            self._watchdog = self._loop.call_at(self._waiting[0][1], self._check_time)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not asyncio.Transport subclasses)
        self._transport = cast(asyncio.Transport, transport)
        if self._greeting:
            self._transport.write(self._greeting)

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        try:
            reader.feed(data)
            while True:
                try:
                    reply = reader.gets()
                except UnicodeDecodeError as e:  # hiredis has read the whole reply all the same
                    reply = NotUtf8Error(f"Redis's reply is not UTF-8 text ({e})")
                if reply is False:
                    return
                waiter = waiting.popleft()[0]
                if waiter.done():  # its caller gave up; the order holds all the same
                    continue
                if isinstance(reply, errors.ResponseError):
                    waiter.set_exception(_error(reply))
                else:
                    waiter.set_result(reply)
        except Exception as e:  # not Redis's protocol, or a reply to no command
            self.fail(errors.ConnectionError(f"Redis sent what cannot be read: {e!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(errors.ConnectionError("the connection to Redis was lost"))

    def close(self) -> None:
        self.fail(errors.ConnectionError("the connection to Redis was closed"))

    def _flush(self) -> None:
        if self._outgoing and not self.closed and self._transport is not None:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def _check_time(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        due = self._waiting[0][1]
        if self._loop.time() >= due:
            self.fail(errors.TimeoutError(f"Redis did not answer within {self._timeout} s"))
            if self._on_silence is not None:
                self._on_silence(self)
        else:
            self._watchdog = self._loop.call_at(due, self._check_time)

    def fail(self, error: Exception) -> None:
        """Close for good: every caller still waiting gets ``error``."""
        self.closed = True
        self._outgoing.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        for greeted in self.greeted:  # the link may never look: the attempt was cancelled
            if greeted.done() and not greeted.cancelled():
                greeted.exception()
        if self._transport is not None:
            transport, self._transport = self._transport, None
            with contextlib.suppress(RuntimeError):  # its event loop may be gone already
                transport.abort()


def _error(reply: errors.ResponseError) -> errors.ResponseError:
    message = str(reply)
    return errors.NoScriptError(message) if message.startswith("NOSCRIPT") else reply


def _packed(command: Sequence[Arg]) -> bytes:
    """A command in Redis's protocol: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis argument must be text or a number, not {arg!r}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
