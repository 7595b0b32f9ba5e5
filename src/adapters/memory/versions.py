"""Seat-map versions in process memory: right when one process serves (the embedded default)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from adapters.caching.seatmaps import SeatMapVersions
from concert_domain.ids import DateId


class InMemorySeatMapVersions(SeatMapVersions):
    def __init__(self) -> None:
        self._versions: dict[DateId, str] = {}
        self._counter = itertools.count(1)

    async def current(self, date_id: DateId) -> str:
        version = self._versions.get(date_id)
        if version is None:
            version = self._versions[date_id] = str(next(self._counter))
        return version

    async def bump(self, date_ids: Sequence[DateId]) -> None:
        for date_id in date_ids:
            self._versions[date_id] = str(next(self._counter))
