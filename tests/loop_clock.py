"""A hand on the running event loop's clock, for tests of code that keeps time by it."""

from __future__ import annotations

import asyncio


class LoopClock:
    """The test's hand on its event loop's clock: `shift` moves the time every timer and
    deadline of the loop sees, to wait out a pause without sleeping or to hold the time back
    so that "at once" does not depend on the machine's speed. Shift only while no guard runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._real = loop.time
        self._offset = 0.0

    def __enter__(self) -> LoopClock:
        setattr(self._loop, "time", lambda: self._real() + self._offset)  # noqa: B010
        return self

    def __exit__(self, *exc_info: object) -> None:
        delattr(self._loop, "time")

    def shift(self, seconds: float) -> None:
        self._offset += seconds
