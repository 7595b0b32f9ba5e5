"""The endpoints of API.md: each reads its call, runs one use case and answers a declared type.

`ENDPOINTS` is the one table of them; the app's routes and `/openapi.json` are made from it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from adapters.caching.lru import LeastRecentlyUsed
from concert_domain import usecases
from concert_domain.catalog import SeatView
from concert_domain.errors import NotFound, StoreUnavailable
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId
from concert_domain.queue import QueueStatus
from concert_domain.reservations import Reservation
from entrypoints.http import schema
from entrypoints.http.endpoints import MAX_ID, Access, Call, Endpoint, encode
from entrypoints.http.openapi import openapi_document

Answered = tuple[int, schema.Answer | dict[str, Any] | bytes]


def queue_status_answer(status: QueueStatus) -> schema.QueueStatus:
    return schema.QueueStatus(
        token=status.token,
        status=status.status.value,
        position=status.position,
        estimated_wait_seconds=status.estimated_wait_seconds,
    )


def reservation_answer(reservation: Reservation) -> schema.Reservation:
    return schema.Reservation(
        reservation_id=reservation.reservation_id,
        seat_id=reservation.seat_id,
        date_id=reservation.date_id,
        concert_id=reservation.concert_id,
        number=reservation.number,
        price=reservation.price,
        status=reservation.status.value,
        expires_at=reservation.expires_at,
    )


def seat_answer(view: SeatView) -> schema.Seat:
    seat = view.seat
    return schema.Seat(
        seat_id=seat.seat_id,
        number=seat.number,
        price=seat.price,
        status=view.status.value,
    )


def body_id(value: int, name: str) -> int:
    """An id in a body: one no store can hold names nothing there is: 404."""
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"no such {name}: {value}")
    return value


async def signup(call: Call) -> Answered:
    body: schema.SignUp = call.body
    account = await usecases.sign_up(body.email, body.password, call.client, deps=call.deps)
    return 201, schema.Account(user_id=account.user_id, email=account.email)


async def login(call: Call) -> Answered:
    body: schema.LogIn = call.body
    token = await usecases.log_in(body.email, body.password, call.client, deps=call.deps)
    return 200, schema.AccessToken(
        access_token=token.access_token, token_type="Bearer", expires_in=token.expires_in
    )


async def join_queue(call: Call) -> Answered:
    status, created = await usecases.join_queue(call.user, deps=call.deps)
    return (201 if created else 200), queue_status_answer(status)


async def queue_status(call: Call) -> Answered:
    status = await usecases.queue_status(call.user, call.queue_token, deps=call.deps)
    return 200, queue_status_answer(status)


async def list_concerts(call: Call) -> Answered:
    concerts = await usecases.list_concerts(deps=call.deps)
    return 200, schema.Concerts(
        concerts=[schema.Concert(concert_id=c.concert_id, title=c.title) for c in concerts]
    )


async def list_dates(call: Call) -> Answered:
    concert_id = ConcertId(call.path_id("concert_id"))
    dates = await usecases.list_open_dates(call.user, call.queue_token, concert_id, deps=call.deps)
    return 200, schema.OpenDates(
        dates=[
            schema.OpenDate(
                date_id=d.date.date_id,
                date=d.date.date,
                starts_at=d.date.starts_at,
                available_seats=d.available_seats,
            )
            for d in dates
        ]
    )


async def list_seats(call: Call) -> Answered:
    concert_id = ConcertId(call.path_id("concert_id"))
    date_id = DateId(call.path_id("date_id"))
    seats = await usecases.seat_map(
        call.user, call.queue_token, concert_id, date_id, deps=call.deps
    )
    bodies: SeatMapBodies = call.request.app.state.seat_map_bodies
    return 200, bodies.body(date_id, seats)


class SeatMapBodies:
    """The JSON of the last seat map answered per date: the read model hands back the very
    same sequence while nothing has changed, so that sequence is encoded once. Bounded."""

    def __init__(self, limit: int = 1_000) -> None:
        self._bodies: LeastRecentlyUsed[DateId, tuple[Sequence[SeatView], bytes]]
        self._bodies = LeastRecentlyUsed(limit)

    def body(self, date_id: DateId, seats: Sequence[SeatView]) -> bytes:
        kept = self._bodies.get(date_id)
        if kept is not None and kept[0] is seats:
            return kept[1]
        encoded = encode(schema.SeatMap(seats=[seat_answer(view) for view in seats]))
        self._bodies.put(date_id, (seats, encoded))
        return encoded


async def hold_seat(call: Call) -> Answered:
    body: schema.HoldSeat = call.body
    seat_id = SeatId(body_id(body.seat_id, "seat"))
    held = await usecases.hold_seat(call.user, call.queue_token, seat_id, deps=call.deps)
    return 201, reservation_answer(held)


async def get_reservation(call: Call) -> Answered:
    reservation_id = ReservationId(call.path_id("reservation_id"))
    found = await usecases.get_reservation(call.user, reservation_id, deps=call.deps)
    return 200, reservation_answer(found)


async def cancel_reservation(call: Call) -> Answered:
    reservation_id = ReservationId(call.path_id("reservation_id"))
    cancelled = await usecases.cancel_reservation(call.user, reservation_id, deps=call.deps)
    return 200, reservation_answer(cancelled)


async def get_wallet(call: Call) -> Answered:
    return 200, schema.Balance(balance=await usecases.get_balance(call.user, deps=call.deps))


async def charge_wallet(call: Call) -> Answered:
    body: schema.Charge = call.body
    balance = await usecases.charge_wallet(
        call.user, body.amount, call.idempotency_key, deps=call.deps
    )
    return 200, schema.Balance(balance=balance)


async def pay(call: Call) -> Answered:
    body: schema.Pay = call.body
    reservation_id = ReservationId(body_id(body.reservation_id, "reservation"))
    receipt = await usecases.pay(
        call.user, call.queue_token, reservation_id, call.idempotency_key, deps=call.deps
    )
    return 201, schema.Payment(
        payment_id=receipt.payment_id,
        reservation_id=receipt.reservation_id,
        amount=receipt.amount,
        balance=receipt.balance,
        status="paid",
    )


async def healthz(call: Call) -> Answered:
    return 200, schema.Health(status="ok")


async def readyz(call: Call) -> Answered:
    parts: dict[str, str] = {}
    for name, check in call.request.app.state.readiness.items():
        try:
            await check()
            parts[name] = "ok"
        except StoreUnavailable as e:
            parts[name] = f"unavailable: {e.message}"
    ready = all(state == "ok" for state in parts.values())
    answer = schema.Readiness(status="ok" if ready else "unavailable", **parts)
    return (200 if ready else 503), answer


async def openapi(call: Call) -> Answered:
    return 200, document()


@functools.cache
def document() -> dict[str, Any]:
    """`/openapi.json`, made from `ENDPOINTS` the first time it is asked for."""
    return openapi_document(ENDPOINTS)


# In the order the on-sale rush asks for them: Starlette tries the routes in turn. Every path
# is distinct, so the order changes nothing else; a path with two methods answers each, for
# Starlette goes on past a method that does not match.
ENDPOINTS = (
    Endpoint(
        "GET",
        "/queue/status",
        "Where your queue token stands",
        queue_status,
        Access.QUEUED,
        {200: schema.QueueStatus},
        conflicts=(403,),
    ),
    Endpoint(
        "GET",
        "/concerts/{concert_id}/dates/{date_id}/seats",
        "The seat map of a date, by number",
        list_seats,
        Access.ADMITTED,
        {200: schema.SeatMap},
    ),
    Endpoint(
        "POST",
        "/reservations",
        "Hold a seat for CONCERT_HOLD_SECONDS",
        hold_seat,
        Access.ADMITTED,
        {201: schema.Reservation},
        body=schema.HoldSeat,
        conflicts=(404, 409, 429),
    ),
    Endpoint(
        "POST",
        "/payments",
        "Pay for a hold: seat sold, balance debited, queue token expired",
        pay,
        Access.ADMITTED,
        {201: schema.Payment},
        body=schema.Pay,
        conflicts=(402, 404, 409),
        idempotency_key=True,
    ),
    Endpoint(
        "POST",
        "/queue/tokens",
        "Join the waiting line, or get your live token back",
        join_queue,
        Access.CUSTOMER,
        {201: schema.QueueStatus, 200: schema.QueueStatus},
    ),
    Endpoint(
        "GET",
        "/concerts/{concert_id}/dates",
        "Open dates with available seats, soonest first",
        list_dates,
        Access.ADMITTED,
        {200: schema.OpenDates},
    ),
    Endpoint(
        "GET",
        "/reservations/{reservation_id}",
        "One of your reservations",
        get_reservation,
        Access.CUSTOMER,
        {200: schema.Reservation},
    ),
    Endpoint(
        "DELETE",
        "/reservations/{reservation_id}",
        "Cancel your hold; the seat is available at once",
        cancel_reservation,
        Access.CUSTOMER,
        {200: schema.Reservation},
        conflicts=(409,),
    ),
    Endpoint(
        "POST",
        "/wallet/charges",
        "Add money to your wallet",
        charge_wallet,
        Access.CUSTOMER,
        {200: schema.Balance},
        body=schema.Charge,
        idempotency_key=True,
    ),
    Endpoint("GET", "/wallet", "Your balance", get_wallet, Access.CUSTOMER, {200: schema.Balance}),
    Endpoint(
        "GET", "/concerts", "Every concert", list_concerts, Access.ANYONE, {200: schema.Concerts}
    ),
    Endpoint(
        "POST",
        "/auth/login",
        "Trade an email and password for an access token",
        login,
        Access.ANYONE,
        {200: schema.AccessToken},
        body=schema.LogIn,
        conflicts=(401, 429),
    ),
    Endpoint(
        "POST",
        "/auth/signup",
        "Create a customer's account",
        signup,
        Access.ANYONE,
        {201: schema.Account},
        body=schema.SignUp,
        conflicts=(409, 429),
    ),
    Endpoint(
        "GET",
        "/healthz",
        "The process runs",
        healthz,
        Access.ANYONE,
        {200: schema.Health},
        uses_stores=False,
    ),
    Endpoint(
        "GET",
        "/readyz",
        "The database and Redis answer; 503 names the failing part",
        readyz,
        Access.ANYONE,
        {200: schema.Readiness, 503: schema.Readiness},
    ),
    Endpoint(
        "GET",
        "/openapi.json",
        "This document",
        openapi,
        Access.ANYONE,
        {200: dict},
        uses_stores=False,
    ),
)
