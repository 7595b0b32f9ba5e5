"""Read-your-writes across hosts: one customer per host, each round a hold answered by one
host, a cancellation by the next and a charge by the first, each read at once on every other
host directly (the seat map and ``GET /me``). A read that does not show an answered write is
stale: it is read again until it does (3 s at most) to say how late it was."""

from __future__ import annotations

import asyncio
import time

import attrs

from fault_lab import Customer

from .client import Answer
from .hosts import Host
from .lab import Lab
from .load import Stage, Visits

LATE_AT_MOST = 3.0


@attrs.frozen
class Expected:
    """What every host must show after a write: ``reservation`` held on ``seat`` or not, and
    the balance when it was a charge."""

    what: str
    seat: int
    reservation: int
    held: bool
    balance: int | None = None


@attrs.define
class Tally:
    checked: int = 0
    stale: list[str] = attrs.Factory(list)


async def _queued_get(visits: Visits, c: Customer, host: Host, path: str) -> Answer | None:
    """A read that needs the queue token, admitted again should the token have lapsed."""
    answer = None
    for _ in range(3):
        answer = await visits.send(c, "GET", path, c.queued, base=host.url, via=host.name)
        if answer is None or answer.status != 403:
            return answer
        await visits.admitted(c, time.monotonic() + 30)
    return answer


async def _wrong(
    visits: Visits, c: Customer, host: Host, stage: Stage, expected: Expected
) -> str | None:
    """What ``host`` shows that contradicts ``expected``; None when it shows it."""
    if expected.balance is None:
        seats = await _queued_get(visits, c, host, stage.seat_map)
        if seats is None or seats.status != 200:
            return f"its seat map answered {None if seats is None else seats.status}"
        status = next(s["status"] for s in seats.json()["seats"] if s["seat_id"] == expected.seat)
        if status != ("held" if expected.held else "available"):
            return f"its seat map shows seat {expected.seat} {status}"
    me = await visits.send(c, "GET", "/me", c.auth, base=host.url, via=host.name)
    if me is None or me.status != 200:
        return f"GET /me answered {None if me is None else me.status}"
    body = me.json()
    holding = any(h["reservation_id"] == expected.reservation for h in body["holds"])
    if holding != expected.held:
        return f"GET /me {'lacks' if expected.held else 'still has'} hold {expected.reservation}"
    if expected.balance is not None and body["balance"] != expected.balance:
        return f"GET /me shows balance {body['balance']}, not {expected.balance}"
    return None


async def _everywhere_but(
    writer: Host,
    lab: Lab,
    visits: Visits,
    c: Customer,
    stage: Stage,
    expected: Expected,
    tally: Tally,
) -> None:
    for host in lab.hosts:
        if host is writer:
            continue
        tally.checked += 1
        wrong = await _wrong(visits, c, host, stage, expected)
        if wrong is None:
            continue
        began = time.monotonic()
        late = "never within 3 s"
        for _ in range(int(LATE_AT_MOST / 0.1)):
            await asyncio.sleep(0.1)
            if await _wrong(visits, c, host, stage, expected) is None:
                late = f"shown {time.monotonic() - began:.2f} s later"
                break
        tally.stale.append(
            f"{expected.what} answered by {writer.name}, read on {host.name}: {wrong}; {late}"
        )


async def _hold_on(visits: Visits, c: Customer, host: Host, seat: int) -> int | None:
    for _ in range(3):
        headers = {**c.queued, "Idempotency-Key": c.key("hold")}
        held = await visits.send(
            c, "POST", "/reservations", headers, {"seat_id": seat}, base=host.url, via=host.name
        )
        if held is not None and held.status == 201:
            return int(held.json()["reservation_id"])
        if held is None or held.status != 403:
            return None
        await visits.admitted(c, time.monotonic() + 30)
    return None


async def _rounds(lab: Lab, visits: Visits, c: Customer, index: int, tally: Tally) -> None:
    stage, hosts, rounds = lab.stages["read-your-writes"], lab.hosts, lab.options.rounds
    if not await visits.admitted(c, time.monotonic() + 30):
        tally.stale.append(f"{c.email} was not admitted")
        return
    for r in range(rounds):
        writer = hosts[(index + r) % len(hosts)]
        canceller = hosts[(index + r + 1) % len(hosts)]
        seat = stage.seat_ids[(index * rounds + r) % len(stage.seat_ids)]
        reservation = await _hold_on(visits, c, writer, seat)
        if reservation is None:
            tally.stale.append(f"{writer.name} refused a hold of seat {seat}")
            continue
        held = Expected("a hold", seat, reservation, held=True)
        await _everywhere_but(writer, lab, visits, c, stage, held, tally)
        cancelled = await visits.send(
            c,
            "DELETE",
            f"/reservations/{reservation}",
            c.auth,
            base=canceller.url,
            via=canceller.name,
        )
        if cancelled is None or cancelled.status != 200:
            tally.stale.append(f"{canceller.name} did not cancel hold {reservation}")
            continue
        freed = Expected("a cancellation", seat, reservation, held=False)
        await _everywhere_but(canceller, lab, visits, c, stage, freed, tally)
        charged = await visits.send(
            c,
            "POST",
            "/wallet/charges",
            {**c.auth, "Idempotency-Key": c.key("charge")},
            {"amount": 1000},
            base=writer.url,
            via=writer.name,
        )
        if charged is None or charged.status != 200:
            tally.stale.append(f"{writer.name} did not charge the wallet")
            continue
        balance = int(charged.json()["balance"])
        topped = Expected("a charge", seat, reservation, held=False, balance=balance)
        await _everywhere_but(writer, lab, visits, c, stage, topped, tally)


async def read_your_writes(lab: Lab, visits: Visits) -> tuple[int, list[str]]:
    """How many reads were checked, and the stale ones."""
    tally = Tally()
    await asyncio.gather(*(_rounds(lab, visits, c, n, tally) for n, c in enumerate(lab.readers)))
    return tally.checked, tally.stale
