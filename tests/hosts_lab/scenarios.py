"""The five scenarios, in order, on one lab (`run_all`):

1. the rush: every customer at once for the rush date's seats, through HAProxy;
2. the same on a fresh date, one host SIGKILLed mid-rush (HAProxy must mark it DOWN within
   `DOWN_WITHIN` s), then started again while the rush goes on;
3. a rolling restart under steady load: each host in turn SIGTERMed, waited for, started
   again and waited for until HAProxy sees it up; each must live on for its shutdown grace,
   and HAProxy must mark it DOWN before it exits;
4. read-your-writes: a hold, a cancellation and a charge answered by one host, read at once
   on every other host directly (the seat map, ``GET /me``);
5. a lost answer, twice (a named seat, then the best two seats side by side): a hold sent to
   one host through a proxy that drops the answer, the host SIGKILLed, the hold sent again
   through HAProxy with the same ``Idempotency-Key``: the same answer, and no other
   reservation of the customer's, whatever its status or seat.
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

from fault_lab import Customer

from .client import Answer, Browser
from .dropper import Dropped, ReplyDropper
from .haproxy import Watch, access_log
from .hosts import PORT, Host
from .lab import Lab
from .load import Recorder, Stage, Visits
from .results import Kill, Result, collected, log_offsets
from .ryw import read_your_writes

RUSH_WITHIN = 90.0  # a customer not served by then gives up
BACK_UP_WITHIN = 60.0
DOWN_WITHIN = 3.0  # HAProxy marks a killed host DOWN by then (checks: 2 failures, 250 ms apart)
EXIT_POLL = 0.01  # seconds between looks at a stopping host's `concert serve`

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
    result = Result("1 rush", recorder.outcomes, notes=[note], problems=problems)
    result.waits = recorder.waits
    return result


async def _kill(lab: Lab, host: Host) -> Kill:
    """SIGKILL every process of ``host``, reading just before (and just after) which
    customers' connections HAProxy serves with it: a request on one of them that gets neither
    an answer nor a log line was in flight on the host (`results.on_killed_host`)."""
    pids = await asyncio.to_thread(host.pids)
    began = time.time()
    before = await _sessions(lab)
    done = host.send_kill(pids)
    after = await _sessions(lab)
    await asyncio.to_thread(host.finish_kill)
    served = [*before.items(), *after.items()]
    return Kill(host.name, began, done, frozenset(port for port, s in served if s == host.name))


async def _sessions(lab: Lab) -> dict[int, str]:
    with contextlib.suppress(OSError, TimeoutError, ValueError):
        return await lab.haproxy.sessions()
    return {}


async def _down(watch: Watch, kill: Kill) -> tuple[float | None, list[str]]:
    """When HAProxy was seen to mark the killed host DOWN, and a problem unless it was within
    `DOWN_WITHIN` s of the SIGKILL."""
    down = await watch.wait_for(kill.host, "DOWN", kill.began, DOWN_WITHIN + 10)
    if down is None or down - kill.done > DOWN_WITHIN:
        return down, [
            f"HAProxy did not mark {kill.host} DOWN within {DOWN_WITHIN:.0f} s of its SIGKILL "
            f"({_after(down, kill.done)})"
        ]
    return down, []


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
        kill = await _kill(lab, victim)
        result.kills.append(kill)
        down, problems = await _down(watch, kill)
        result.problems += problems
        # started again while the rush goes on (its customers still waiting on a key in use)
        up, why = await _back_up(victim, watch)
    note, ended = _ends(rushing.result(), stage, len(lab.rushing))
    result.problems += ended + ([why] if why else [])
    last_failure = max((o.ended for o in recorder.outcomes if o.failed), default=None)
    result.recovery = (
        f"{victim.name} DOWN in HAProxy {_after(down, kill.done)} after the SIGKILL; last failure "
        f"{_after(last_failure, kill.done)} after it; UP {_seconds(up)} after its restart"
    )
    result.outcomes = recorder.outcomes
    result.waits = recorder.waits
    result.notes += [
        note,
        f"killed {victim.name} after {paid} payments; HAProxy served {len(kill.ports)} "
        "customer connections with it at the kill",
        _in_flight(lab, kill),
    ]
    return result


def _after(moment: float | None, since: float) -> str:
    return "never" if moment is None else f"{moment - since:+.2f} s"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


async def _restart(host: Host, watch: Watch, grace: float) -> tuple[str, list[str]]:
    """SIGTERM, wait for the exit, start, wait until HAProxy sees it up. ``concert serve``
    must live on for ``grace`` s at least (it was alive then: looked at every `EXIT_POLL` s)
    and HAProxy must have marked the host DOWN while it still lived."""
    problems = []
    began = time.time()
    host.terminate()
    alive = await _last_alive(host, grace + 30)
    exited = await asyncio.to_thread(host.wait_exit, 10)
    if not exited or alive is None:
        problems.append(f"{host.name} still running {grace + 40:.0f} s after SIGTERM: killed")
        await asyncio.to_thread(host.kill)
    # uvicorn ends a stop by raising the signal again: -SIGTERM is a clean exit too
    clean = (0, -signal.SIGTERM, None)
    codes = {name: code for name, code in host.exit_codes().items() if code not in clean}
    if codes:
        problems.append(f"{host.name} exited with {codes} after SIGTERM")
    down = await watch.wait_for(host.name, "DOWN", began, 5)
    if alive is not None and alive - began < grace:
        problems.append(
            f"{host.name} exited {alive - began:.2f} s after SIGTERM at the latest, before its "
            f"grace of {grace} s"
        )
    if alive is not None and (down is None or down > alive):
        problems.append(
            f"HAProxy did not mark {host.name} DOWN before it exited (DOWN "
            f"{_after(down, began)}, exited {alive - began:+.2f} s after SIGTERM)"
        )
    up, why = await _back_up(host, watch)
    problems += [why] if why else []
    lived = "never" if alive is None else f"{alive - began:+.2f} s"
    step = (
        f"{host.name}: DOWN {_after(down, began)}, alive {lived} after SIGTERM (then exited), "
        f"UP {_seconds(up)} after its start"
    )
    return step, problems


async def _last_alive(host: Host, seconds: float) -> float | None:
    """The last moment (time.time()) ``concert serve`` was seen running before it exited;
    None if it still runs after ``seconds``."""
    alive = time.time()
    for _ in range(int(seconds / EXIT_POLL) + 1):
        looked = time.time()
        if host.serve_exited():
            return alive
        alive = looked
        await asyncio.sleep(EXIT_POLL)
    return None


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
    result.waits = recorder.waits
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
    result.waits = recorder.waits
    result.recovery = f"{len(stale)} stale of {checked} reads"
    result.problems += stale
    return result


async def _reservations_of(lab: Lab, customer: Customer) -> list[tuple[int, int, str]]:
    """Every reservation of the customer's (id, seat, status), whatever its status or seat.
    (Ids come in blocks, one per host connection: a newer one may be numbered lower.)"""
    async with await psycopg.AsyncConnection.connect(lab.postgres.url, autocommit=True) as db:
        cursor = await db.execute(
            "SELECT reservation_id, seat_id, status FROM reservations WHERE user_id = %s "
            "ORDER BY reservation_id",
            (customer.user_id,),
        )
        return [(int(rid), int(seat), str(status)) for rid, seat, status in await cursor.fetchall()]


async def lost_answer(lab: Lab, watch: Watch) -> Result:
    """Twice: a hold of a named seat, and of the best two seats side by side."""
    stage = lab.stages["lost answer"]
    recorder = Recorder("lost")
    result = Result("5 lost answer")
    runs = [
        ("a named seat", lab.hosts[0], {"seat_id": stage.seat_ids[0]}, 1),
        (
            "best available",
            lab.hosts[1 % len(lab.hosts)],
            {"date_id": stage.date_id, "quantity": 2},
            2,
        ),
    ]
    recoveries = []
    async with _visits(lab, recorder, 4) as visits:
        for what, victim, body, seats in runs:
            recoveries.append(
                await _lose_an_answer(lab, watch, visits, result, what, victim, body, seats)
            )
    result.outcomes = recorder.outcomes
    result.waits = recorder.waits
    result.recovery = "; ".join(recoveries)
    return result


async def _lose_an_answer(
    lab: Lab,
    watch: Watch,
    visits: Visits,
    result: Result,
    what: str,
    victim: Host,
    body: dict[str, int],
    seats: int,
) -> str:
    """A hold sent to ``victim`` through the dropper, which loses its answer; ``victim``
    SIGKILLed; the hold sent again through HAProxy with the same key. The retry must answer the
    same body (the same reservations), and the customer must have made no other reservation
    since the run began; then the holds are cancelled and the victim started again."""
    customer = lab.readers[0]
    if not await visits.admitted(customer, time.monotonic() + 30):
        result.problems.append(f"{what}: the customer was not admitted")
        return f"{what}: not run"
    before = {rid for rid, _, _ in await _reservations_of(lab, customer)}
    key = customer.key("hold")
    headers = {**customer.queued, "Idempotency-Key": key}
    dropper = ReplyDropper(str(victim.namespace.address), PORT)
    await dropper.start()
    browser = Browser()
    try:
        lab.shop.sending(customer.user_id, "POST", "/reservations", key, body)
        answered = await visits.recorder.call(
            browser,
            "POST",
            f"{dropper.url}/reservations",
            headers=headers,
            json=body,
            via=victim.name,
        )
        result.expected_ids.add(visits.recorder.outcomes[-1].request_id)
        kill = await _kill(lab, victim)
        result.kills.append(kill)
        retried = await visits.send(customer, "POST", "/reservations", headers, body)
        retried_at = time.time()
        down, problems = await _down(watch, kill)
        lost = dropper.dropped[0] if dropper.dropped else None
        made = [r for r in await _reservations_of(lab, customer) if r[0] not in before]
        problems += _lost_answer_problems(answered, lost, retried, made, seats)
        result.problems += [f"{what}: {problem}" for problem in problems]
        for rid, _, status in made:
            if status == "held":
                await visits.cancel(customer, rid)
    finally:
        browser.close()
        await dropper.close()
    up, why = await _back_up(victim, watch)
    result.problems += [f"{what}: {why}"] if why else []
    result.notes.append(
        f"{what} {body}: lost answer {_answer(lost.status, lost.body) if lost else 'none'}; "
        f"the retry {'none' if retried is None else _answer(retried.status, retried.body)}; "
        f"the customer's reservations since: {made}"
    )
    return (
        f"{what}: retry answered {retried_at - kill.done:.2f} s after {victim.name}'s SIGKILL, "
        f"DOWN {_after(down, kill.done)}, UP {_seconds(up)} after its restart"
    )


def _answer(status: int, body: bytes) -> str:
    return f"{status} {body[:160].decode(errors='replace')}"


def _reservation_ids(body: bytes) -> list[int] | None:
    """The reservations an answer to a hold names: one, or a list of them."""
    try:
        answer = json.loads(body)
        if "reservations" in answer:
            return [int(r["reservation_id"]) for r in answer["reservations"]]
        return [int(answer["reservation_id"])]
    except (ValueError, KeyError, TypeError):
        return None


def _parsed(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body


def _lost_answer_problems(
    answered: Answer | None,
    lost: Dropped | None,
    retried: Answer | None,
    made: list[tuple[int, int, str]],
    seats: int,
) -> list[str]:
    if answered is not None:
        return [f"the proxy did not lose the answer: {answered.status}"]
    if lost is None or lost.status != 201:
        return [f"the first hold did not succeed on the host: {lost}"]
    first = _reservation_ids(lost.body)
    problems = []
    if first is None or len(first) != seats:
        problems.append(f"the lost answer names {first}, not {seats} reservations")
    if retried is None or retried.status != 201:
        problems.append(
            "the retry with the same Idempotency-Key did not get the first answer: "
            + ("no answer" if retried is None else _answer(retried.status, retried.body))
        )
    elif _reservation_ids(retried.body) != first:
        problems.append(f"the retry got reservations {_reservation_ids(retried.body)}, not {first}")
    elif _parsed(retried.body) != _parsed(lost.body):
        problems.append(
            f"the retry's body {_answer(retried.status, retried.body)} is not the lost one "
            f"{_answer(lost.status, lost.body)}"
        )
    if sorted(rid for rid, _, _ in made) != sorted(first or []):
        problems.append(f"the customer's reservations since the run began {made}, not just {first}")
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
