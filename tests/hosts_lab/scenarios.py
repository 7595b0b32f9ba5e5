"""The five scenarios, in order, on one lab (`run_all`):

1. the rush: every customer at once for the rush date's seats, through HAProxy;
2. the same on a fresh date, one host SIGKILLed mid-rush, then started again;
3. a rolling restart under steady load: each host in turn SIGTERMed, waited for, started
   again and waited for until HAProxy sees it up;
4. read-your-writes: a hold, a cancellation and a charge answered by one host, read at once
   on every other host directly (the seat map, ``GET /me``);
5. a lost answer: a hold sent to one host through a proxy that drops the answer, the host
   SIGKILLed, the hold sent again through HAProxy with the same ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import psycopg

from .client import Answer, Browser
from .dropper import Dropped, ReplyDropper
from .haproxy import Watch, access_log
from .hosts import PORT, Host
from .lab import Lab
from .load import Customer, Recorder, Stage, Visits
from .results import Kill, Result, collected, log_offsets
from .ryw import read_your_writes

RUSH_WITHIN = 90.0  # a customer not served by then gives up
BACK_UP_WITHIN = 60.0

Scenario = Callable[[Lab, Watch], Awaitable[Result]]
T = TypeVar("T")


@contextlib.asynccontextmanager
async def _visits(lab: Lab, recorder: Recorder, seed: int) -> AsyncIterator[Visits]:
    visits = Visits(lab.haproxy.url, recorder, lab.shop, lab.options.seed + seed)
    try:
        yield visits
    finally:
        visits.close()


async def _everyone(visits: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    return list(await asyncio.gather(*visits))


def _ends(ends: list[str], stage: Stage, customers: int) -> tuple[str, list[str]]:
    counted = collections.Counter(ends)
    note = f"{customers} customers for {len(stage.seat_ids)} seats: " + ", ".join(
        f"{n} {end}" for end, n in counted.most_common()
    )
    bought = counted["bought"]
    problems = (
        [] if bought == len(stage.seat_ids) else [f"{bought} of {len(stage.seat_ids)} seats bought"]
    )
    return note, problems


async def rush(lab: Lab, watch: Watch) -> Result:
    stage = lab.stages["rush"]
    recorder = Recorder("rush")
    async with _visits(lab, recorder, 0) as visits:
        deadline = time.monotonic() + RUSH_WITHIN
        ends = await asyncio.gather(*(visits.rush_visit(c, stage, deadline) for c in lab.rushing))
    note, problems = _ends(list(ends), stage, len(lab.rushing))
    return Result("1 rush", recorder.outcomes, notes=[note], problems=problems)


async def _kill(host: Host) -> Kill:
    began = time.time()
    return Kill(host.name, began, await asyncio.to_thread(host.kill))


async def _back_up(host: Host, watch: Watch) -> tuple[float | None, str]:
    """Start ``host`` again: seconds until HAProxy sees it up, or why not."""
    started = time.time()
    host.start()
    up = await watch.wait_for(host.name, "UP", started, BACK_UP_WITHIN)
    if up is None:
        return None, f"{host.name} not seen UP {BACK_UP_WITHIN:.0f} s after its start"
    return up - started, ""


def _in_flight(lab: Lab, kill: Kill) -> str:
    """What HAProxy's log says of the requests it had sent to the host when it was killed."""
    lines = [
        line
        for line in access_log(lab.haproxy.log_path).values()
        if line.at <= kill.done and line.at + line.total_ms / 1000 >= kill.began
    ]
    retried = [line for line in lines if line.redispatched and 200 <= line.status < 500]
    on_host = [line for line in lines if line.server == kill.host]
    return (
        f"at the kill HAProxy had {len(lines)} requests under way: {len(on_host)} ended on "
        f"{kill.host} (statuses {dict(collections.Counter(line.status for line in on_host))}), "
        f"{len(retried)} answered after a retry on another host"
    )


