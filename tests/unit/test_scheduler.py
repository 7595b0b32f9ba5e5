import asyncio
from datetime import timedelta

import attrs
import pytest

from adapters.clock import ManualClock
from booking import PASSWORD, add_venue, admitted_customer, memory_deps
from concert_domain import BookingPolicy, Dependencies, QueuePolicy
from concert_domain.errors import StoreUnavailable
from concert_domain.ports import UnitOfWork
from concert_domain.usecases import (
    charge_wallet,
    hold_seat,
    join_queue,
    pay,
    queue_status,
    run_scheduler_tick,
    sign_up,
)
from entrypoints.scheduler import run_scheduler


class TestSchedulerTick:
    async def test_sweeps_lapsed_holds_expires_idle_tokens_and_admits_the_next_in_line(
        self, clock: ManualClock
    ) -> None:
        deps = memory_deps(clock, BookingPolicy(queue=QueuePolicy(capacity=1, active_seconds=600)))
        venue = await add_venue(deps, seats=2)
        mina = await admitted_customer(deps, "mina@example.com")
        await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        joon = await sign_up("joon@example.com", PASSWORD, deps=deps)
        waiting, _ = await join_queue(joon.user_id, deps=deps)
        assert waiting.status == "waiting"

        report = await run_scheduler_tick(deps=deps)
        assert (report.expired_holds, report.expired_tokens, report.admitted_tokens) == (0, 0, 0)

        clock.advance(timedelta(minutes=10))
        report = await run_scheduler_tick(deps=deps)
        assert (report.expired_holds, report.expired_tokens, report.admitted_tokens) == (1, 1, 1)
        assert (await queue_status(joon.user_id, waiting.token, deps=deps)).status == "active"

    async def test_forgets_idempotency_keys_after_a_day(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        venue = await add_venue(deps, seats=1)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 50_000, "charge", deps=deps)
        held = await hold_seat(mina.user_id, mina.queue_token, venue.seats[0].seat_id, deps=deps)
        await pay(mina.user_id, mina.queue_token, held.reservation_id, "pay", deps=deps)
        clock.advance(timedelta(hours=23))
        assert (await run_scheduler_tick(deps=deps)).purged_idempotency_keys == 0
        clock.advance(timedelta(hours=1, seconds=1))
        assert (await run_scheduler_tick(deps=deps)).purged_idempotency_keys == 2
        assert await charge_wallet(mina.user_id, 1_000, "charge", deps=deps) == 1_000


class TestSchedulerLoop:
    async def test_outlives_a_tick_that_fails_in_any_way(
        self, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        deps = memory_deps(clock)
        ticks: list[str] = []
        stop = asyncio.Event()
        failures = iter([StoreUnavailable("the database cannot be reached"), RuntimeError("bug")])

        def unit_of_work(*, read_only: bool = False) -> UnitOfWork:
            ticks.append("tick")
            if len(ticks) == 4:
                stop.set()
            failure = next(failures, None)
            if failure is not None:
                raise failure
            return deps.uow(read_only=read_only)

        flaky = attrs.evolve(deps, uow=unit_of_work)
        await asyncio.wait_for(run_scheduler(flaky, 0, stop), timeout=5)
        assert len(ticks) >= 4  # went on after both failures
        assert "scheduler tick skipped: the database cannot be reached" in caplog.text
        assert "scheduler tick failed" in caplog.text and "RuntimeError: bug" in caplog.text
