"""Steps that follow a committed change and may fail without harm.

Once the database has committed a payment or a cancellation, the answer is decided. Dropping a
hold timer or expiring a queue token afterwards only tidies what Redis owns, which is allowed
to be lost: a timer lapses with its hold, a token with its lifetime. A failure there must not
turn a success into an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from concert_domain.errors import StoreUnavailable

log = logging.getLogger("concert_domain")


async def follow_up(step: Awaitable[None], what: str) -> None:
    """Await ``step``; if its store is unavailable, log that ``what`` was not done."""
    try:
        await step
    except StoreUnavailable:
        log.warning("could not %s; it will lapse on its own", what)


_running: set[asyncio.Task[None]] = set()


def follow_up_later(step: Coroutine[Any, Any, None], what: str) -> None:
    """`follow_up` without waiting for it: for tidying after a store has just failed, which
    would most likely make the caller wait as long again for nothing."""
    task = asyncio.get_running_loop().create_task(follow_up(step, what))
    _running.add(task)  # kept until done, so that it is not collected while it runs
    task.add_done_callback(_running.discard)
