"""Stopping without failing a request that reached the process.

Told to stop (SIGTERM), a server process stops in two steps. First, for the grace period, it
serves as before but `/readyz` answers 503, so that a balancer checking it stops sending it
requests, and each answer closes its connection (``Connection: close``): a connection the
balancer keeps open is closed by an answer, at a point both ends agree on, never from under a
request the balancer has just sent. Then the server's own stop runs (uvicorn's: no new
connections, idle ones closed, the requests in flight answered within the drain limit); the
live seat maps' streams, which never end by themselves, are ended at that moment, and their
browsers reconnect through the balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import attrs
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("concert")


@attrs.define
class Stopping:
    """Whether this process has been told to stop."""

    told: bool = False


class CloseWhenStopping:
    """ASGI middleware: once the process is told to stop, every answer closes its
    connection."""

    def __init__(self, app: ASGIApp, stopping: Stopping) -> None:
        self._app = app
        self._stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._stopping.told:
            await self._app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, closing)


@contextlib.contextmanager
def stopping_gracefully(
    stopping: Stopping, grace_seconds: float, drain_seconds: int, on_drain: Callable[[], None]
) -> Iterator[None]:
    """While inside: a SIGTERM tells ``stopping`` at once, and reaches the server's own handler
    ``grace_seconds`` later, when ``on_drain`` is called; a second SIGTERM reaches it at once.
    Changes nothing where no server handles SIGTERM (an app under test) or off the main
    thread."""
    server_handler = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(server_handler):
        yield
        return
    loop = asyncio.get_running_loop()
    passed = False

    def pass_on() -> None:
        nonlocal passed
        if passed:
            return
        passed = True
        log.info("stopping: draining the requests in flight (at most %s s)", drain_seconds)
        on_drain()
        server_handler(signal.SIGTERM, None)

    def on_terminate(signal_number: int, frame: FrameType | None) -> None:
        if stopping.told:
            pass_on()
            return
        stopping.told = True
        log.info("stopping: /readyz answers 503; serving %s s more before draining", grace_seconds)
        loop.call_soon_threadsafe(loop.call_later, grace_seconds, pass_on)

    signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, server_handler)