async def kill_mid_rush(lab: Lab, watch: Watch) -> Result:
    stage = lab.stages["kill"]
    victim = lab.hosts[1 % len(lab.hosts)]
    recorder = Recorder("kill")
    result = Result("2 SIGKILL mid-rush")
    async with _visits(lab, recorder, 1) as visits, asyncio.TaskGroup() as group:
        deadline = time.monotonic() + RUSH_WITHIN
        rushing = group.create_task(
            _everyone(visits.rush_visit(c, stage, deadline) for c in lab.rushing)
        )
        paid_before = max(2, len(stage.seat_ids) // 5)
        for _ in range(600):  # until a fifth of the seats are paid for, a minute at most
            paid = sum(o.what == "POST /payments" and o.status == 201 for o in recorder.outcomes)
            if paid >= paid_before or rushing.done():
                break
            await asyncio.sleep(0.1)
        kill = await _kill(victim)
        result.kills.append(kill)
        down = await watch.wait_for(victim.name, "DOWN", kill.began, 15)
    note, result.problems = _ends(rushing.result(), stage, len(lab.rushing))
    up, why = await _back_up(victim, watch)
    if why:
        result.problems.append(why)
    last_failure = max((o.ended for o in recorder.outcomes if o.failed), default=None)
    result.recovery = (
        f"{victim.name} DOWN in HAProxy {_after(down, kill.began)} after the kill; last failure "
        f"{_after(last_failure, kill.began)} after it; UP {_seconds(up)} after its restart"
    )
    result.outcomes = recorder.outcomes
    result.notes += [note, f"killed {victim.name} after {paid} payments", _in_flight(lab, kill)]
    return result


def _after(moment: float | None, since: float) -> str:
    return "never" if moment is None else f"{moment - since:+.2f} s"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


async def _restart(host: Host, watch: Watch, grace: float) -> tuple[str, list[str]]:
    """SIGTERM, wait for the exit, start, wait until HAProxy sees it up."""
    problems = []
    began = time.time()
    host.terminate()
    exited = await asyncio.to_thread(host.wait_exit, grace + 30)
    exit_at = time.time()
    if not exited:
        problems.append(f"{host.name} still running {grace + 30:.0f} s after SIGTERM: killed")
        await asyncio.to_thread(host.kill)
    # uvicorn ends a stop by raising the signal again: -SIGTERM is a clean exit too
    clean = (0, -signal.SIGTERM, None)
    codes = {name: code for name, code in host.exit_codes().items() if code not in clean}
    if codes:
        problems.append(f"{host.name} exited with {codes} after SIGTERM")
    down = await watch.wait_for(host.name, "DOWN", began, 5)
    up, why = await _back_up(host, watch)
    problems += [why] if why else []
    step = (
        f"{host.name}: DOWN {_after(down, began)}, exited {exit_at - began:+.2f} s after "
        f"SIGTERM, UP {_seconds(up)} after its start"
    )
    return step, problems


async def rolling_restart(lab: Lab, watch: Watch) -> Result:
    stage = lab.stages["rolling"]
    recorder = Recorder("rolling")
    result = Result("3 rolling restart")
    stop = asyncio.Event()
    async with _visits(lab, recorder, 2) as visits, asyncio.TaskGroup() as group:
        began = time.monotonic()
        deadline = began + lab.options.seconds + 60 * len(lab.hosts)
        group.create_task(_everyone(visits.steady(c, stage, stop, deadline) for c in lab.steady))
        await asyncio.sleep(1.5)
        steps = []
        for host in lab.hosts:
            step, problems = await _restart(host, watch, lab.options.grace)
            steps.append(step)
            result.problems += problems
        await asyncio.sleep(max(1.0, lab.options.seconds - (time.monotonic() - began)))
        stop.set()
    result.outcomes = recorder.outcomes
    result.recovery = "; ".join(steps)
    result.notes.append(
        f"{len(lab.steady)} customers for {time.monotonic() - began:.0f} s on "
        f"{len(stage.seat_ids)} seats; shutdown grace {lab.options.grace} s"
    )
    return result


async def ryw(lab: Lab, watch: Watch) -> Result:
    recorder = Recorder("ryw")
    async with _visits(lab, recorder, 3) as visits:
        checked, stale = await read_your_writes(lab, visits)
    result = Result("4 read-your-writes", recorder.outcomes)
    result.recovery = f"{len(stale)} stale of {checked} reads"
    result.problems += stale
    return result


async def _live_holds(lab: Lab, customer: Customer, seat: int) -> list[tuple[int, str]]:
    async with await psycopg.AsyncConnection.connect(lab.postgres.url, autocommit=True) as db:
        cursor = await db.execute(
            "SELECT reservation_id, status FROM reservations WHERE user_id = %s AND seat_id = %s "
            "AND (status = 'paid' OR (status = 'held' AND expires_at > now())) "
            "ORDER BY reservation_id",
            (customer.user_id, seat),
        )
        return [(int(rid), str(status)) for rid, status in await cursor.fetchall()]


async def lost_answer(lab: Lab, watch: Watch) -> Result:
    stage = lab.stages["lost answer"]
    victim = lab.hosts[0]
    customer = lab.readers[0]
    recorder = Recorder("lost")
    result = Result("5 lost answer")
    dropper = ReplyDropper(str(victim.namespace.address), PORT)
    await dropper.start()
    try:
        async with _visits(lab, recorder, 4) as visits:
            if not await visits.admitted(customer, time.monotonic() + 30):
                result.problems.append("the customer was not admitted")
                result.outcomes = recorder.outcomes
                return result
            seat = stage.seat_ids[0]
            headers = {**customer.queued, "Idempotency-Key": customer.key("hold")}
            body = {"seat_id": seat}
            answered = await recorder.call(
                Browser(),
                "POST",
                f"{dropper.url}/reservations",
                headers=headers,
                json=body,
                via=victim.name,
            )
            result.expected_ids.add(recorder.outcomes[-1].request_id)
            kill = await _kill(victim)
            result.kills.append(kill)
            retried = await visits.send(customer, "POST", "/reservations", headers, body)
            retried_at = time.time()
            lost = dropper.dropped[0] if dropper.dropped else None
            live = await _live_holds(lab, customer, seat)
            result.problems += _lost_answer_problems(answered, lost, retried, live)
            for rid, status in live:
                if status == "held":
                    await visits.cancel(customer, rid)
            result.outcomes = recorder.outcomes
    finally:
        await dropper.close()
    up, why = await _back_up(victim, watch)
    result.problems += [why] if why else []
    result.recovery = (
        f"retry answered {retried_at - kill.done:.2f} s after {victim.name} was killed; "
        f"{victim.name} UP {_seconds(up)} after its restart"
    )
    result.notes.append(
        f"lost answer: {_answer(lost.status, lost.body) if lost else 'none'}; the retry: "
        f"{'none' if retried is None else _answer(retried.status, retried.body)}; "
        f"live holds of the customer on seat {seat}: {live}"
    )
    return result


def _answer(status: int, body: bytes) -> str:
    return f"{status} {body[:160].decode(errors='replace')}"


def _reservation_id(body: bytes) -> int | None:
    try:
        return int(json.loads(body)["reservation_id"])
    except (ValueError, KeyError, TypeError):
        return None


def _lost_answer_problems(
    answered: Answer | None,
    lost: Dropped | None,
    retried: Answer | None,
    live: list[tuple[int, str]],
) -> list[str]:
    if answered is not None:
        return [f"the proxy did not lose the answer: {answered.status}"]
    if lost is None or lost.status != 201:
        return [f"the first hold did not succeed on the host: {lost}"]
    first = _reservation_id(lost.body)
    problems = []
    if retried is None or retried.status != 201:
        problems.append(
            "the retry with the same Idempotency-Key did not get the first answer: "
            + ("no answer" if retried is None else _answer(retried.status, retried.body))
        )
    elif _reservation_id(retried.body) != first:
        problems.append(f"the retry got reservation {_reservation_id(retried.body)}, not {first}")
    if [rid for rid, _ in live] != [first]:
        problems.append(f"live holds of the seat {live}, not just reservation {first}")
    return problems


@contextlib.asynccontextmanager
async def _lag() -> AsyncIterator[list[float]]:
    """The worst lateness of this event loop meanwhile: a busy lab is a late client."""
    worst = [0.0]

    async def measure() -> None:
        for _ in range(100_000):  # an hour and more
            before = time.monotonic()
            await asyncio.sleep(0.05)
            worst[0] = max(worst[0], time.monotonic() - before - 0.05)

    task = asyncio.create_task(measure())
    try:
        yield worst
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


SCENARIOS: list[Scenario] = [rush, kill_mid_rush, rolling_restart, ryw, lost_answer]


async def run_all(lab: Lab, only: set[int] | None = None) -> list[Result]:
    """Every scenario (or those numbered in ``only``), each completed by `collected`."""
    results = []
    watch = Watch(lab.haproxy)
    async with watch.running():
        for number, scenario in enumerate(SCENARIOS, 1):
            if only and number not in only:
                continue
            names = [host.name for host in lab.hosts]
            if not await watch.all_up(names, BACK_UP_WITHIN):
                raise RuntimeError(f"hosts not up before scenario {number}: {watch.current}")
            offsets = log_offsets(lab)
            began = time.monotonic()
            async with _lag() as worst:
                result = await scenario(lab, watch)
            result.seconds = time.monotonic() - began
            result.notes.append(f"the lab's event loop lagged {worst[0]:.2f} s at worst")
            results.append(await collected(lab, result, offsets))
    return results
