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
    ``grace_seconds`` later, when ``on_drain`` is called. A SIGTERM during the grace period
    changes nothing (a service manager and uvicorn's supervisor may both send one); SIGINT
    (Ctrl-C) calls ``on_drain`` and reaches the server at once. Changes nothing where no
    server handles the signals (an app under test) or off the main thread."""
    on_terminate_was = signal.getsignal(signal.SIGTERM)
    on_interrupt_was = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not (
        callable(on_terminate_was) and callable(on_interrupt_was)
    ):
        yield
        return
    server_terminates, server_interrupts = on_terminate_was, on_interrupt_was
    loop = asyncio.get_running_loop()

    def drain() -> None:
        log.info("stopping: draining the requests in flight (at most %s s)", drain_seconds)
        on_drain()
        server_terminates(signal.SIGTERM, None)

    def told() -> None:
        log.info("stopping: /readyz answers 503; serving %s s more before draining", grace_seconds)
        loop.call_later(grace_seconds, drain)

    # signal handlers run between two steps of the loop: they only hand work to it
    def on_terminate(signal_number: int, frame: FrameType | None) -> None:
        if not stopping.told:
            stopping.told = True
            loop.call_soon_threadsafe(told)

    def on_interrupt(signal_number: int, frame: FrameType | None) -> None:
        stopping.told = True
        loop.call_soon_threadsafe(on_drain)
        server_interrupts(signal_number, frame)

    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:  # unless the server has put its own back already (a forced stop)
        if signal.getsignal(signal.SIGTERM) is on_terminate:
            signal.signal(signal.SIGTERM, on_terminate_was)
        if signal.getsignal(signal.SIGINT) is on_interrupt:
            signal.signal(signal.SIGINT, on_interrupt_was)
