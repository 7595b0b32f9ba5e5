"""Faults under load: ``concert serve --workers 2`` on PostgreSQL and Redis, each behind a
fault proxy (`fault_proxy`), while customers race for seats and pay (`fault_lab.Rush`).

One scenario per test, on one service for the module: latency; resets, a black hole and
replies cut in the middle on each store's link; PostgreSQL stopped (fast, then immediate) and
started again mid-rush; Redis paused (SIGSTOP) for five seconds; one worker killed (SIGKILL)
with payments in flight. After each: no seat sold twice, money exact (each balance is its
charges less its payments, every payment whole, every acknowledged payment and charge in the
ledger), no hold kept past its expiry (in PostgreSQL, in Redis, and a lapsed seat can be held
again); every failed answer a 503 ``unavailable`` with the error body within about two seconds,
no hang, no broken connection (but those in flight on the killed worker); and the service
answering normally within five seconds of the fault's end, a probe customer's whole visit
passing and no request started later failing.

Run with ``-s`` to see the figures: one table row per fault, the whole table at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest

import services
from fault_lab import (
    HOLD_SECONDS,
    TABLE_HEAD,
    Lab,
    Scenario,
    kill_worker_mid_payment,
    lab_running,
    postgres_start,
    postgres_stop,
    proxy_fault,
    redis_pause,
    redis_resume,
    run_scenario,
    worker_replaced,
)
from fault_proxy import Fault, FaultProxy

pytestmark = pytest.mark.integration

CUSTOMERS = 16

SCENARIOS = [
    Scenario(
        "latency 150 ms each way, both stores",
        proxy_fault("both", Fault.LATENCY, latency=0.15),
        proxy_fault("both", Fault.PASS),
        3.0,
    ),
    Scenario(
        "postgres link reset",
        proxy_fault("postgres", Fault.RESET),
        proxy_fault("postgres", Fault.PASS),
        3.0,
    ),
    Scenario(
        "redis link reset",
        proxy_fault("redis", Fault.RESET),
        proxy_fault("redis", Fault.PASS),
        3.0,
    ),
    Scenario(
        "postgres black hole",
        proxy_fault("postgres", Fault.BLACK_HOLE),
        proxy_fault("postgres", Fault.PASS),
        3.0,
    ),
    Scenario(
        "redis black hole",
        proxy_fault("redis", Fault.BLACK_HOLE),
        proxy_fault("redis", Fault.PASS),
        3.0,
    ),
    Scenario(
        "postgres replies cut",
        proxy_fault("postgres", Fault.CUT),
        proxy_fault("postgres", Fault.PASS),
        3.0,
    ),
    Scenario(
        "redis replies cut",
        proxy_fault("redis", Fault.CUT),
        proxy_fault("redis", Fault.PASS),
        3.0,
    ),
    Scenario("postgres restart (fast)", postgres_stop("fast"), postgres_start, 1.5),
    Scenario("postgres crash (immediate)", postgres_stop("immediate"), postgres_start, 1.5),
    Scenario("redis SIGSTOP 5 s", redis_pause, redis_resume, 5.0),
    Scenario(
        "worker SIGKILL mid-payment",
        kill_worker_mid_payment,
        worker_replaced,
        0.0,
        connection_errors_expected=True,
    ),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            built = stack.enter_context(lab_running(CUSTOMERS))
        except services.ServiceMissing as e:
            services.missing(str(e))
        print(f"\nfaults under load: lab ready in {time.monotonic() - started:.1f} s")
        try:
            yield built
        finally:
            print(f"\nfaults under load: {CUSTOMERS} customers, holds of {HOLD_SECONDS} s")
            print(TABLE_HEAD)
            for report in built.rows:
                print(report.row())
            print(f"(module: {time.monotonic() - started:.0f} s before the lab is removed)")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_the_service_keeps_its_promises_through(lab: Lab, scenario: Scenario) -> None:
    report = await run_scenario(lab, scenario, seed=SCENARIOS.index(scenario))
    if scenario.connection_errors_expected:
        replaced = lab.server.wait_for_workers(2, 10)
        report.notes.append(f"workers afterwards: {replaced}")
    lab.rows.append(report)
    print(f"\n{TABLE_HEAD}\n{report.row()}")
    print(f"  stores: {report.figures}")
    for note in report.notes:
        print(f"  {note}")
    problems = report.problems
    assert not problems, f"{scenario.name}:\n- " + "\n- ".join(problems)


async def test_the_fault_proxy_does_what_it_says() -> None:
    """The proxy itself, on an echo server: each fault as its docstring describes it."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1000):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = FaultProxy(server.sockets[0].getsockname()[1])
    await proxy.start()
    opened: list[asyncio.StreamWriter] = []

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        opened.append(writer)
        return reader, writer

    async def round_trip(
        link: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes, wait: float = 1
    ) -> bytes:
        reader, writer = link
        writer.write(data)
        received = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while len(received) < len(data):
                    chunk = await reader.read(1000)
                    if not chunk:
                        break
                    received += chunk
        return received

    try:
        kept = await connection()
        assert await round_trip(kept, b"ping") == b"ping"

        proxy.set_fault(Fault.LATENCY, latency=0.2)
        started = time.monotonic()
        assert await round_trip(kept, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.4

        proxy.set_fault(Fault.BLACK_HOLE)
        assert await round_trip(kept, b"lost", wait=0.3) == b""
        swallowed_new = await connection()
        assert await round_trip(swallowed_new, b"lost", wait=0.3) == b""
        proxy.set_fault(Fault.PASS)
        assert await round_trip(kept, b"still lost", wait=0.3) == b""
        fresh = await connection()
        assert await round_trip(fresh, b"back") == b"back"

        proxy.set_fault(Fault.CUT)
        assert await round_trip(fresh, b"0123456789") == b"01234"
        assert await fresh[0].read(1000) == b""  # closed after the half reply

        proxy.set_fault(Fault.PASS)
        doomed = await connection()
        assert await round_trip(doomed, b"ok") == b"ok"
        proxy.set_fault(Fault.RESET)
        with pytest.raises(ConnectionResetError):
            await doomed[0].read(1000)
        refused = await connection()
        refused[1].write(b"x")
        with pytest.raises(ConnectionResetError):
            await refused[0].read(1000)
        assert proxy.stats.reset >= 2
    finally:
        for writer in opened:
            writer.close()
        await proxy.close()
        server.close()
        await server.wait_closed()
