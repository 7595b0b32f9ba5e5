"""The service as an operator runs it: a real ``concert serve`` process over a socket, once on
the embedded default (SQLite, in-process line) and once on PostgreSQL + Redis with two workers.
Real time: holds last two seconds here."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

import services
from http_support import PASSWORD, Caller, admitted, error_code
from openapi_check import validated_client

pytestmark = pytest.mark.integration

HOLD_SECONDS = 2
ADMIN = "ops@example.com"
DEMO = "Demo Night: The Fifty Seats"


def concert(
    env: dict[str, str], cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module", params=["embedded", "postgresql+redis"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A running ``concert serve``; its base URL."""
    workdir = tmp_path_factory.mktemp("serve")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONCERT_HOLD_SECONDS": str(HOLD_SECONDS),
        # every customer here signs up from 127.0.0.1
        "CONCERT_AUTH_ATTEMPTS_PER_ADDRESS": "10000",
        "CONCERT_SCHEDULER_INTERVAL_SECONDS": "0.2",
    }
    workers = "1"
    cleanups: list[Callable[[], object]] = []
    if request.param == "postgresql+redis":
        schema = services.private_schema(request.getfixturevalue("postgres_server_url"))
        pg_url = schema.__enter__()  # a schema of its own, dropped after
        cleanups.append(lambda: schema.__exit__(None, None, None))
        redis_url = request.getfixturevalue("redis_url")
        prefix = f"e2e-{secrets.token_hex(4)}"
        env |= {
            "CONCERT_DATABASE_URL": pg_url,
            "CONCERT_REDIS_URL": redis_url,
            "CONCERT_REDIS_PREFIX": prefix,
            "CONCERT_JWT_SECRET": secrets.token_urlsafe(32),
        }
        workers = "2"
        concert(env, workdir, "migrate")

        def forget_keys() -> None:
            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)
            client.close()

        cleanups.append(forget_keys)
    concert(env, workdir, "seed-demo")
    made = concert(env, workdir, "create-admin", ADMIN, stdin=f"{PASSWORD}\n")
    assert "created as an admin" in made.stdout, made.stdout
    try:
        with services.concert_serve(workdir, env, "--workers", workers) as served:
            yield served.url
    finally:
        for cleanup in cleanups:
            cleanup()


