"""The seat-map read model: each process keeps the last seat map it read per date and serves
it again while nothing has changed, without being late.

A kept map is served only while all three hold:

- the date's stamp is the one taken before the map was read (`ports.SeatMapStamps`): a hold,
  cancellation or payment renews the stamp after it commits and before it answers, so any
  request made after a change has been answered misses and reads the database;
- no hold shown on it has lapsed (a held seat is available from its ``held_until`` on);
- it is younger than ``max_age``, a bound on lateness should a renewal itself be lost.

Many requests that miss at once share one read of the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import attrs

from concert_domain.catalog import SeatView
from concert_domain.ids import DateId

MAX_AGE = timedelta(seconds=2)
SeatMap = tuple[SeatView, ...]


@attrs.frozen
class _Kept:
    stamp: str
    seats: SeatMap
    read_at: datetime
    good_until: datetime

    def serves(self, stamp: str, now: datetime) -> bool:
        return stamp == self.stamp and self.read_at <= now < self.good_until


class SeatMapCache:
    """Seat maps by date for one process. Bounded: forgets everything past ``limit`` dates."""

    def __init__(self, *, max_age: timedelta = MAX_AGE, limit: int = 10_000) -> None:
        self._max_age = max_age
        self._limit = limit
        self._kept: dict[DateId, _Kept] = {}
        self._reading: dict[tuple[DateId, str], asyncio.Task[_Kept]] = {}

    async def get(
        self,
        date_id: DateId,
        stamp: str,
        now: datetime,
        read: Callable[[], Awaitable[Sequence[SeatView]]],
    ) -> SeatMap:
        """The date's seat map at ``now``: kept, or from ``read`` (the database at ``now``),
        which is then kept under ``stamp`` (taken before calling)."""
        kept = self._kept.get(date_id)
        if kept is not None and kept.serves(stamp, now):
            return kept.seats
        key = (date_id, stamp)
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read(date_id, stamp, now, read))
            self._reading[key] = reading
            reading.add_done_callback(lambda task: self._done(key, task))
        # shielded: a request that gives up does not cancel the read the others wait for
        kept = await asyncio.shield(reading)
        if kept.serves(stamp, now):
            return kept.seats
        return tuple(await read())  # read by another at an instant that no longer holds

    def _done(self, key: tuple[DateId, str], task: asyncio.Task[_Kept]) -> None:
        self._reading.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter has given up

    async def _read(
        self,
        date_id: DateId,
        stamp: str,
        now: datetime,
        read: Callable[[], Awaitable[Sequence[SeatView]]],
    ) -> _Kept:
        seats = tuple(await read())
        lapses = [view.held_until for view in seats if view.held_until is not None]
        good_until = min([now + self._max_age, *lapses])
        kept = _Kept(stamp, seats, now, good_until)
        if len(self._kept) >= self._limit:
            self._kept.clear()
        self._kept[date_id] = kept
        return kept
