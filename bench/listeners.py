"""The listeners of scenario (i): many open live seat maps
(``GET /concerts/{id}/dates/{date_id}/seats/events``), read in a process of their own so that
reading them does not stall the load driver's event loop (both share the machine's cores, not
one loop). `bench/run.py` runs it and talks to it in JSON lines:

1. it reads the job, ``{"host", "port", "path", "listeners": [[access token, queue token],
   ...], "timed_every", "concurrency", "open_seconds"}``, opens every stream (at most
   ``concurrency`` at a time), reads each one's ``snapshot`` and answers ``{"opened",
   "broken", "seconds"}``; the streams are then read as their events come;
2. it reads ``{"final": {seat id: status}, "held_at": {seat id: time}, "settle_seconds"}`` once
   the rush is over: the date's seat map then and when each hold's 201 arrived
   (`time.monotonic`, one clock for every process of the machine), waits until every listener
   shows ``final`` (or ``settle_seconds`` pass), closes every stream and answers with what they
   saw: how many got every change, and for every ``timed_every``-th listener the delay from
   each hold's 201 to the first event showing that seat held or sold.

A stream that does not answer 200, ends or fails before it is closed here is ``broken``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import attrs
import uvloop

TAKEN = ("held", "sold")


class StreamEnded(Exception):
    pass


@attrs.define(eq=False)
class Listener:
    index: int
    timed: bool
    statuses: dict[int, str] = attrs.Factory(dict)
    # seat id: when it was first seen held or sold since it was last seen available
    taken_at: dict[int, float] = attrs.Factory(dict)
    events: int = 0
    broken: str | None = None
    closing: bool = False
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None

    def apply(self, changes: list[dict[str, Any]], now: float) -> None:
        self.events += 1
        for change in changes:
            seat, status = int(change["seat_id"]), str(change["status"])
            self.statuses[seat] = status
            if status in TAKEN:
                self.taken_at.setdefault(seat, now)
            else:  # free again: the next time it is taken is a change of its own
                self.taken_at.pop(seat, None)

    async def close(self) -> None:
        self.closing = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


class Events:
    """Server-sent events off a chunked HTTP/1.1 body: (name, data) pairs, comments (the
    heartbeats) skipped."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffer = b""

    async def next(self) -> tuple[str, str]:
        while True:
            end = self.buffer.find(b"\n\n")
            if end >= 0:
                block, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                name, data = "message", []
                for line in block.split(b"\n"):
                    key, _, value = line.partition(b":")
                    value = value[1:] if value.startswith(b" ") else value
                    if key == b"event":
                        name = value.decode()
                    elif key == b"data":
                        data.append(value.decode())
                if data:
                    return name, "\n".join(data)
                continue  # a comment: a heartbeat
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                raise StreamEnded("the server ended the stream")
            chunk = await self.reader.readexactly(size + 2)
            self.buffer += chunk[:-2]


async def open_stream(
    listener: Listener, host: str, port: int, path: str, access: str, queue: str
) -> Events | None:
    """Open one stream and read its snapshot; None (and the listener ``broken``) if not."""
    reader, writer = await asyncio.open_connection(host, port)
    listener.writer = writer
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {access}\r\nX-Queue-Token: {queue}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    if status != 200:
        listener.broken = f"answered {status}"
        return None
    if b"transfer-encoding: chunked" not in head.lower():
        listener.broken = "not a chunked body"
        return None
    events = Events(reader)
    name, data = await events.next()
    if name != "snapshot":
        listener.broken = f"first event {name!r}, not a snapshot"
        return None
    listener.statuses = {int(s["seat_id"]): str(s["status"]) for s in json.loads(data)["seats"]}
    return events


async def keep_reading(listener: Listener, events: Events) -> None:
    try:
        while True:
            name, data = await events.next()
            if name == "seats":
                listener.apply(json.loads(data), time.monotonic())
            else:
                listener.broken = f"an event {name!r}"
                return
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, StreamEnded) as e:
        if not listener.closing:
            listener.broken = f"{type(e).__name__}: {e}"


async def read_line() -> dict[str, Any]:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise SystemExit("bench/listeners.py: stdin closed")
    found: dict[str, Any] = json.loads(line)
    return found


def answer(found: dict[str, Any]) -> None:
    print(json.dumps(found), flush=True)


async def main() -> None:
    job = await read_line()
    host, port, path = job["host"], int(job["port"]), job["path"]
    listeners = [
        Listener(n, n % int(job["timed_every"]) == 0) for n in range(len(job["listeners"]))
    ]
    gate = asyncio.Semaphore(int(job["concurrency"]))

    async def start(listener: Listener) -> None:
        access, queue = job["listeners"][listener.index]
        async with gate:
            try:
                events = await open_stream(listener, host, port, path, access, queue)
            except (OSError, asyncio.IncompleteReadError, StreamEnded) as e:
                listener.broken = f"on opening, {type(e).__name__}: {e}"
                return
        if events is not None:
            listener.task = asyncio.create_task(keep_reading(listener, events))

    started = time.monotonic()
    try:
        async with asyncio.timeout(float(job["open_seconds"])):
            await asyncio.gather(*(start(listener) for listener in listeners))
    except TimeoutError:
        for listener in listeners:
            if listener.task is None and listener.broken is None:
                listener.broken = "not open in time"
    broken = [f"listener {x.index}: {x.broken}" for x in listeners if x.broken]
    answer(
        {
            "opened": sum(x.task is not None for x in listeners),
            "broken": broken,
            "seconds": time.monotonic() - started,
        }
    )
    try:
        settle = await read_line()
        final = {int(seat): str(status) for seat, status in settle["final"].items()}
        held_at = {int(seat): float(at) for seat, at in settle["held_at"].items()}
        for _ in range(int(float(settle["settle_seconds"]) / 0.05)):
            if all(x.statuses == final for x in listeners if x.broken is None):
                break
            await asyncio.sleep(0.05)
    finally:
        await asyncio.gather(*(listener.close() for listener in listeners))
    delays = [
        listener.taken_at[seat] - at
        for listener in listeners
        if listener.timed and listener.broken is None
        for seat, at in held_at.items()
        if seat in listener.taken_at
    ]
    missed = sum(
        seat not in listener.taken_at
        for listener in listeners
        if listener.timed
        for seat in held_at
    )
    answer(
        {
            "broken": [f"listener {x.index}: {x.broken}" for x in listeners if x.broken],
            "complete": sum(
                x.broken is None and x.statuses == final and held_at.keys() <= x.taken_at.keys()
                for x in listeners
            ),
            "listeners": len(listeners),
            "timed": sum(x.timed for x in listeners),
            "delays": delays,
            "missed": missed,
            "events": sum(x.events for x in listeners),
        }
    )


if __name__ == "__main__":
    uvloop.run(main())