@pytest.fixture
async def client(service: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose every answer is checked against the served OpenAPI document."""
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=64))
    async with validated_client(transport, service, timeout=30) as http:
        yield http


async def admitted_existing(client: httpx.AsyncClient, email: str) -> Caller:
    """Log in as an existing customer (emails compare case-insensitively) and queue."""
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    caller = Caller(client, login.json()["access_token"])
    joined = await client.post("/queue/tokens", headers=caller.auth)
    return Caller(client, caller.token, joined.json()["token"])


async def customer(client: httpx.AsyncClient) -> Caller:
    return await admitted(client, f"{secrets.token_hex(6)}@example.com")


async def free_seat(caller: Caller) -> int:
    concerts = (await caller.client.get("/concerts")).json()["concerts"]
    [concert] = [c for c in concerts if c["title"] == DEMO]
    base = f"/concerts/{concert['concert_id']}/dates"
    for date in (await caller.get(base)).json()["dates"]:
        seats = (await caller.get(f"{base}/{date['date_id']}/seats")).json()["seats"]
        for seat in seats:
            if seat["status"] == "available":
                return int(seat["seat_id"])
    raise AssertionError("no seat left in the demo catalog")


async def test_thirty_customers_racing_for_one_seat_get_one_hold(client: httpx.AsyncClient) -> None:
    people = await asyncio.gather(*(customer(client) for _ in range(30)))
    seat = await free_seat(people[0])
    answers = await asyncio.gather(*(p.post("/reservations", {"seat_id": seat}) for p in people))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 29
    assert {error_code(a) for a in answers if a.status_code == 409} == {(409, "seat_unavailable")}


async def test_a_hold_lapses_after_its_seconds_and_frees_the_seat(
    client: httpx.AsyncClient,
) -> None:
    mina, joon = await customer(client), await customer(client)
    await client.post("/wallet/charges", json={"amount": 50_000}, headers=mina.auth)
    seat = await free_seat(mina)
    held = (await mina.post("/reservations", {"seat_id": seat})).json()
    path = f"/reservations/{held['reservation_id']}"
    statuses = []
    for _ in range(100):  # the server's clock is real: ask until it says the hold lapsed
        statuses.append((await client.get(path, headers=mina.auth)).json()["status"])
        if statuses[-1] != "held":
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == "expired", statuses
    paying = await mina.post("/payments", {"reservation_id": held["reservation_id"]})
    assert error_code(paying) == (409, "hold_expired")
    taken = await joon.post("/reservations", {"seat_id": seat})
    assert taken.status_code == 201, taken.text


async def test_payments_retried_with_one_key_debit_once(client: httpx.AsyncClient) -> None:
    mina = await customer(client)
    await client.post("/wallet/charges", json={"amount": 120_000}, headers=mina.auth)
    seat = await free_seat(mina)
    held = (await mina.post("/reservations", {"seat_id": seat})).json()
    body = {"reservation_id": held["reservation_id"]}
    key = {"Idempotency-Key": f"order-{secrets.token_hex(4)}"}
    first = await mina.post("/payments", body, **key)
    assert first.status_code == 201, first.text
    retries = await asyncio.gather(*(mina.post("/payments", body, **key) for _ in range(5)))
    assert all((r.status_code, r.json()) == (201, first.json()) for r in retries)
    assert (await client.get("/wallet", headers=mina.auth)).json() == {"balance": 70_000}
    assert (await mina.get("/queue/status")).json()["status"] == "expired"


async def test_the_whole_flow_from_sign_up_to_a_sold_seat(client: httpx.AsyncClient) -> None:
    email = f"{secrets.token_hex(6)}@example.com"
    signup = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert signup.status_code == 201
    mina = await admitted_existing(client, email.upper())
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.")
    await client.post("/wallet/charges", json={"amount": 50_000}, headers=mina.auth)
    seat = await free_seat(mina)
    held = (await mina.post("/reservations", {"seat_id": seat})).json()
    paid = await mina.post("/payments", {"reservation_id": held["reservation_id"]})
    assert (paid.status_code, paid.json()["balance"]) == (201, 0)
    joon = await customer(client)
    path = f"/concerts/{held['concert_id']}/dates/{held['date_id']}/seats"
    seats = (await joon.get(path)).json()["seats"]
    assert next(s["status"] for s in seats if s["seat_id"] == seat) == "sold"


async def test_every_worker_shows_a_hold_and_its_cancellation_at_once(
    client: httpx.AsyncClient,
) -> None:
    mina, joon = await customer(client), await customer(client)
    seat = await free_seat(mina)

    async def statuses_seen(path: str) -> set[str]:
        """The seat's status on eight seat maps, each read on a new connection, so on
        whichever worker the kernel picks."""
        seen = set()
        for _ in range(8):
            answer = await joon.get(path, Connection="close")
            seen |= {s["status"] for s in answer.json()["seats"] if s["seat_id"] == seat}
        return seen

    for _ in range(3):
        held = (await mina.post("/reservations", {"seat_id": seat})).json()
        path = f"/concerts/{held['concert_id']}/dates/{held['date_id']}/seats"
        assert await statuses_seen(path) == {"held"}
        cancelled = await client.delete(
            f"/reservations/{held['reservation_id']}", headers=mina.auth
        )
        assert cancelled.status_code == 200
        assert await statuses_seen(path) == {"available"}


async def test_answers_name_no_server_software_and_ask_not_to_be_stored(
    client: httpx.AsyncClient,
) -> None:
    mina = await customer(client)
    for response in (await client.get("/concerts"), await client.get("/wallet", headers=mina.auth)):
        assert "server" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


async def test_an_operator_puts_a_show_on_sale_watches_it_sell_and_refunds(
    client: httpx.AsyncClient,
) -> None:
    login = await client.post("/auth/login", json={"email": ADMIN, "password": PASSWORD})
    ops = Caller(client, login.json()["access_token"])
    mina = await customer(client)
    for caller, status in ((mina, 403), (ops, 201)):
        made = await client.post(
            "/admin/concerts", json={"title": "Winter Gala", "venue": "Hall"}, headers=caller.auth
        )
        assert made.status_code == status, made.text
    concert_id = made.json()["concert_id"]
    layout = {
        "starts_at": "2030-01-10T19:00:00+09:00",
        "sections": [
            {"name": "VIP", "price": 150_000, "rows": [{"row": "A", "seats": 4}]},
            {"name": "Floor", "price": 80_000, "rows": [{"row": "C", "seats": 6}]},
        ],
    }
    dated = await client.post(f"/admin/concerts/{concert_id}/dates", json=layout, headers=ops.auth)
    assert (dated.status_code, dated.json()["seats_total"]) == (201, 10), dated.text
    date_id = dated.json()["date_id"]
    later = {**layout, "sale_opens_at": "2029-12-01T00:00:00Z"}
    not_yet = await client.post(f"/admin/concerts/{concert_id}/dates", json=later, headers=ops.auth)
    base = f"/concerts/{concert_id}/dates"
    listed = (await mina.get(base)).json()["dates"]
    assert [(d["date_id"], d["on_sale"]) for d in listed] == [
        (date_id, True),
        (not_yet.json()["date_id"], False),
    ]
    closed_seat = (await mina.get(f"{base}/{not_yet.json()['date_id']}/seats")).json()["seats"][0]
    refused = await mina.post("/reservations", {"seat_id": closed_seat["seat_id"]})
    assert error_code(refused) == (409, "sale_not_open")

    vip = (await mina.get(f"{base}/{date_id}/seats?section=VIP")).json()["seats"]
    assert [s["label"] for s in vip] == ["VIP A-1", "VIP A-2", "VIP A-3", "VIP A-4"]
    await client.post("/wallet/charges", json={"amount": 200_000}, headers=mina.auth)
    held = (await mina.post("/reservations", {"seat_id": vip[0]["seat_id"]})).json()
    paid = await mina.post("/payments", {"reservation_id": held["reservation_id"]})
    assert paid.status_code == 201, paid.text
    sales = (await client.get(f"/admin{base}/{date_id}/sales", headers=ops.auth)).json()
    assert (sales["sold"], sales["available"], sales["revenue"]) == (1, 9, 150_000)
    listing = await client.get(f"/admin{base}/{date_id}/sales.csv", headers=ops.auth)
    assert listing.text.splitlines()[1].startswith(f"{held['reservation_id']},")

    refunded = await client.post(
        f"/admin/reservations/{held['reservation_id']}/refund", headers=ops.auth
    )
    assert (refunded.status_code, refunded.json()["status"]) == (200, "refunded")
    joon = await customer(client)
    for _ in range(4):  # on new connections, so on either worker: on sale again at once
        seats = (await joon.get(f"{base}/{date_id}/seats?section=VIP", Connection="close")).json()
        assert seats["seats"][0]["status"] == "available"
    moves = (await client.get("/wallet/transactions", headers=mina.auth)).json()["transactions"]
    assert [(m["kind"], m["amount"]) for m in moves[:2]] == [
        ("refund", 150_000),
        ("payment", -150_000),
    ]
    mine = (await client.get("/reservations?status=refunded", headers=mina.auth)).json()
    assert [r["reservation_id"] for r in mine["reservations"]] == [held["reservation_id"]]
    me = (await client.get("/me", headers=mina.auth)).json()
    assert (me["balance"], me["role"], me["holds"]) == (200_000, "customer", [])


async def test_families_book_together_extend_once_and_pay_once(client: httpx.AsyncClient) -> None:
    """Several seats all or none, best available side by side under a race, one extension,
    one payment for several holds, and `GET /me` counting it all down."""
    login = await client.post("/auth/login", json={"email": ADMIN, "password": PASSWORD})
    ops = Caller(client, login.json()["access_token"])
    made = await client.post("/admin/concerts", json={"title": "Family Day"}, headers=ops.auth)
    concert_id = made.json()["concert_id"]
    layout = {
        "starts_at": "2030-01-10T19:00:00+09:00",
        "sections": [{"name": "Floor", "price": 30_000, "rows": [{"row": "A", "seats": 8}]}],
    }
    dated = await client.post(f"/admin/concerts/{concert_id}/dates", json=layout, headers=ops.auth)
    date_id = dated.json()["date_id"]
    families = await asyncio.gather(*(customer(client) for _ in range(4)))
    answers = await asyncio.gather(
        *(f.post("/reservations", {"date_id": date_id, "quantity": 3}) for f in families)
    )
    won = [a.json()["reservations"] for a in answers if a.status_code == 201]
    refused = [error_code(a) for a in answers if a.status_code != 201]
    # eight seats: two blocks of three fit without overlap; the others find none together
    assert len(won) == 2, [a.text for a in answers]
    assert refused == [(409, "seats_not_together")] * 2
    numbers = [sorted(r["number"] for r in block) for block in won]
    assert all(n == list(range(n[0], n[0] + 3)) for n in numbers)
    assert not set(numbers[0]) & set(numbers[1])

    winner = families[[a.status_code for a in answers].index(201)]
    block = next(a.json()["reservations"] for a in answers if a.status_code == 201)
    ids = [r["reservation_id"] for r in block]
    for reservation_id in ids:  # the holds last two seconds here: two minutes more each
        extended = await winner.post(f"/reservations/{reservation_id}/extension", None)
        assert extended.status_code == 200, extended.text
    again = await winner.post(f"/reservations/{ids[0]}/extension", None)
    assert error_code(again) == (409, "extension_limit_reached")
    me = (await client.get("/me", headers=winner.auth)).json()
    assert me["queue"]["status"] == "active"
    assert sorted(h["reservation_id"] for h in me["holds"]) == sorted(
        r["reservation_id"] for r in block
    )
    assert min(h["seconds_left"] for h in me["holds"]) > 100

    short = await winner.post("/payments", {"reservation_ids": ids})
    assert error_code(short) == (402, "insufficient_balance")
    await client.post("/wallet/charges", json={"amount": 90_000}, headers=winner.auth)
    paid = await winner.post("/payments", {"reservation_ids": ids})
    assert paid.status_code == 201, paid.text
    assert (paid.json()["reservation_ids"], paid.json()["amount"]) == (ids, 90_000)
    assert (await winner.get("/queue/status")).json()["status"] == "expired"
    moves = (await client.get("/wallet/transactions", headers=winner.auth)).json()
    assert [(m["kind"], m["amount"]) for m in moves["transactions"]] == [
        ("payment", -90_000),
        ("charge", 90_000),
    ]

    # named seats, all or none: one of them is sold, so none is held
    late = await customer(client)
    base = f"/concerts/{concert_id}/dates/{date_id}/seats"
    seats = (await late.get(base)).json()["seats"]
    sold = next(s["seat_id"] for s in seats if s["status"] == "sold")
    free = [s["seat_id"] for s in seats if s["status"] == "available"][:1]
    refused_whole = await late.post("/reservations", {"seat_ids": [*free, sold]})
    assert error_code(refused_whole) == (409, "seat_unavailable")
    still = (await late.get(base)).json()["seats"]
    assert next(s["status"] for s in still if s["seat_id"] == free[0]) == "available"


async def test_metrics_add_up_every_workers_requests(client: httpx.AsyncClient) -> None:
    login = await client.post("/auth/login", json={"email": ADMIN, "password": PASSWORD})
    ops = Caller(client, login.json()["access_token"])

    async def healthz_count() -> float:
        text = (await client.get("/metrics", headers=ops.auth)).text
        found = re.search(
            r'^concert_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$',
            text,
            re.MULTILINE,
        )
        return 0.0 if found is None else float(found.group(1))

    before = await healthz_count()
    for _ in range(20):  # new connections, so both workers answer some
        answer = await client.get("/healthz", headers={"Connection": "close"})
        assert answer.headers["x-request-id"]
    assert await healthz_count() == before + 20


async def test_the_live_seat_map_shows_a_hold_made_on_any_worker_within_a_second(
    client: httpx.AsyncClient,
) -> None:
    watcher, holder = await customer(client), await customer(client)
    seat = await free_seat(holder)
    concerts = (await client.get("/concerts")).json()["concerts"]
    [demo] = [c for c in concerts if c["title"] == DEMO]
    dates = (await watcher.get(f"/concerts/{demo['concert_id']}/dates")).json()["dates"]
    path = f"/concerts/{demo['concert_id']}/dates/{dates[0]['date_id']}/seats/events"
    headers = {**watcher.queued, "Accept": "text/event-stream"}
    raw = httpx.AsyncClient(base_url=str(client.base_url), timeout=10)
    async with raw, raw.stream("GET", path, headers=headers) as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.aiter_lines()
        assert (await anext(lines)) == "event: snapshot"
        assert (await anext(lines)).startswith('data: {"seats":[')
        # on a new connection, so on either worker
        taken = await holder.post("/reservations", {"seat_id": seat}, Connection="close")
        assert taken.status_code == 201, taken.text
        held_at = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            async for line in lines:
                if line.startswith("data: [") and f'"seat_id":{seat},"status":"held"' in line:
                    break
        assert asyncio.get_running_loop().time() - held_at < 2.0
