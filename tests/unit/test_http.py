"""Every row of shared/API.md over HTTP: its success and each of its named errors, on the
Starlette app over in-memory services."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import attrs
import httpx
import pytest

from adapters.clock import ManualClock
from booking import add_venue, memory_deps
from concert_domain import BookingPolicy, Dependencies, QueuePolicy
from concert_domain.accounts import Role
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import UserId
from entrypoints.http import create_app
from entrypoints.http.clients import Proxies
from entrypoints.http.metrics import CONTENT_TYPE as PROMETHEUS
from http_support import PASSWORD, Caller, admitted, error_code, hold, sign_up_and_log_in
from openapi_check import canonical, contract_operations, validated_client


@pytest.fixture
def deps(clock: ManualClock) -> Dependencies:
    return memory_deps(clock, BookingPolicy(max_holds_per_user=2, queue=QueuePolicy(capacity=3)))


@pytest.fixture
async def client(deps: Dependencies) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose every answer is checked against the served OpenAPI document."""
    transport = httpx.ASGITransport(app=create_app(deps))
    async with validated_client(transport, "http://test") as http:
        yield http


@pytest.fixture
async def seats(deps: Dependencies) -> list[int]:
    venue = await add_venue(deps, seats=4, price=50_000)
    return [seat.seat_id for seat in venue.seats]


@pytest.fixture
async def mina(client: httpx.AsyncClient) -> Caller:
    return await admitted(client, "mina@example.com")


