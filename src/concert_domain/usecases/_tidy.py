"""Tidying that follows a committed change and may fail without harm.

Once the database has committed a payment or a cancellation, the answer is decided. Dropping a
hold timer or expiring a queue token afterwards only tidies what Redis owns, which is allowed
to be lost: a timer lapses with its hold, a token with its lifetime. A failure there must not
turn a success into an error.

The seat-map stamp is renewed the same way: should that fail, the processes' kept seat maps
stay at most `seatmaps.MAX_AGE` late.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from concert_domain.dependencies import Dependencies
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import DateId

log = logging.getLogger("concert_domain")


async def tidy(step: Awaitable[None], what: str) -> None:
    try:
        await step
    except StoreUnavailable:
        log.warning("could not %s; it will lapse on its own", what)


async def seat_map_changed(date_id: DateId, deps: Dependencies) -> None:
    """Tell every process that the date's seat map changed: call after the commit and before
    the answer."""
    await tidy(deps.stamps.renew(date_id), "renew a seat map's stamp")
