"""The scheduler loop: a tick every interval until told to stop. Any number may run at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from concert_domain import Dependencies, usecases
from concert_domain.errors import StoreUnavailable
from concert_domain.usecases import TickReport

log = logging.getLogger("concert.scheduler")


async def run_scheduler(
    deps: Dependencies,
    interval: float,
    stop: asyncio.Event,
    on_tick: Callable[[TickReport, float], None] | None = None,
) -> None:
    """Tick until ``stop`` is set. A store that is down is logged and tried again next tick;
    so is anything else a tick raises, with its traceback: the loop outlives any one tick, for
    without it holds stay held past their time and the line stops moving."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            report = await usecases.run_scheduler_tick(deps=deps)
        except StoreUnavailable as e:
            log.warning("scheduler tick skipped: %s", e.message)
        except Exception:
            log.exception("scheduler tick failed; trying again next tick")
        else:
            if on_tick is not None:
                on_tick(report, time.perf_counter() - started)
            if report.expired_holds or report.expired_tokens or report.admitted_tokens:
                log.info(
                    "released %d lapsed holds, expired %d idle tokens, admitted %d",
                    report.expired_holds,
                    report.expired_tokens,
                    report.admitted_tokens,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