class TestSignup:
    async def test_creates_an_account(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/auth/signup", json={"email": "Mina@Example.com", "password": PASSWORD}
        )
        assert response.status_code == 201
        assert response.json() == {"user_id": 1, "email": "mina@example.com"}

    async def test_refuses_a_taken_email_with_409(self, client: httpx.AsyncClient) -> None:
        await sign_up_and_log_in(client, "mina@example.com")
        response = await client.post(
            "/auth/signup", json={"email": "MINA@example.com", "password": PASSWORD}
        )
        assert error_code(response) == (409, "email_taken")

    @pytest.mark.parametrize(
        "body",
        [
            {"email": "not-an-address", "password": PASSWORD},
            {"email": "a@example.com", "password": "short"},
            {"email": "a@example.com", "password": "x" * 257},
            {"email": "a@example.com"},
            {"email": 5, "password": PASSWORD},
            ["a@example.com", PASSWORD],
        ],
    )
    async def test_refuses_bad_input_with_422(
        self, client: httpx.AsyncClient, body: object
    ) -> None:
        assert error_code(await client.post("/auth/signup", json=body)) == (422, "invalid_request")

    async def test_refuses_malformed_json_with_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/auth/signup", content=b'{"email": ')
        assert error_code(response) == (400, "invalid_request")

    async def test_refuses_an_oversized_body_with_413(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/auth/signup", content=b"x" * (64 * 1024 + 1))
        assert error_code(response) == (413, "invalid_request")

    async def test_refuses_an_oversized_body_sent_in_chunks_with_413(
        self, client: httpx.AsyncClient
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"x" * 4096

        response = await client.post("/auth/signup", content=chunks())
        assert "content-length" not in response.request.headers
        assert error_code(response) == (413, "invalid_request")


class TestLogin:
    async def test_answers_a_bearer_token(self, client: httpx.AsyncClient) -> None:
        await sign_up_and_log_in(client, "mina@example.com")
        response = await client.post(
            "/auth/login", json={"email": "mina@example.com", "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)

    async def test_answers_the_same_401_for_an_unknown_email_and_a_wrong_password(
        self, client: httpx.AsyncClient
    ) -> None:
        await sign_up_and_log_in(client, "mina@example.com")
        wrong = await client.post(
            "/auth/login", json={"email": "mina@example.com", "password": "wrong password"}
        )
        unknown = await client.post(
            "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
        )
        assert error_code(wrong) == error_code(unknown) == (401, "invalid_credentials")
        assert wrong.json() == unknown.json()

    async def test_answers_429_after_ten_failures_in_a_minute(
        self, client: httpx.AsyncClient, clock: ManualClock
    ) -> None:
        await sign_up_and_log_in(client, "mina@example.com")
        bad = {"email": "mina@example.com", "password": "wrong password"}
        for _ in range(10):
            assert (await client.post("/auth/login", json=bad)).status_code == 401
        good = {"email": "mina@example.com", "password": PASSWORD}
        assert error_code(await client.post("/auth/login", json=good)) == (429, "rate_limited")
        clock.advance(60)
        assert (await client.post("/auth/login", json=good)).status_code == 200


class TestBearerAuth:
    @pytest.mark.parametrize(
        "header", [None, "", "Bearer", "Token abc", "Bearer not.a.token", "bearer x.y.z"]
    )
    async def test_refuses_missing_malformed_and_tampered_tokens(
        self, client: httpx.AsyncClient, header: str | None
    ) -> None:
        headers = {} if header is None else {"Authorization": header}
        response = await client.get("/wallet", headers=headers)
        assert error_code(response) == (401, "unauthorized")

    async def test_refuses_an_expired_token(
        self, client: httpx.AsyncClient, mina: Caller, clock: ManualClock
    ) -> None:
        clock.advance(timedelta(hours=1))
        assert error_code(await client.get("/wallet", headers=mina.auth)) == (401, "unauthorized")


class TestQueue:
    async def test_joining_answers_201_then_200_with_the_same_token(
        self, client: httpx.AsyncClient
    ) -> None:
        caller = await sign_up_and_log_in(client, "mina@example.com")
        first = await client.post("/queue/tokens", headers=caller.auth)
        again = await client.post("/queue/tokens", headers=caller.auth)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json() == again.json()
        assert first.json()["status"] == "active"
        assert set(first.json()) == {"token", "status", "position", "estimated_wait_seconds"}

    async def test_past_capacity_a_token_waits_with_its_position(
        self, client: httpx.AsyncClient
    ) -> None:
        for n in range(3):
            await admitted(client, f"p{n}@example.com")
        late = await sign_up_and_log_in(client, "late@example.com")
        body = (await client.post("/queue/tokens", headers=late.auth)).json()
        assert (body["status"], body["position"]) == ("waiting", 1)
        assert body["estimated_wait_seconds"] > 0
        status = await client.get(
            "/queue/status", headers={**late.auth, "X-Queue-Token": body["token"]}
        )
        assert status.json() == body

    async def test_status_needs_a_token_and_refuses_another_customers(
        self, client: httpx.AsyncClient, mina: Caller
    ) -> None:
        joon = await admitted(client, "joon@example.com")
        missing = await client.get("/queue/status", headers=mina.auth)
        foreign = await client.get(
            "/queue/status", headers={**mina.auth, "X-Queue-Token": str(joon.queue_token)}
        )
        assert error_code(missing) == (401, "queue_token_required")
        assert error_code(foreign) == (403, "queue_token_invalid")

    async def test_status_tells_the_holder_their_token_expired(
        self, mina: Caller, clock: ManualClock
    ) -> None:
        clock.advance(600)
        response = await mina.get("/queue/status")
        assert response.status_code == 200
        assert response.json()["status"] == "expired"
        assert (response.json()["position"], response.json()["estimated_wait_seconds"]) == (None, 0)

    async def test_queue_paths_refuse_missing_foreign_and_waiting_tokens(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        await admitted(client, "p1@example.com")
        await admitted(client, "p2@example.com")
        late = await sign_up_and_log_in(client, "late@example.com")
        waiting = (await client.post("/queue/tokens", headers=late.auth)).json()["token"]
        path = "/concerts/1/dates"
        assert error_code(await client.get(path, headers=mina.auth)) == (
            401,
            "queue_token_required",
        )
        foreign = {**mina.auth, "X-Queue-Token": waiting}
        assert error_code(await client.get(path, headers=foreign)) == (403, "queue_token_invalid")
        queued = {**late.auth, "X-Queue-Token": waiting}
        assert error_code(await client.get(path, headers=queued)) == (403, "queue_token_not_active")


class TestCatalog:
    async def test_lists_concerts_without_authentication(
        self, client: httpx.AsyncClient, seats: list[int]
    ) -> None:
        response = await client.get("/concerts")
        assert response.json() == {
            "concerts": [{"concert_id": 1, "title": "Test Concert", "venue": "Test Hall"}]
        }

    async def test_lists_open_dates_with_available_seats(
        self, mina: Caller, seats: list[int]
    ) -> None:
        await hold(mina, seats[0])
        response = await mina.get("/concerts/1/dates")
        assert response.status_code == 200
        [date] = response.json()["dates"]
        assert (date["date_id"], date["available_seats"], date["on_sale"]) == (1, 3, True)
        assert date["sale_closes_at"] == date["starts_at"]
        assert datetime.fromisoformat(date["starts_at"]).utcoffset() == timedelta(0)
        assert len(date["date"]) == 10

    async def test_shows_the_seat_map_in_layout_order(self, mina: Caller, seats: list[int]) -> None:
        await hold(mina, seats[1])
        response = await mina.get("/concerts/1/dates/1/seats")
        assert [(s["label"], s["status"]) for s in response.json()["seats"]] == [
            ("Floor A-1", "available"),
            ("Floor A-2", "held"),
            ("Floor A-3", "available"),
            ("Floor A-4", "available"),
        ]
        assert response.json()["seats"][0] == {
            "seat_id": seats[0],
            "section": "Floor",
            "row": "A",
            "number": 1,
            "label": "Floor A-1",
            "price": 50_000,
            "status": "available",
        }

    async def test_shows_one_section_and_answers_404_for_a_section_the_date_lacks(
        self, mina: Caller, seats: list[int]
    ) -> None:
        floor = await mina.get("/concerts/1/dates/1/seats?section=Floor")
        assert len(floor.json()["seats"]) == 4
        assert error_code(await mina.get("/concerts/1/dates/1/seats?section=VIP")) == (
            404,
            "not_found",
        )
        too_long = await mina.get("/concerts/1/dates/1/seats?section=" + "x" * 51)
        assert error_code(too_long) == (422, "invalid_request")

    async def test_the_seat_map_shows_others_holds_and_cancellations_at_once(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        joon = await admitted(client, "joon@example.com")

        async def statuses() -> tuple[list[str], str]:
            response = await mina.get("/concerts/1/dates/1/seats")
            assert response.headers["content-type"] == "application/json"
            return [seat["status"] for seat in response.json()["seats"]], response.text

        before, first_body = await statuses()
        assert (before, first_body) == await statuses()  # served again, byte for byte
        held = await hold(joon, seats[0])
        assert (await statuses())[0] == ["held", "available", "available", "available"]
        response = await client.delete(f"/reservations/{held['reservation_id']}", headers=joon.auth)
        assert response.status_code == 200
        assert (await statuses())[0] == before

    @pytest.mark.parametrize(
        "path",
        [
            "/concerts/9/dates",
            "/concerts/abc/dates",
            "/concerts/1/dates/9/seats",
            "/concerts/9/dates/1/seats",
            "/concerts/1/dates/-1/seats",
            "/concerts/99999999999999999999/dates",
        ],
    )
    async def test_answers_404_for_unknown_ids(
        self, mina: Caller, seats: list[int], path: str
    ) -> None:
        assert error_code(await mina.get(path)) == (404, "not_found")


class TestReservations:
    async def test_holds_a_seat(self, mina: Caller, seats: list[int], clock: ManualClock) -> None:
        body = await hold(mina, seats[0])
        assert body == {
            "reservation_id": 1,
            "seat_id": seats[0],
            "date_id": 1,
            "concert_id": 1,
            "section": "Floor",
            "row": "A",
            "number": 1,
            "label": "Floor A-1",
            "price": 50_000,
            "status": "held",
            "expires_at": (clock.now() + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        }

    async def test_refuses_a_held_seat_and_a_fourth_hold_with_409(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        joon = await admitted(client, "joon@example.com")
        await hold(mina, seats[0])
        taken = await joon.post("/reservations", {"seat_id": seats[0]})
        assert error_code(taken) == (409, "seat_unavailable")
        await hold(mina, seats[1])
        over = await mina.post("/reservations", {"seat_id": seats[2]})
        assert error_code(over) == (409, "hold_limit_reached")

    async def test_a_hold_retried_with_its_key_gets_the_first_answer_and_holds_once(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        basket = {"seat_ids": [seats[0], seats[1]]}
        first = await mina.post("/reservations", basket, **{"Idempotency-Key": "basket-1"})
        again = await mina.post("/reservations", basket, **{"Idempotency-Key": "basket-1"})
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        listed = (await client.get("/reservations", headers=mina.auth)).json()
        assert len(listed["reservations"]) == 2
        other = await mina.post(
            "/reservations", {"seat_id": seats[2]}, **{"Idempotency-Key": "basket-1"}
        )
        assert error_code(other) == (422, "idempotency_key_reused")
        document = (await client.get("/openapi.json")).json()
        named = [p["name"] for p in document["paths"]["/reservations"]["post"]["parameters"]]
        assert named == ["Idempotency-Key"]

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"seat_id": 999}, (404, "not_found")),
            ({"seat_id": 0}, (404, "not_found")),
            ({"seat_id": "1"}, (422, "invalid_request")),
            ({"seat_id": True}, (422, "invalid_request")),
            ({}, (422, "invalid_request")),
        ],
    )
    async def test_refuses_unknown_and_malformed_seats(
        self, mina: Caller, seats: list[int], body: object, expected: tuple[int, str]
    ) -> None:
        assert error_code(await mina.post("/reservations", body)) == expected

    async def test_shows_a_reservation_to_its_owner_only(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int], clock: ManualClock
    ) -> None:
        held = await hold(mina, seats[0])
        mine = await client.get("/reservations/1", headers=mina.auth)
        assert mine.json() == held
        joon = await admitted(client, "joon@example.com")
        for path in ("/reservations/1", "/reservations/2", "/reservations/x"):
            response = await client.get(path, headers=joon.auth)
            assert error_code(response) == (404, "not_found")
        clock.advance(300)
        lapsed = await client.get("/reservations/1", headers=mina.auth)
        assert lapsed.json()["status"] == "expired"

    async def test_cancels_a_hold_once_and_frees_the_seat(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        await hold(mina, seats[0])
        joon = await admitted(client, "joon@example.com")
        assert error_code(await client.delete("/reservations/1", headers=joon.auth)) == (
            404,
            "not_found",
        )
        cancelled = await client.delete("/reservations/1", headers=mina.auth)
        assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
        again = await client.delete("/reservations/1", headers=mina.auth)
        assert error_code(again) == (409, "reservation_not_held")
        await hold(joon, seats[0])


class TestWallet:
    async def test_shows_and_charges_the_balance(
        self, client: httpx.AsyncClient, mina: Caller
    ) -> None:
        assert (await client.get("/wallet", headers=mina.auth)).json() == {"balance": 0}
        response = await client.post("/wallet/charges", json={"amount": 70_000}, headers=mina.auth)
        assert (response.status_code, response.json()) == (200, {"balance": 70_000})

    @pytest.mark.parametrize(
        "body",
        [
            {"amount": 0},
            {"amount": -5},
            {"amount": 10_000_001},
            {"amount": "100"},
            {"amount": 1.5},
            {},
        ],
    )
    async def test_refuses_amounts_out_of_range_with_422(
        self, client: httpx.AsyncClient, mina: Caller, body: object
    ) -> None:
        response = await client.post("/wallet/charges", json=body, headers=mina.auth)
        assert error_code(response) == (422, "invalid_request")

    async def test_refuses_a_balance_past_100_million(
        self, client: httpx.AsyncClient, mina: Caller
    ) -> None:
        for _ in range(10):
            await client.post("/wallet/charges", json={"amount": 10_000_000}, headers=mina.auth)
        response = await client.post("/wallet/charges", json={"amount": 1}, headers=mina.auth)
        assert error_code(response) == (422, "invalid_request")

    async def test_applies_a_retried_charge_once(
        self, client: httpx.AsyncClient, mina: Caller
    ) -> None:
        headers = {**mina.auth, "Idempotency-Key": "top-up-1"}
        first = await client.post("/wallet/charges", json={"amount": 5_000}, headers=headers)
        again = await client.post("/wallet/charges", json={"amount": 5_000}, headers=headers)
        assert first.json() == again.json() == {"balance": 5_000}


class TestPayments:
    async def pay(self, caller: Caller, reservation_id: object, **headers: str) -> httpx.Response:
        return await caller.post("/payments", {"reservation_id": reservation_id}, **headers)

    async def test_pays_sells_debits_and_expires_the_queue_token(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        await client.post("/wallet/charges", json={"amount": 80_000}, headers=mina.auth)
        await hold(mina, seats[0])
        response = await self.pay(mina, 1)
        assert response.status_code == 201
        assert response.json() == {
            "payment_id": 1,
            "reservation_id": 1,
            "reservation_ids": [1],
            "amount": 50_000,
            "balance": 30_000,
            "status": "paid",
        }
        assert (await client.get("/reservations/1", headers=mina.auth)).json()["status"] == "paid"
        assert (await mina.get("/queue/status")).json()["status"] == "expired"

    async def test_refuses_a_balance_that_does_not_cover_the_price_with_402(
        self, mina: Caller, seats: list[int]
    ) -> None:
        await hold(mina, seats[0])
        assert error_code(await self.pay(mina, 1)) == (402, "insufficient_balance")

    async def test_refuses_an_expired_hold_and_a_paid_one_with_409(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int], clock: ManualClock
    ) -> None:
        await client.post("/wallet/charges", json={"amount": 200_000}, headers=mina.auth)
        await hold(mina, seats[0])
        await hold(mina, seats[1])
        assert (await self.pay(mina, 2)).status_code == 201
        mina = await admitted_again(client, mina)
        assert error_code(await self.pay(mina, 2)) == (409, "reservation_not_held")
        clock.advance(300)
        assert error_code(await self.pay(mina, 1)) == (409, "hold_expired")

    async def test_reports_another_customers_reservation_as_404(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        await hold(mina, seats[0])
        joon = await admitted(client, "joon@example.com")
        assert error_code(await self.pay(joon, 1)) == (404, "not_found")
        assert error_code(await self.pay(joon, 77)) == (404, "not_found")
        assert error_code(await self.pay(joon, "1")) == (422, "invalid_request")

    async def test_a_retry_with_one_key_gets_the_first_answer_and_pays_once(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        await client.post("/wallet/charges", json={"amount": 100_000}, headers=mina.auth)
        await hold(mina, seats[0])
        first = await self.pay(mina, 1, **{"Idempotency-Key": "order-1"})
        again = await self.pay(mina, 1, **{"Idempotency-Key": "order-1"})
        assert (first.status_code, first.json()) == (again.status_code, again.json())
        assert (await client.get("/wallet", headers=mina.auth)).json() == {"balance": 50_000}
        other = await self.pay(mina, 2, **{"Idempotency-Key": "order-1"})
        assert error_code(other) == (422, "idempotency_key_reused")

    async def test_an_error_answer_is_replayed_with_its_status(
        self, mina: Caller, seats: list[int]
    ) -> None:
        await hold(mina, seats[0])
        first = await self.pay(mina, 1, **{"Idempotency-Key": "k"})
        again = await self.pay(mina, 1, **{"Idempotency-Key": "k"})
        assert error_code(first) == error_code(again) == (402, "insufficient_balance")
        assert first.json() == again.json()

    async def test_a_key_still_in_use_gets_409(
        self, deps: Dependencies, mina: Caller, seats: list[int], clock: ManualClock
    ) -> None:
        from concert_domain.idempotency import PENDING_LEASE, fingerprint
        from concert_domain.ids import UserId

        await hold(mina, seats[0])
        async with deps.uow() as uow:
            request = fingerprint("pay", reservation_id=1)
            await uow.idempotency.claim(UserId(1), "busy", request, clock.now(), PENDING_LEASE)
            await uow.commit()
        response = await self.pay(mina, 1, **{"Idempotency-Key": "busy"})
        assert error_code(response) == (409, "idempotency_key_in_use")

    async def test_refuses_a_malformed_idempotency_key(
        self, mina: Caller, seats: list[int]
    ) -> None:
        response = await self.pay(mina, 1, **{"Idempotency-Key": "k" * 256})
        assert error_code(response) == (422, "invalid_request")

    async def test_a_missing_queue_token_is_told_before_an_id_no_one_has(
        self, mina: Caller
    ) -> None:
        for path, body in (("/reservations", {"seat_id": 0}), ("/payments", {"reservation_id": 0})):
            response = await mina.client.post(path, json=body, headers=mina.auth)
            assert error_code(response) == (401, "queue_token_required"), path


class TestBoxOffice:
    """Several seats, best available, several holds paid at once, one extension."""

    async def test_holds_several_seats_in_the_order_asked(
        self, mina: Caller, seats: list[int]
    ) -> None:
        response = await mina.post("/reservations", {"seat_ids": [seats[2], seats[0]]})
        assert response.status_code == 201
        held = response.json()["reservations"]
        assert [(r["seat_id"], r["status"]) for r in held] == [
            (seats[2], "held"),
            (seats[0], "held"),
        ]

    async def test_several_seats_are_refused_whole_naming_the_taken_ones(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        joon = await admitted(client, "joon@example.com")
        await hold(joon, seats[1])
        response = await mina.post("/reservations", {"seat_ids": [seats[0], seats[1]]})
        assert error_code(response) == (409, "seat_unavailable")
        assert "Floor A-2" in response.json()["error"]["message"]
        assert (await mina.post("/reservations", {"seat_ids": [seats[0]]})).status_code == 201

    async def test_best_available_holds_seats_side_by_side(
        self, mina: Caller, seats: list[int]
    ) -> None:
        response = await mina.post("/reservations", {"date_id": 1, "quantity": 2})
        assert response.status_code == 201
        held = response.json()["reservations"]
        assert [r["number"] for r in held] == [1, 2]  # 2-3 would leave 1 and 4 alone

    async def test_best_available_answers_409_when_no_row_has_them_together(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        joon = await admitted(client, "joon@example.com")
        await hold(joon, seats[1])
        await hold(joon, seats[2])
        response = await mina.post("/reservations", {"date_id": 1, "quantity": 2})
        assert error_code(response) == (409, "seats_not_together")
        response = await mina.post("/reservations", {"date_id": 1, "quantity": 1, "section": "X"})
        assert error_code(response) == (404, "not_found")
        # a field of another form is ignored, as any field a form does not name
        response = await mina.post("/reservations", {"seat_id": seats[0], "section": "X"})
        assert response.status_code == 201

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"seat_id": 1, "seat_ids": [2]},
            {"seat_id": 1, "date_id": 1, "quantity": 2},
            {"date_id": 1},
            {"seat_id": None},
            {"seat_ids": []},
            {"seat_ids": [1, 1]},
            {"seat_ids": [1, 2, 3]},  # past the limit of two
            {"date_id": 1, "quantity": 0},
            {"date_id": 1, "quantity": 3},
            {"seat_ids": "1"},
        ],
    )
    async def test_a_body_of_no_one_form_or_of_bad_values_is_a_422(
        self, mina: Caller, seats: list[int], body: dict[str, object]
    ) -> None:
        assert error_code(await mina.post("/reservations", body)) == (422, "invalid_request")

    async def test_pays_several_holds_at_once(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        await client.post("/wallet/charges", json={"amount": 120_000}, headers=mina.auth)
        held = (await mina.post("/reservations", {"seat_ids": seats[:2]})).json()
        ids = [r["reservation_id"] for r in held["reservations"]]
        response = await mina.post("/payments", {"reservation_ids": ids})
        assert response.status_code == 201
        assert response.json() == {
            "payment_id": 1,
            "reservation_id": ids[0],
            "reservation_ids": ids,
            "amount": 100_000,
            "balance": 20_000,
            "status": "paid",
        }
        assert (await mina.get("/queue/status")).json()["status"] == "expired"

    async def test_pays_nothing_when_one_hold_cannot_be_paid(
        self, client: httpx.AsyncClient, mina: Caller, seats: list[int]
    ) -> None:
        await client.post("/wallet/charges", json={"amount": 120_000}, headers=mina.auth)
        first, second = await hold(mina, seats[0]), await hold(mina, seats[1])
        await client.delete(f"/reservations/{second['reservation_id']}", headers=mina.auth)
        ids = [first["reservation_id"], second["reservation_id"]]
        response = await mina.post("/payments", {"reservation_ids": ids})
        assert error_code(response) == (409, "reservation_not_held")
        assert (await client.get("/wallet", headers=mina.auth)).json() == {"balance": 120_000}
        bad: list[dict[str, object]] = [
            {"reservation_ids": []},
            {"reservation_id": 1, "reservation_ids": [1]},
        ]
        for body in bad:
            assert error_code(await mina.post("/payments", body)) == (422, "invalid_request")

    async def test_extends_a_hold_once(
        self, mina: Caller, seats: list[int], clock: ManualClock
    ) -> None:
        held = await hold(mina, seats[0])
        path = f"/reservations/{held['reservation_id']}/extension"
        response = await mina.post(path, None)
        assert response.status_code == 200
        later = clock.now() + timedelta(minutes=7)
        assert response.json()["expires_at"] == later.isoformat().replace("+00:00", "Z")
        assert error_code(await mina.post(path, None)) == (409, "extension_limit_reached")
        assert error_code(await mina.post("/reservations/99/extension", None)) == (
            404,
            "not_found",
        )
        other = await hold(mina, seats[1])
        clock.advance(300)
        path = f"/reservations/{other['reservation_id']}/extension"
        assert error_code(await mina.post(path, None)) == (409, "hold_expired")


class TestOperations:
    async def test_health_and_readiness(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200

    async def test_readiness_names_the_failing_part(self, deps: Dependencies) -> None:
        async def database_down() -> None:
            raise StoreUnavailable("the database does not answer")

        async def fine() -> None:
            return None

        app = create_app(deps, readiness={"database": database_down, "redis": fine})
        async with validated_client(httpx.ASGITransport(app=app), "http://t") as c:
            response = await c.get("/readyz")
        assert response.status_code == 503
        assert response.json()["database"].startswith("unavailable")
        assert response.json()["redis"] == "ok"

    async def test_once_told_to_stop_it_is_not_ready_and_closes_each_connection(
        self, deps: Dependencies
    ) -> None:
        app = create_app(deps)
        async with validated_client(httpx.ASGITransport(app=app), "http://t") as c:
            assert "connection" not in (await c.get("/healthz")).headers
            app.state.stopping.told = True  # as a SIGTERM tells it (`http.stopping`)
            response = await c.get("/readyz")
            assert (response.status_code, response.json()) == (503, {"status": "stopping"})
            served = await c.get("/healthz")
        assert served.status_code == 200
        assert served.headers["connection"] == "close"

    async def test_openapi_describes_the_rows_of_the_contract_and_no_others(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        described = {
            (method.upper(), canonical(path))
            for path, operations in document["paths"].items()
            for method in operations
        }
        assert described == contract_operations()

    async def test_openapi_gives_every_operation_its_bodies_and_every_error(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                answers = operation["responses"]
                assert any(status.startswith("2") for status in answers), (method, path)
                for status, answer in answers.items():
                    if path.endswith(".csv") and status < "300":
                        assert set(answer["content"]) == {"text/csv; charset=utf-8"}
                        continue
                    if path == "/metrics" and status < "300":
                        assert list(answer["content"]) == [PROMETHEUS]
                        continue
                    if path.endswith("/events") and status < "300":
                        assert list(answer["content"]) == ["text/event-stream"]
                        continue
                    if path in ("/", "/ops") and status < "300":
                        assert list(answer["content"]) == ["text/html; charset=utf-8"]
                        continue
                    schema = answer["content"]["application/json"]["schema"]
                    if status >= "400" and path != "/readyz":  # its 503 names what fails
                        assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
                if method == "post" and not path.endswith(
                    ("/queue/tokens", "/refund", "/extension")
                ):
                    body = operation["requestBody"]["content"]["application/json"]["schema"]
                    assert body["$ref"].startswith("#/components/schemas/")

    async def test_unknown_paths_and_methods_get_the_error_body(
        self, client: httpx.AsyncClient
    ) -> None:
        assert error_code(await client.get("/nowhere")) == (404, "not_found")
        assert error_code(await client.delete("/concerts")) == (405, "invalid_request")

    async def test_a_method_a_path_does_not_answer_is_told_every_one_it_does(
        self, mina: Caller
    ) -> None:
        for method in ("OPTIONS", "PUT", "PATCH"):
            response = await mina.client.request(method, "/reservations/1", headers=mina.auth)
            assert error_code(response) == (405, "invalid_request")
            assert set(response.headers["allow"].split(", ")) == {"DELETE", "GET", "HEAD"}

    async def test_openapi_states_the_rules_the_service_holds_requests_to(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        sign_up = document["components"]["schemas"]["SignUp"]["properties"]["email"]
        assert re.fullmatch(sign_up["pattern"], " Mina@example.com ")
        assert not re.fullmatch(sign_up["pattern"], "not-an-address")
        status = document["paths"]["/queue/status"]["get"]["security"]
        assert status == [{"bearer": [], "queueToken": []}]
        [key] = [
            p
            for p in document["paths"]["/payments"]["post"]["parameters"]
            if p["name"] == "Idempotency-Key"
        ]
        assert not re.fullmatch(key["schema"]["pattern"], " k")


class TestHostileInput:
    """What an attacker sends gets a 4xx with the error body, never a 5xx."""

    @pytest.mark.parametrize(
        ("path", "content"),
        [
            ("/auth/login", b'{"a":' * 1_000),
            ("/wallet/charges", b"[" * 1_000),
            ("/auth/signup", b'{"a":' * 5_000 + b"1" + b"}" * 5_000),  # well formed, deep
            ("/wallet/charges", b'{"amount": [' + b"[" * 20_000 + b"]" * 20_000 + b"]}"),
            ("/auth/login", b'{"email": "\\ud800@example.com", "password": "x"}'),
            ("/auth/signup", b'{"email": "a@example.com", "password": "\\udfff\\udfff123456"}'),
            ("/auth/login", b'{"email": "a@example.com", "password": "\xff\xfe invalid"}'),
        ],
    )
    async def test_malformed_or_absurdly_nested_json_is_a_400(
        self, mina: Caller, path: str, content: bytes
    ) -> None:
        response = await mina.client.post(path, content=content, headers=mina.auth)
        assert error_code(response) == (400, "invalid_request")

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/auth/signup", {"email": "a\u0000b@example.com", "password": PASSWORD}),
            ("/auth/signup", {"email": "a@example.com", "password": "pass\u0000word"}),
            ("/auth/login", {"email": "a\u0000@example.com", "password": PASSWORD}),
            ("/auth/login", {"email": "x" * 250 + "@example.com", "password": PASSWORD}),
            ("/auth/login", {"email": "a@example.com", "password": "x" * 257}),
            ("/wallet/charges", {"amount": 10**30}),
            ("/wallet/charges", {"amount": 1.5}),
        ],
    )
    async def test_strings_with_nul_and_absurd_values_are_a_422(
        self, mina: Caller, path: str, body: dict[str, object]
    ) -> None:
        payload = json.dumps(body).replace("\\\\u0000", "\\u0000").encode()
        response = await mina.client.post(path, content=payload, headers=mina.auth)
        assert error_code(response) == (422, "invalid_request")

    @pytest.mark.parametrize(
        "path",
        [
            "/reservations/%C2%B2",  # a superscript two, which str.isdigit accepts
            "/reservations/%D9%A1",  # an Arabic-Indic one
            "/reservations/" + "9" * 4_301,
            "/reservations/0",
            "/reservations/-1",
            "/concerts/%D9%A1/dates",
            "/concerts/1/dates/%EF%BC%91/seats",  # a full-width one
        ],
    )
    async def test_ids_that_are_not_plain_ascii_digits_name_nothing(
        self, mina: Caller, path: str
    ) -> None:
        assert error_code(await mina.get(path)) == (404, "not_found")

    @pytest.mark.parametrize(
        "token",
        [b"a" * 10_000, b"not a token!", "\u00e9".encode("latin-1") * 32, b"../etc/passwd" * 3],
    )
    async def test_a_queue_token_that_cannot_be_one_is_refused_without_a_lookup(
        self, mina: Caller, token: bytes
    ) -> None:
        headers = [(k.encode(), v.encode()) for k, v in mina.auth.items()]
        headers.append((b"X-Queue-Token", token))
        response = await mina.client.get("/queue/status", headers=headers)
        assert error_code(response) == (403, "queue_token_invalid")

    async def test_a_genuine_token_naming_no_account_is_a_401_everywhere(
        self, client: httpx.AsyncClient, deps: Dependencies, clock: ManualClock, seats: list[int]
    ) -> None:
        ghost = deps.tokens.issue(UserId(4_242), Role.CUSTOMER, clock.now()).access_token
        auth = {"Authorization": f"Bearer {ghost}"}
        for method, path, body in [
            ("GET", "/wallet", None),
            ("POST", "/queue/tokens", None),
            ("POST", "/reservations", {"seat_id": seats[0]}),
        ]:
            response = await client.request(method, path, json=body, headers=auth)
            assert error_code(response) == (401, "unauthorized"), path

    async def test_every_answer_is_neither_sniffed_nor_stored(
        self, client: httpx.AsyncClient
    ) -> None:
        await sign_up_and_log_in(client, "mina@example.com")
        login = await client.post(
            "/auth/login", json={"email": "mina@example.com", "password": PASSWORD}
        )
        for response in (login, await client.get("/concerts"), await client.get("/nowhere")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["cache-control"] == "no-store"


class TestClientAddress:
    async def test_sign_ups_and_logins_are_limited_per_client_address(
        self, clock: ManualClock
    ) -> None:
        deps = memory_deps(clock, BookingPolicy(auth_attempts_per_address=2))
        app = create_app(deps, proxies=Proxies.parse("10.0.0.0/8"))
        transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 4000))  # via our proxy
        async with validated_client(transport, "http://test") as client:

            async def sign_up(email: str, forwarded: str) -> httpx.Response:
                body = {"email": email, "password": PASSWORD}
                headers = {"X-Forwarded-For": forwarded}
                return await client.post("/auth/signup", json=body, headers=headers)

            assert (await sign_up("a@example.com", "198.51.100.7")).status_code == 201
            assert (await sign_up("b@example.com", "203.0.113.9, 198.51.100.7")).status_code == 201
            third = await sign_up("c@example.com", "198.51.100.7")
            assert error_code(third) == (429, "rate_limited")
            assert (await sign_up("c@example.com", "198.51.100.8")).status_code == 201
            # a proxy of ours forwarding a chain: the last hop before our proxies counts
            assert (await sign_up("d@example.com", "198.51.100.8, 10.0.0.9")).status_code == 201
            spoofed = await sign_up("e@example.com", "198.51.100.8, 10.0.0.9")
            assert error_code(spoofed) == (429, "rate_limited")

    async def test_forwarded_for_from_an_unnamed_peer_is_not_believed(
        self, clock: ManualClock
    ) -> None:
        deps = memory_deps(clock, BookingPolicy(auth_attempts_per_address=1))
        transport = httpx.ASGITransport(app=create_app(deps), client=("192.0.2.1", 4000))
        async with validated_client(transport, "http://test") as client:
            for n, forwarded in enumerate(["198.51.100.1", "198.51.100.2"]):
                body = {"email": f"{n}@example.com", "password": PASSWORD}
                headers = {"X-Forwarded-For": forwarded}
                response = await client.post("/auth/signup", json=body, headers=headers)
                assert response.status_code == (201 if n == 0 else 429)


async def admitted_again(client: httpx.AsyncClient, caller: Caller) -> Caller:
    response = await client.post("/queue/tokens", headers=caller.auth)
    return attrs.evolve(caller, queue_token=response.json()["token"])


class TestWebPages:
    async def test_the_app_and_the_operators_page_are_served_whole_from_here(
        self, client: httpx.AsyncClient, deps: Dependencies
    ) -> None:
        files = httpx.AsyncClient(  # the scripts and style are files, not API answers
            transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://test"
        )
        for path, script in (("/", "/web/app.js"), ("/ops", "/web/ops.js")):
            page = await client.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            sources = [
                found
                for found in re.findall(r'(?:src|href)="([^"]+)"', page.text)
                if found != "data:,"  # no icon, and no request for one
            ]
            assert script in sources and "/web/common.js" in sources
            assert all(source.startswith("/web/") for source in sources), sources  # no CDN
            for source in sources:
                asset = await files.get(source)
                assert asset.status_code == 200 and asset.content
                assert "http://" not in asset.text and "https://" not in asset.text
        assert (await files.get("/web/..%2Fapp.py")).status_code == 404
        assert (await files.get("/web/nothing.js")).status_code == 404
        await files.aclose()
