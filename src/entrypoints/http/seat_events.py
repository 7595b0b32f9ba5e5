"""The live seat map: ``GET /concerts/{id}/dates/{date_id}/seats/events``, a server-sent event
stream of a ``snapshot`` of the date's seats, then a ``seats`` event of what changed, within a
second of any change made by any server process.

Each process runs one feed per date that has listeners: every `POLL_SECONDS` it reads the date's
seats through the read model (which knows of changes made by any process through the shared
seat-map versions, and of holds that lapse by their time) and, when statuses changed, encodes
the change once and hands the same bytes to every listener. So a change costs one read, one diff
and one encoding per process, whatever the number of listeners, and a listener costs a bounded
queue: one too slow to keep `BACKLOG` events is let go (its browser reconnects and starts again
from a snapshot). A comment line every `HEARTBEAT_SECONDS` keeps idle connections open through
proxies. A feed stops with its last listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from concert_domain import Dependencies, usecases
from concert_domain.catalog import SeatView
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import DateId, SeatId

log = logging.getLogger("concert.events")
POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
BACKLOG = 64
HEARTBEAT = b": ping\n\n"
_GONE = b""  # put in a listener's queue when it is let go


def event(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Listener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=BACKLOG + 1)

    def offer(self, message: bytes) -> bool:
        """Queue ``message``; False (and the listener told to go) when it has fallen
        `BACKLOG` behind."""
        if self.queue.qsize() >= BACKLOG:
            self.queue.put_nowait(_GONE)
            return False
        self.queue.put_nowait(message)
        return True

    def end(self) -> None:
        """Tell the listener to go, whatever it has still to read."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_GONE)


class _Feed:
    """One date's changes, read once a poll and handed to every listener."""

    def __init__(self, date_id: DateId, deps: Dependencies, poll: float) -> None:
        self._date_id = date_id
        self._deps = deps
        self._poll = poll
        self.listeners: set[_Listener] = set()
        self._statuses: dict[SeatId, str] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read where the feed starts from, then poll: a change made once this returns is
        a change its listeners are told of."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._poll_once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            await self._poll_once()

    async def _poll_once(self) -> None:
        try:
            self._publish(await usecases.seat_statuses(self._date_id, deps=self._deps))
        except StoreUnavailable as e:
            log.warning("seat events of date %s paused: %s", self._date_id, e.message)

    def _publish(self, views: Sequence[SeatView]) -> None:
        now = {view.seat.seat_id: view.status.value for view in views}
        before, self._statuses = self._statuses, now
        if before is None:
            return
        changed = [
            {"seat_id": seat_id, "status": status}
            for seat_id, status in now.items()
            if before.get(seat_id) != status
        ]
        if not changed:
            return
        message = event("seats", changed)  # encoded once, whoever listens
        for listener in list(self.listeners):
            if not listener.offer(message):
                self.listeners.discard(listener)


class SeatFeeds:
    """This process's feeds, one per date with listeners."""

    def __init__(self, poll: float = POLL_SECONDS) -> None:
        self._poll = poll
        self._feeds: dict[DateId, _Feed] = {}
        self._ended = False

    @contextlib.asynccontextmanager
    async def listening(self, date_id: DateId, deps: Dependencies) -> AsyncIterator[_Listener]:
        feed = self._feeds.get(date_id)
        if feed is None:
            feed = self._feeds[date_id] = _Feed(date_id, deps, self._poll)
            await feed.start()
        listener = _Listener()
        if self._ended:
            listener.end()
        feed.listeners.add(listener)
        try:
            yield listener
        finally:
            feed.listeners.discard(listener)
            if not feed.listeners and self._feeds.get(date_id) is feed:
                del self._feeds[date_id]
                await feed.stop()

    def end_all(self) -> None:
        """End every listener's stream, and those that begin from now on after their
        snapshot (the process is stopping)."""
        self._ended = True
        for feed in self._feeds.values():
            for listener in feed.listeners:
                listener.end()

    def listeners(self, date_id: DateId) -> int:
        feed = self._feeds.get(date_id)
        return 0 if feed is None else len(feed.listeners)


async def stream(
    feeds: SeatFeeds,
    date_id: DateId,
    deps: Dependencies,
    snapshot: Callable[[Sequence[SeatView]], bytes],
) -> AsyncGenerator[bytes, None]:
    """The events of one listener: a snapshot (read once it listens, so that no change falls
    between the two; ``snapshot`` encodes it), then the changes, with heartbeats."""
    async with feeds.listening(date_id, deps) as listener:
        yield snapshot(await usecases.seat_statuses(date_id, deps=deps))
        while True:
            try:
                message = await asyncio.wait_for(listener.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield HEARTBEAT
                continue
            if message is _GONE:
                return
            yield message
