"""Seat-map stamps in process memory: right when one process serves (the embedded default)."""

from __future__ import annotations

import itertools

from concert_domain.ids import DateId
from concert_domain.ports import SeatMapStamps


class InMemorySeatMapStamps(SeatMapStamps):
    def __init__(self) -> None:
        self._stamps: dict[DateId, str] = {}
        self._counter = itertools.count(1)

    async def current(self, date_id: DateId) -> str:
        stamp = self._stamps.get(date_id)
        if stamp is None:
            stamp = self._stamps[date_id] = str(next(self._counter))
        return stamp

    async def renew(self, date_id: DateId) -> None:
        self._stamps[date_id] = str(next(self._counter))
