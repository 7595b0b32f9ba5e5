"""``GET /metrics``: requests, holds by outcome, seats sold and revenue counted once, the line's
sizes, scheduler ticks; and every worker's figures added up in multiprocess mode."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from adapters.clock import ManualClock
from booking import add_venue, memory_deps
from concert_domain import BookingPolicy, Dependencies, usecases
from concert_domain.usecases import TickReport
from entrypoints.http import create_app
from entrypoints.http.metrics import Metrics
from http_support import PASSWORD, Caller, admitted, hold
from openapi_check import validated_client


@pytest.fixture
def deps(clock: ManualClock) -> Dependencies:
    return memory_deps(clock, BookingPolicy(max_holds_per_user=4))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(deps: Dependencies, metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(deps, metrics=metrics))
    async with validated_client(transport, "http://test") as http:
        yield http


@pytest.fixture
async def ops(client: httpx.AsyncClient, deps: Dependencies) -> Caller:
    await usecases.create_admin("ops@example.com", PASSWORD, deps=deps)
    login = await client.post(
        "/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
    )
    return Caller(client, login.json()["access_token"])


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition ``text``."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = (
        rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? (\S+)$"
        if labels
        else (rf"^{re.escape(name)} (\S+)$")
    )
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"no {name}{labels} in:\n{text}"
    return float(found.group(1))


async def scrape(ops: Caller) -> str:
    answer = await ops.client.get("/metrics", headers=ops.auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def test_only_an_admin_reads_them(client: httpx.AsyncClient, ops: Caller) -> None:
    mina = await admitted(client, "mina@example.com")
    assert (await client.get("/metrics", headers=mina.auth)).status_code == 403
    assert (await client.get("/metrics")).status_code == 401
    await scrape(ops)


async def test_requests_are_counted_by_route_and_status_with_their_durations(
    client: httpx.AsyncClient, ops: Caller
) -> None:
    for _ in range(3):
        await client.get("/healthz")
    await client.get("/reservations/5")  # no token: 401
    text = await scrape(ops)
    ok = {"method": "GET", "route": "/healthz", "status": "200"}
    assert sample(text, "concert_http_requests_total", **ok) == 3
    refused = {"method": "GET", "route": "/reservations/{reservation_id}", "status": "401"}
    assert sample(text, "concert_http_requests_total", **refused) == 1
    assert sample(text, "concert_http_request_duration_seconds_count", route="/healthz") == 3


async def test_holds_sales_and_revenue_are_counted_once(
    client: httpx.AsyncClient, deps: Dependencies, ops: Caller
) -> None:
    venue = await add_venue(deps, seats=4, price=30_000)
    mina = await admitted(client, "mina@example.com")
    joon = await admitted(client, "joon@example.com")
    seats = [seat.seat_id for seat in venue.seats]
    first = await hold(mina, seats[0])
    await mina.post("/reservations", {"seat_ids": [seats[1], seats[2]]})
    await joon.post("/reservations", {"seat_id": seats[0]})
    await client.post("/wallet/charges", json={"amount": 100_000}, headers=mina.auth)
    body = {"reservation_ids": [first["reservation_id"], first["reservation_id"] + 1]}
    for _ in range(2):  # the second is a replay of the first answer
        paid = await mina.post("/payments", body, **{"Idempotency-Key": "k-1"})
        assert paid.status_code == 201
    text = await scrape(ops)
    assert sample(text, "concert_holds_total", outcome="held") == 2
    assert sample(text, "concert_holds_total", outcome="seat_unavailable") == 1
    assert sample(text, "concert_seats_sold_total") == 2
    assert sample(text, "concert_revenue_won_total") == 60_000
    assert sample(text, "concert_queue_active") == 1  # joon's; mina's was spent paying
    assert sample(text, "concert_queue_waiting") == 0
    assert sample(text, "concert_queue_admissions_per_second") == 2 / 60  # both at once
    assert sample(text, "concert_queue_clear_seconds") == 0


async def test_scheduler_ticks_count_the_holds_they_release(ops: Caller, metrics: Metrics) -> None:
    metrics.count_tick(TickReport(3, 0, 0, 0), 0.004)
    metrics.count_tick(TickReport(2, 1, 0, 0), 0.002)
    text = await scrape(ops)
    assert sample(text, "concert_holds_expired_total") == 5
    assert sample(text, "concert_scheduler_tick_seconds_count") == 2


async def test_the_stores_pool_and_link_are_shown(ops: Caller, metrics: Metrics) -> None:
    metrics.observe_stores({"requests_waiting": 2, "requests_wait_ms": 1500}, 3)
    text = await scrape(ops)
    assert sample(text, "concert_db_pool_requests_waiting") == 2
    assert sample(text, "concert_db_pool_wait_seconds") == 1.5
    assert sample(text, "concert_redis_connections_opened") == 3


def test_workers_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """Two processes count into one directory; a third, as the worker answering /metrics,
    reads both."""
    count = textwrap.dedent(
        f"""
        from pathlib import Path
        from entrypoints.http.metrics import Metrics, use_directory
        use_directory(Path({str(tmp_path)!r}))
        metrics = Metrics(Path({str(tmp_path)!r}))
        metrics.count_request("GET", "/healthz", 200, 0.01)
        metrics.seats_sold.inc(2)
        metrics.observe_stores({{"requests_waiting": 1}}, 1)
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], check=True, timeout=60)
    read = textwrap.dedent(
        f"""
        from pathlib import Path
        from concert_domain.queue import LineReport
        from entrypoints.http.metrics import Metrics, use_directory
        use_directory(Path({str(tmp_path)!r}))
        print(Metrics(Path({str(tmp_path)!r})).exposition(LineReport(7, 3, 0.5, 14)).decode())
        """
    )
    text = subprocess.run(
        [sys.executable, "-c", read], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    ok = {"method": "GET", "route": "/healthz", "status": "200"}
    assert sample(text, "concert_http_requests_total", **ok) == 2
    assert sample(text, "concert_seats_sold_total") == 4
    assert (sample(text, "concert_queue_waiting"), sample(text, "concert_queue_active")) == (7, 3)
    assert sample(text, "concert_queue_admissions_per_second") == 0.5
    assert sample(text, "concert_queue_clear_seconds") == 14
    assert "concert_db_pool_requests_waiting" in text  # a gauge of each worker, summed
