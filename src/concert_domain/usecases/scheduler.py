"""One scheduler tick: tidy what time has made stale. Any number of schedulers may tick at once.

Nothing here is needed for correctness: a lapsed hold is already free to every reader and
writer. The tick marks it expired, drops its timer, frees queue room and admits the next in line.
"""

from __future__ import annotations

import attrs

from concert_domain.dependencies import Dependencies
from concert_domain.idempotency import RETENTION
from concert_domain.usecases.queue import admit_waiting, expire_idle_tokens
from concert_domain.usecases.reservations import sweep_expired_holds


@attrs.frozen
class TickReport:
    expired_holds: int
    expired_tokens: int
    admitted_tokens: int
    purged_idempotency_keys: int


async def run_scheduler_tick(*, deps: Dependencies) -> TickReport:
    expired_holds = await sweep_expired_holds(deps=deps)
    expired_tokens = await expire_idle_tokens(deps=deps)
    admitted = await admit_waiting(deps=deps)
    async with deps.uow() as uow:
        purged = await uow.idempotency.purge(deps.clock.now() - RETENTION)
        await uow.commit()
    return TickReport(expired_holds, expired_tokens, admitted, purged)
