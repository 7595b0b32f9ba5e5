"""A small TCP fault proxy for the tests: it stands between the service and a store, on the
loopback interface only, and misbehaves on demand.

Faults (`Fault`), switched at run time with `FaultProxy.set_fault`:

- ``PASS``: bytes go through as they come.
- ``LATENCY``: every chunk, each way, is delivered ``latency`` seconds after it arrived (a
  constant delay: later chunks do not wait for the delay of earlier ones).
- ``RESET``: every open connection is reset (RST, both sides) at once, and every new one as
  soon as it is accepted.
- ``BLACK_HOLE``: connections are accepted and nothing is forwarded either way, neither on new
  connections nor on the ones open when the fault began. A connection swallowed by the black
  hole stays silent after the fault ends (as when a firewall or NAT forgets it): only new
  connections work again. Its peer must give up on it.
- ``CUT``: the next chunk a server sends on each connection is forwarded in part (half of it),
  then the connection is closed both ways; so every connection dies in mid-reply, new ones at
  their first reply.

A `FaultProxy` runs in the event loop that starts it; `ProxyThread` runs one on an event loop
of its own in a daemon thread, switched from any thread (the tests' load and their fault
injection never wait on each other's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import attrs

T = TypeVar("T")
CHUNK = 65536
CONNECT_SECONDS = 2.0
_CUT = b""  # in a delivery queue: close the link once what came before is written


class Fault(enum.Enum):
    PASS = "pass"
    LATENCY = "latency"
    RESET = "reset"
    BLACK_HOLE = "black hole"
    CUT = "cut mid-reply"


@attrs.define
class ProxyStats:
    accepted: int = 0
    reset: int = 0
    swallowed: int = 0
    cut: int = 0
    upstream_failed: int = 0


def _loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the fault proxy only ever targets loopback addresses, not {host}")
    return host


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with an RST rather than a FIN (SO_LINGER 0), at once."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its upstream one, with a delivery queue each way."""

    def __init__(
        self,
        proxy: FaultProxy,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
    ) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client_reader, client_writer
        self.server_reader: asyncio.StreamReader | None = None
        self.server_writer: asyncio.StreamWriter | None = None
        self.swallowed = False
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        fault = self.proxy.fault
        if fault is Fault.RESET:
            self.proxy.stats.reset += 1
            self.close(reset=True)
            return
        if fault is Fault.BLACK_HOLE:
            self.swallow()
        else:
            try:
                async with asyncio.timeout(CONNECT_SECONDS):
                    self.server_reader, self.server_writer = await asyncio.open_connection(
                        self.proxy.target_host, self.proxy.target_port
                    )
            except (OSError, TimeoutError):
                # the server is down: the client sees its connection reset, as if refused
                self.proxy.stats.upstream_failed += 1
                self.close(reset=True)
                return
        loop = asyncio.get_running_loop()
        upstream: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        downstream: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.tasks = [
            loop.create_task(self._pump(self.client_reader, upstream, from_server=False)),
            loop.create_task(self._deliver(upstream, to_server=True)),
        ]
        if self.server_reader is not None:
            self.tasks += [
                loop.create_task(self._pump(self.server_reader, downstream, from_server=True)),
                loop.create_task(self._deliver(downstream, to_server=False)),
            ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks)

    def swallow(self) -> None:
        if not self.swallowed:
            self.swallowed = True
            self.proxy.stats.swallowed += 1

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        *,
        from_server: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.closed:
                data = await reader.read(CHUNK)
                if not data:
                    break
                fault = self.proxy.fault
                if fault is Fault.BLACK_HOLE:
                    self.swallow()
                if self.swallowed:
                    continue  # read, so the sender is never blocked, and dropped
                if fault is Fault.RESET:
                    self.proxy.stats.reset += 1
                    self.close(reset=True)
                    return
                delay = self.proxy.latency if fault is Fault.LATENCY else 0.0
                if fault is Fault.CUT and from_server:
                    self.proxy.stats.cut += 1
                    queue.put_nowait((loop.time(), data[: len(data) // 2]))
                    queue.put_nowait((loop.time(), _CUT))
                    return
                queue.put_nowait((loop.time() + delay, data))
        except OSError:
            pass
        # EOF or an error from one side: close both, once what was read is delivered
        queue.put_nowait((loop.time(), _CUT))

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], *, to_server: bool) -> None:
        loop = asyncio.get_running_loop()
        writer = self.server_writer if to_server else self.client_writer
        while not self.closed:
            due, data = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if data is _CUT or data == _CUT:
                self.close(reset=False)
                return
            if self.swallowed or writer is None:
                continue
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                self.close(reset=False)
                return

    def close(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client_writer, self.server_writer):
            if writer is None:
                continue
            if reset:
                _reset(writer)
            else:
                writer.transport.close()  # what is buffered goes, then a FIN
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.proxy.links.discard(self)


class FaultProxy:
    """Listens on 127.0.0.1 (``listen_port``, or a free one) and forwards to
    ``target_host:target_port`` (a loopback address), misbehaving as `set_fault` says."""

    def __init__(
        self, target_port: int, *, target_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self.target_host = _loopback(target_host)
        self.target_port = target_port
        self.listen_port = listen_port
        self.fault = Fault.PASS
        self.latency = 0.0
        self.links: set[_Link] = set()
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.listen_port, reuse_address=True
        )

    def set_fault(self, fault: Fault, *, latency: float = 0.0) -> None:
        """Switch to ``fault`` (in the proxy's event loop). ``RESET`` resets every open
        connection at once; ``BLACK_HOLE`` swallows every open connection at once."""
        self.fault, self.latency = fault, latency
        if fault is Fault.RESET:
            for link in list(self.links):
                self.stats.reset += 1
                link.close(reset=True)
        elif fault is Fault.BLACK_HOLE:
            for link in self.links:
                link.swallow()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.close(reset=True)
        for handler in list(self._handlers):
            handler.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        link = _Link(self, reader, writer)
        self.links.add(link)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await link.run()
        finally:
            link.close(reset=False)
            self._handlers.discard(task)


class ProxyThread:
    """A `FaultProxy` on an event loop of its own in a daemon thread; `start` and `stop` it,
    and `set_fault` from any thread."""

    def __init__(self, target_port: int, *, name: str = "proxy", listen_port: int = 0) -> None:
        self.proxy = FaultProxy(target_port, listen_port=listen_port)
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"fault-{name}", daemon=True)

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError(f"the {self.name} proxy did not start")
        if self._failure is not None:
            raise RuntimeError(f"the {self.name} proxy did not start") from self._failure

    def set_fault(self, fault: Fault, *, latency: float = 0.0) -> None:
        async def switch() -> None:
            self.proxy.set_fault(fault, latency=latency)

        self._call(switch())

    def stop(self) -> None:
        if self._loop is None or not self._thread.is_alive():
            return
        stopped = self._stopped
        assert stopped is not None
        self._loop.call_soon_threadsafe(stopped.set)
        self._thread.join(timeout=10)

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                await self.proxy.start()
            except BaseException as e:
                self._failure = e
                self._ready.set()
                raise
            self._ready.set()
            try:
                await self._stopped.wait()
            finally:
                await self.proxy.close()

        with contextlib.suppress(Exception):
            asyncio.run(main())
        self._ready.set()
