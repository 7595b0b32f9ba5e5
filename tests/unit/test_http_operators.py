"""The operator's paths and a customer's own records over HTTP (API.md "Operators",
"Accounts", "Reservations", "Wallet and payment"), every answer checked against the served
OpenAPI document."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from adapters.clock import ManualClock
from booking import PASSWORD, memory_deps
from concert_domain import BookingPolicy, Dependencies, usecases
from entrypoints.http import create_app
from http_support import Caller, admitted, error_code, hold, sign_up_and_log_in
from openapi_check import validated_client

# the example of API.md, moved to the test clock's future
SPEC: dict[str, Any] = {
    "starts_at": "2027-01-10T19:00:00+09:00",
    "sale_opens_at": "2026-11-20T12:00:00+09:00",
    "sale_closes_at": "2027-01-10T18:00:00+09:00",
    "sections": [
        {
            "name": "VIP",
            "price": 150000,
            "rows": [{"row": "A", "seats": 10}, {"row": "B", "seats": 12}],
        },
        {"name": "Floor", "price": 80000, "rows": [{"row": "C", "seats": 30}]},
    ],
}


@pytest.fixture
def deps(clock: ManualClock) -> Dependencies:
    return memory_deps(clock, BookingPolicy(max_holds_per_user=4))


@pytest.fixture
async def client(deps: Dependencies) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(deps))
    async with validated_client(transport, "http://test") as http:
        yield http


@pytest.fixture
async def admin(client: httpx.AsyncClient, deps: Dependencies) -> Caller:
    await usecases.create_admin("ops@example.com", PASSWORD, deps=deps)
    response = await client.post(
        "/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
    )
    return Caller(client, response.json()["access_token"])


@pytest.fixture
async def mina(client: httpx.AsyncClient) -> Caller:
    return await admitted(client, "mina@example.com")


async def put_on_sale(admin: Caller, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    concert = await admin.client.post(
        "/admin/concerts",
        json={"title": "Winter Gala", "venue": "Seoul Arts Center"},
        headers=admin.auth,
    )
    assert concert.status_code == 201, concert.text
    concert_id = concert.json()["concert_id"]
    created = await admin.client.post(
        f"/admin/concerts/{concert_id}/dates", json=spec, headers=admin.auth
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def seats_of(caller: Caller, date: dict[str, Any], section: str = "") -> list[dict[str, Any]]:
    query = f"?section={section}" if section else ""
    response = await caller.get(
        f"/concerts/{date['concert_id']}/dates/{date['date_id']}/seats{query}"
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["seats"]
    return found


class TestRoles:
    async def test_admin_paths_answer_403_to_a_customer_and_401_to_nobody(
        self, client: httpx.AsyncClient, mina: Caller
    ) -> None:
        for method, path in (
            ("POST", "/admin/concerts"),
            ("POST", "/admin/concerts/1/dates"),
            ("GET", "/admin/concerts/1/dates/1/sales"),
            ("GET", "/admin/concerts/1/dates/1/sales.csv"),
            ("POST", "/admin/reservations/1/refund"),
        ):
            body = {"title": "x"} if path == "/admin/concerts" else SPEC
            as_customer = await client.request(method, path, json=body, headers=mina.auth)
            assert error_code(as_customer) == (403, "forbidden"), path
            assert error_code(await client.request(method, path, json=body))[0] == 401

    async def test_a_promotion_takes_effect_at_the_next_login(
        self, client: httpx.AsyncClient, deps: Dependencies
    ) -> None:
        before = await sign_up_and_log_in(client, "joon@example.com")
        made, created = await usecases.create_admin("joon@example.com", None, deps=deps)
        assert (made.role, created) == ("admin", False)
        assert (await before.client.get("/me", headers=before.auth)).json()["role"] == "customer"
        assert error_code(
            await client.post("/admin/concerts", json={"title": "x"}, headers=before.auth)
        ) == (403, "forbidden")
        after = await client.post(
            "/auth/login", json={"email": "joon@example.com", "password": PASSWORD}
        )
        token = after.json()["access_token"]
        answer = await client.post(
            "/admin/concerts", json={"title": "x"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 201


class TestCreatingDates:
    async def test_puts_the_example_of_the_contract_on_sale(
        self, admin: Caller, mina: Caller
    ) -> None:
        created = await put_on_sale(admin)
        assert created == {
            "date_id": 1,
            "concert_id": 1,
            "date": "2027-01-10",
            "starts_at": "2027-01-10T10:00:00Z",
            "sale_opens_at": "2026-11-20T03:00:00Z",
            "sale_closes_at": "2027-01-10T09:00:00Z",
            "seats_total": 52,
        }
        seats = await seats_of(mina, created)
        assert [s["label"] for s in seats][:3] == ["VIP A-1", "VIP A-2", "VIP A-3"]
        assert [s["label"] for s in seats][10:12] == ["VIP B-1", "VIP B-2"]
        assert seats[-1] == {
            "seat_id": seats[-1]["seat_id"],
            "section": "Floor",
            "row": "C",
            "number": 30,
            "label": "Floor C-30",
            "price": 80_000,
            "status": "available",
        }
        assert len(await seats_of(mina, created, "VIP")) == 22
        concerts = (await mina.client.get("/concerts")).json()["concerts"]
        assert concerts == [{"concert_id": 1, "title": "Winter Gala", "venue": "Seoul Arts Center"}]

    async def test_the_sale_window_defaults_to_now_until_the_start(
        self, admin: Caller, clock: ManualClock
    ) -> None:
        spec = {"starts_at": "2027-01-10T10:00:00Z", "sections": SPEC["sections"]}
        created = await put_on_sale(admin, spec)
        assert created["sale_opens_at"] == clock.now().isoformat().replace("+00:00", "Z")
        assert created["sale_closes_at"] == created["starts_at"]

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"starts_at": "2026-11-01T10:00:00Z"}, "starts_at must be in the future"),
            ({"starts_at": "2027-01-10T10:00:00"}, "timezone"),
            ({"sale_opens_at": "2027-01-10T09:00:00Z"}, "sale must open before it closes"),
            ({"sale_closes_at": "2027-01-11T09:00:00Z"}, "close by starts_at"),
            ({"sections": []}, "sections"),
            ({"sections": [SPEC["sections"][0]] * 2}, "section names must be distinct"),
            ({"sections": [{"name": "", "price": 1, "rows": [{"row": "A", "seats": 1}]}]}, "name"),
            (
                {"sections": [{"name": "F", "price": 0, "rows": [{"row": "A", "seats": 1}]}]},
                "price",
            ),
            (
                {"sections": [{"name": "F", "price": 1, "rows": [{"row": "A", "seats": 501}]}]},
                "seats",
            ),
            ({"sections": [{"name": "F", "price": 1, "rows": []}]}, "rows"),
            (
                {"sections": [{"name": "F", "price": 1, "rows": [{"row": "A", "seats": 1}] * 2}]},
                "row labels of 'F' must be distinct",
            ),
            (
                {
                    "sections": [
                        {
                            "name": f"S{n}",
                            "price": 1,
                            "rows": [{"row": f"R{r}", "seats": 500} for r in range(10)],
                        }
                        for n in range(5)
                    ]
                },
                "seats of a date: 1 to 20,000, not 25,000",
            ),
        ],
    )
    async def test_refuses_a_spec_that_breaks_a_rule_with_a_422_naming_it(
        self, admin: Caller, change: dict[str, Any], named: str
    ) -> None:
        await put_on_sale(admin)
        response = await admin.client.post(
            "/admin/concerts/1/dates", json={**SPEC, **change}, headers=admin.auth
        )
        assert error_code(response) == (422, "invalid_request")
        assert named in response.json()["error"]["message"]

    async def test_answers_404_for_an_unknown_concert(self, admin: Caller) -> None:
        response = await admin.client.post("/admin/concerts/9/dates", json=SPEC, headers=admin.auth)
        assert error_code(response) == (404, "not_found")

    async def test_holds_only_inside_the_sale_window(
        self, admin: Caller, mina: Caller, clock: ManualClock
    ) -> None:
        later = {**SPEC, "sale_opens_at": "2026-12-24T00:00:00Z"}
        created = await put_on_sale(admin, later)
        first = (await seats_of(mina, created))[0]
        refused = await mina.post("/reservations", {"seat_id": first["seat_id"]})
        assert error_code(refused) == (409, "sale_not_open")
        assert "2026-12-24" in refused.json()["error"]["message"]
        clock.advance(timedelta(days=60))  # past the close, the evening of the show
        again = await admitted(mina.client, "late@example.com")
        assert error_code(await again.post("/reservations", {"seat_id": first["seat_id"]})) == (
            409,
            "sale_closed",
        )


class TestSalesAndRefunds:
    async def sell(self, buyer: Caller, seat_id: int) -> dict[str, Any]:
        await buyer.client.post("/wallet/charges", json={"amount": 200_000}, headers=buyer.auth)
        held = await hold(buyer, seat_id)
        paid = await buyer.post("/payments", {"reservation_id": held["reservation_id"]})
        assert paid.status_code == 201, paid.text
        return held

    async def test_sales_count_each_section_and_the_csv_lists_each_sold_seat(
        self, admin: Caller, mina: Caller, client: httpx.AsyncClient
    ) -> None:
        created = await put_on_sale(admin)
        seats = await seats_of(mina, created)
        sold = await self.sell(mina, seats[0]["seat_id"])
        joon = await admitted(client, "=joon@example.com")  # a formula, were it a cell
        await hold(joon, seats[-1]["seat_id"])
        sales = await admin.client.get("/admin/concerts/1/dates/1/sales", headers=admin.auth)
        assert sales.json() == {
            "date_id": 1,
            "seats_total": 52,
            "available": 50,
            "held": 1,
            "sold": 1,
            "revenue": 150_000,
            "sections": [
                {
                    "name": "VIP",
                    "seats_total": 22,
                    "available": 21,
                    "held": 0,
                    "sold": 1,
                    "revenue": 150_000,
                },
                {
                    "name": "Floor",
                    "seats_total": 30,
                    "available": 29,
                    "held": 1,
                    "sold": 0,
                    "revenue": 0,
                },
            ],
        }
        listing = await admin.client.get("/admin/concerts/1/dates/1/sales.csv", headers=admin.auth)
        assert listing.headers["content-type"] == "text/csv; charset=utf-8"
        lines = list(csv.reader(io.StringIO(listing.text)))
        assert lines[0] == [
            "reservation_id",
            "payment_id",
            "section",
            "row",
            "number",
            "price",
            "paid_at",
            "email",
        ]
        assert lines[1:] == [
            [
                str(sold["reservation_id"]),
                "1",
                "VIP",
                "A",
                "1",
                "150000",
                lines[1][6],
                "mina@example.com",
            ]
        ]
        assert error_code(
            await admin.client.get("/admin/concerts/1/dates/7/sales.csv", headers=admin.auth)
        ) == (404, "not_found")

    async def test_a_refund_frees_the_seat_pays_back_and_is_made_once(
        self, admin: Caller, mina: Caller, client: httpx.AsyncClient
    ) -> None:
        created = await put_on_sale(admin)
        seat = (await seats_of(mina, created))[0]
        sold = await self.sell(mina, seat["seat_id"])
        path = f"/admin/reservations/{sold['reservation_id']}/refund"
        refunded = await client.post(path, headers={**admin.auth, "Idempotency-Key": "r-1"})
        assert refunded.status_code == 200
        assert {**sold, "status": "refunded"} == refunded.json()
        replayed = await client.post(path, headers={**admin.auth, "Idempotency-Key": "r-1"})
        assert (replayed.status_code, replayed.json()) == (200, refunded.json())
        assert error_code(await client.post(path, headers=admin.auth)) == (
            409,
            "reservation_not_paid",
        )
        assert error_code(
            await client.post("/admin/reservations/999/refund", headers=admin.auth)
        ) == (404, "not_found")
        moves = (await client.get("/wallet/transactions", headers=mina.auth)).json()["transactions"]
        assert [(m["kind"], m["amount"], m["balance"]) for m in moves] == [
            ("refund", 150_000, 200_000),
            ("payment", -150_000, 50_000),
            ("charge", 200_000, 200_000),
        ]
        joon = await admitted(client, "joon@example.com")
        assert (await hold(joon, seat["seat_id"]))["status"] == "held"  # on sale again at once
        mine = await client.get(f"/reservations/{sold['reservation_id']}", headers=mina.auth)
        assert mine.json()["status"] == "refunded"


class TestOwnRecords:
    async def test_me_shows_everything_counting_down(
        self, mina: Caller, admin: Caller, clock: ManualClock
    ) -> None:
        created = await put_on_sale(admin)
        seats = await seats_of(mina, created)
        await hold(mina, seats[0]["seat_id"])
        clock.advance(timedelta(seconds=100))
        second = await hold(mina, seats[1]["seat_id"])
        clock.advance(timedelta(seconds=0.5))
        me = (await mina.client.get("/me", headers=mina.auth)).json()
        assert (me["email"], me["role"], me["balance"]) == ("mina@example.com", "customer", 0)
        assert (me["queue"]["status"], me["queue"]["token"]) == ("active", mina.queue_token)
        assert [(h["label"], h["seconds_left"]) for h in me["holds"]] == [
            ("VIP A-1", 200),
            ("VIP A-2", 300),
        ]
        assert {**second, "seconds_left": 300} == me["holds"][1]

    async def test_me_without_a_live_token_shows_no_queue(self, client: httpx.AsyncClient) -> None:
        caller = await sign_up_and_log_in(client, "new@example.com")
        me = (await client.get("/me", headers=caller.auth)).json()
        assert (me["queue"], me["holds"], me["balance"]) == (None, [], 0)

    async def test_reservations_come_a_page_at_a_time_newest_first_and_by_status(
        self, mina: Caller, admin: Caller, clock: ManualClock
    ) -> None:
        created = await put_on_sale(admin)
        seats = await seats_of(mina, created)
        made = []
        for seat in seats[:4]:
            made.append((await hold(mina, seat["seat_id"]))["reservation_id"])
            clock.advance(timedelta(seconds=1))
        await mina.client.delete(f"/reservations/{made[1]}", headers=mina.auth)
        first = (await mina.client.get("/reservations?limit=3", headers=mina.auth)).json()
        assert [r["reservation_id"] for r in first["reservations"]] == made[:0:-1]
        second = await mina.client.get(
            f"/reservations?limit=3&cursor={first['next']}", headers=mina.auth
        )
        assert [r["reservation_id"] for r in second.json()["reservations"]] == [made[0]]
        assert second.json()["next"] is None
        cancelled = await mina.client.get("/reservations?status=cancelled", headers=mina.auth)
        assert [r["reservation_id"] for r in cancelled.json()["reservations"]] == [made[1]]
        clock.advance(timedelta(minutes=5))
        expired = await mina.client.get("/reservations?status=expired", headers=mina.auth)
        assert len(expired.json()["reservations"]) == 3  # lapsed, though nothing swept them

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=101",
            "limit=ten",
            "status=lost",
            "cursor=%21%21",
            "cursor=bm90LWEtY3Vyc29y",
        ],
    )
    async def test_a_bad_query_is_a_422(self, mina: Caller, query: str) -> None:
        for path in ("/reservations", "/wallet/transactions"):
            if "status" in query and path != "/reservations":
                continue
            response = await mina.client.get(f"{path}?{query}", headers=mina.auth)
            assert error_code(response) == (422, "invalid_request"), (path, query)

    async def test_transactions_come_newest_first_with_the_balance_each_left(
        self, mina: Caller
    ) -> None:
        for amount in (1_000, 2_000, 3_000):
            await mina.client.post("/wallet/charges", json={"amount": amount}, headers=mina.auth)
        first = (await mina.client.get("/wallet/transactions?limit=2", headers=mina.auth)).json()
        rest = await mina.client.get(
            f"/wallet/transactions?limit=2&cursor={first['next']}", headers=mina.auth
        )
        moves = first["transactions"] + rest.json()["transactions"]
        assert [(m["kind"], m["amount"], m["balance"]) for m in moves] == [
            ("charge", 3_000, 6_000),
            ("charge", 2_000, 3_000),
            ("charge", 1_000, 1_000),
        ]
        assert rest.json()["next"] is None
