"""The endpoints of API.md: each reads its call, runs one use case and answers a declared type.

`ENDPOINTS` is the one table of them; the app's routes and `/openapi.json` are made from it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.responses import Response, StreamingResponse

from adapters.caching.lru import LeastRecentlyUsed
from concert_domain import BookingPolicy, usecases
from concert_domain.catalog import Concert, DateSpec, RowSpec, SeatView, SectionSpec
from concert_domain.errors import ConcertError, InvalidRequest, NotFound, StoreUnavailable
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId
from concert_domain.paging import Page
from concert_domain.queue import QueueStatus
from concert_domain.reservations import Reservation, ReservationStatus
from entrypoints.http import schema, web
from entrypoints.http.endpoints import MAX_ID, Access, Call, Endpoint, encode
from entrypoints.http.metrics import CONTENT_TYPE as PROMETHEUS
from entrypoints.http.openapi import openapi_document
from entrypoints.http.seat_events import SeatFeeds, event, stream
from entrypoints.http.spreadsheet import CSV, csv_lines

Answered = tuple[int, schema.Answer | dict[str, Any] | bytes | Response]


def queue_status_answer(status: QueueStatus) -> schema.QueueStatus:
    return schema.QueueStatus(
        token=status.token,
        status=status.status.value,
        position=status.position,
        estimated_wait_seconds=status.estimated_wait_seconds,
    )


def reservation_answer(reservation: Reservation) -> schema.Reservation:
    return schema.Reservation(**_reservation_fields(reservation))


def _reservation_fields(reservation: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": reservation.reservation_id,
        "seat_id": reservation.seat_id,
        "date_id": reservation.date_id,
        "concert_id": reservation.concert_id,
        "section": reservation.section,
        "row": reservation.row,
        "number": reservation.number,
        "label": reservation.label,
        "price": reservation.price,
        "status": reservation.status.value,
        "expires_at": reservation.expires_at,
    }


def seat_answer(view: SeatView) -> schema.Seat:
    seat = view.seat
    return schema.Seat(
        seat_id=seat.seat_id,
        section=seat.section,
        row=seat.row,
        number=seat.number,
        label=seat.label,
        price=seat.price,
        status=view.status.value,
    )


def next_cursor(page: Page[Any]) -> str | None:
    return None if page.next is None else page.next.cursor()


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
    return 200, schema.Concerts(concerts=[concert_answer(c) for c in concerts])


def concert_answer(concert: Concert) -> schema.Concert:
    return schema.Concert(concert_id=concert.concert_id, title=concert.title, venue=concert.venue)


async def list_dates(call: Call) -> Answered:
    concert_id = ConcertId(call.path_id("concert_id"))
    dates = await usecases.list_open_dates(call.user, call.queue_token, concert_id, deps=call.deps)
    now = call.deps.clock.now()
    return 200, schema.OpenDates(
        dates=[
            schema.OpenDate(
                date_id=d.date.date_id,
                date=d.date.date,
                starts_at=d.date.starts_at,
                sale_opens_at=d.date.sale_opens_at,
                sale_closes_at=d.date.sale_closes_at,
                on_sale=d.date.on_sale(now),
                available_seats=d.available_seats,
            )
            for d in dates
        ]
    )


async def list_seats(call: Call) -> Answered:
    concert_id = ConcertId(call.path_id("concert_id"))
    date_id = DateId(call.path_id("date_id"))
    query: schema.SectionQuery = call.query
    seats = await usecases.seat_map(
        call.user, call.queue_token, concert_id, date_id, query.section, deps=call.deps
    )
    bodies: SeatMapBodies = call.request.app.state.seat_map_bodies
    return 200, bodies.body((date_id, query.section), seats)


async def seat_events(call: Call) -> Answered:
    """The live seat map: the queue gate and the date are checked as for the seat map, then
    the stream (`seat_events`)."""
    concert_id = ConcertId(call.path_id("concert_id"))
    date_id = DateId(call.path_id("date_id"))
    await usecases.seat_map(call.user, call.queue_token, concert_id, date_id, deps=call.deps)
    feeds: SeatFeeds = call.request.app.state.seat_feeds

    def snapshot(seats: Sequence[SeatView]) -> bytes:
        return event("snapshot", {"seats": [msgspec.to_builtins(seat_answer(v)) for v in seats]})

    events = stream(feeds, date_id, call.deps, snapshot)
    return 200, StreamingResponse(events, media_type=EVENT_STREAM, headers=NO_BUFFERING)


class SeatMapBodies:
    """The JSON of the last seat map answered per date and section: the read model hands
    back the very same sequence while nothing has changed, so that sequence is encoded once.
    Bounded."""

    def __init__(self, limit: int = 1_000) -> None:
        self._bodies: LeastRecentlyUsed[tuple[DateId, str | None], tuple[Sequence[SeatView], bytes]]
        self._bodies = LeastRecentlyUsed(limit)

    def body(self, key: tuple[DateId, str | None], seats: Sequence[SeatView]) -> bytes:
        kept = self._bodies.get(key)
        if kept is not None and kept[0] is seats:
            return kept[1]
        encoded = encode(schema.SeatMap(seats=[seat_answer(view) for view in seats]))
        self._bodies.put(key, (seats, encoded))
        return encoded


async def hold(call: Call) -> Answered:
    """A hold of any form, counted by outcome (`metrics.Metrics.holds`)."""
    counted = call.request.app.state.metrics.holds
    try:
        answered = await _hold(call)
    except ConcertError as error:
        counted.labels(error.code).inc()
        raise
    counted.labels("held").inc()
    return answered


async def _hold(call: Call) -> Answered:
    body: schema.Hold = call.body
    form = _one_form(body)
    if form == "seat_id":
        assert isinstance(body.seat_id, int)
        seat_id = SeatId(body_id(body.seat_id, "seat"))
        held = await usecases.hold_seat(
            call.user, call.queue_token, seat_id, call.idempotency_key, deps=call.deps
        )
        return 201, reservation_answer(held)
    if form == "seat_ids":
        assert isinstance(body.seat_ids, list)
        seat_ids = [SeatId(body_id(seat_id, "seat")) for seat_id in body.seat_ids]
        holds = await usecases.hold_seats(
            call.user, call.queue_token, seat_ids, call.idempotency_key, deps=call.deps
        )
    else:
        assert isinstance(body.date_id, int)
        assert isinstance(body.quantity, int)
        holds = await usecases.hold_best(
            call.user,
            call.queue_token,
            DateId(body_id(body.date_id, "date")),
            body.quantity,
            None if isinstance(body.section, UnsetType) else body.section,
            call.idempotency_key,
            deps=call.deps,
        )
    return 201, schema.Holds(reservations=[reservation_answer(r) for r in holds])


def _one_form(body: schema.Body) -> str:
    """The first field of the one form whose every field ``body`` carries
    (`schema.Body.forms`). Raises `InvalidRequest` for none or several, naming the forms."""
    given = {name for name in body.__struct_fields__ if getattr(body, name) is not UNSET}
    whole = [form for form in body.forms if given >= set(form)]
    if len(whole) != 1:
        forms = "; or ".join(" and ".join(form) for form in body.forms)
        raise InvalidRequest(f"give exactly one of: {forms}")
    return whole[0][0]


async def extend_hold(call: Call) -> Answered:
    reservation_id = ReservationId(call.path_id("reservation_id"))
    extended = await usecases.extend_hold(
        call.user, call.queue_token, reservation_id, deps=call.deps
    )
    return 200, reservation_answer(extended)


async def get_reservation(call: Call) -> Answered:
    reservation_id = ReservationId(call.path_id("reservation_id"))
    found = await usecases.get_reservation(call.user, reservation_id, deps=call.deps)
    return 200, reservation_answer(found)


async def cancel_reservation(call: Call) -> Answered:
    reservation_id = ReservationId(call.path_id("reservation_id"))
    cancelled = await usecases.cancel_reservation(call.user, reservation_id, deps=call.deps)
    return 200, reservation_answer(cancelled)


async def list_reservations(call: Call) -> Answered:
    query: schema.ReservationsQuery = call.query
    status = None if query.status is None else ReservationStatus(query.status)
    page = await usecases.list_reservations(
        call.user, status, query.cursor, query.limit, deps=call.deps
    )
    return 200, schema.Reservations(
        reservations=[reservation_answer(r) for r in page.items], next=next_cursor(page)
    )


async def me(call: Call) -> Answered:
    mine = await usecases.me(call.caller, deps=call.deps)
    return 200, schema.Me(
        user_id=mine.account.user_id,
        email=mine.account.email,
        role=mine.account.role.value,
        balance=mine.balance,
        queue=None if mine.queue is None else queue_status_answer(mine.queue),
        holds=[
            schema.CountingDown(
                **_reservation_fields(hold.reservation), seconds_left=hold.seconds_left
            )
            for hold in mine.holds
        ],
    )


async def list_transactions(call: Call) -> Answered:
    query: schema.PageQuery = call.query
    page = await usecases.list_transactions(call.user, query.cursor, query.limit, deps=call.deps)
    return 200, schema.Transactions(
        transactions=[
            schema.Transaction(
                transaction_id=entry.entry_id,
                kind=entry.kind.value,
                amount=entry.signed_amount,
                balance=entry.balance,
                at=entry.created_at,
            )
            for entry in page.items
        ],
        next=next_cursor(page),
    )


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
    if _one_form(body) == "reservation_id":
        assert isinstance(body.reservation_id, int)
        named = [body.reservation_id]
    else:
        assert isinstance(body.reservation_ids, list)
        named = body.reservation_ids
    reservation_ids = [ReservationId(body_id(r, "reservation")) for r in named]
    receipt = await usecases.pay_holds(
        call.user, call.queue_token, reservation_ids, call.idempotency_key, deps=call.deps
    )
    if not receipt.replayed:
        metrics = call.request.app.state.metrics
        metrics.seats_sold.inc(len(receipt.reservation_ids))
        metrics.revenue.inc(receipt.amount)
    return 201, schema.Payment(
        payment_id=receipt.payment_id,
        reservation_id=receipt.reservation_id,
        reservation_ids=list(receipt.reservation_ids),
        amount=receipt.amount,
        balance=receipt.balance,
        status="paid",
    )


# -- operators ------------------------------------------------------------------------------


async def create_concert(call: Call) -> Answered:
    body: schema.NewConcert = call.body
    concert = await usecases.create_concert(call.caller, body.title, body.venue, deps=call.deps)
    return 201, concert_answer(concert)


async def create_date(call: Call) -> Answered:
    body: schema.DateSpec = call.body
    concert_id = ConcertId(call.path_id("concert_id"))
    spec = DateSpec(
        starts_at=body.starts_at,
        sale_opens_at=body.sale_opens_at,
        sale_closes_at=body.sale_closes_at,
        sections=[
            SectionSpec(s.name, s.price, [RowSpec(r.row, r.seats) for r in s.rows])
            for s in body.sections
        ],
    )
    created = await usecases.create_date(call.caller, concert_id, spec, deps=call.deps)
    made = created.date
    return 201, schema.CreatedDate(
        date_id=made.date_id,
        concert_id=made.concert_id,
        date=made.date,
        starts_at=made.starts_at,
        sale_opens_at=made.sale_opens_at,
        sale_closes_at=made.sale_closes_at,
        seats_total=created.seats_total,
    )


async def date_sales(call: Call) -> Answered:
    concert_id = ConcertId(call.path_id("concert_id"))
    date_id = DateId(call.path_id("date_id"))
    sales = await usecases.date_sales(call.caller, concert_id, date_id, deps=call.deps)
    return 200, schema.Sales(
        date_id=sales.date_id,
        seats_total=sales.seats_total,
        available=sales.available,
        held=sales.held,
        sold=sales.sold,
        revenue=sales.revenue,
        sections=[
            schema.SectionSales(
                name=s.name,
                seats_total=s.seats_total,
                available=s.available,
                held=s.held,
                sold=s.sold,
                revenue=s.revenue,
            )
            for s in sales.sections
        ],
    )


async def sales_csv(call: Call) -> Answered:
    concert_id = ConcertId(call.path_id("concert_id"))
    date_id = DateId(call.path_id("date_id"))
    sold = await usecases.sold_seats(call.caller, concert_id, date_id, deps=call.deps)
    filename = f"sales-{concert_id}-{date_id}.csv"
    return 200, StreamingResponse(
        csv_lines(sold),
        media_type=CSV,
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


async def refund(call: Call) -> Answered:
    reservation_id = ReservationId(call.path_id("reservation_id"))
    refunded = await usecases.refund(
        call.caller, reservation_id, call.idempotency_key, deps=call.deps
    )
    return 200, reservation_answer(refunded)


async def healthz(call: Call) -> Answered:
    return 200, schema.Health(status="ok")


async def readyz(call: Call) -> Answered:
    if call.request.app.state.stopping.told:  # so that a balancer sends no more
        return 503, schema.Readiness(status="stopping")
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


async def metrics(call: Call) -> Answered:
    sizes = await usecases.queue_sizes(deps=call.deps)
    exposition = call.request.app.state.metrics.exposition(sizes)
    return 200, Response(exposition, media_type=PROMETHEUS)


async def customer_app(call: Call) -> Answered:
    return 200, Response(web.page("index.html"), media_type=web.HTML)


async def operator_page(call: Call) -> Answered:
    return 200, Response(web.page("ops.html"), media_type=web.HTML)


async def openapi(call: Call) -> Answered:
    return 200, document(call.deps.policy.max_holds_per_user)


@functools.cache
def document(max_holds: int = BookingPolicy().max_holds_per_user) -> dict[str, Any]:
    """`/openapi.json`, made from `ENDPOINTS` the first time it is asked for, with the most
    seats one customer may hold (`CONCERT_MAX_HOLDS_PER_USER`) where a body counts them."""
    made = openapi_document(ENDPOINTS)
    shapes = made["components"]["schemas"]
    hold, pay = shapes["Hold"]["properties"], shapes["Pay"]["properties"]
    for listed in (hold["seat_ids"], pay["reservation_ids"]):
        listed["maxItems"] = max_holds
    hold["quantity"]["maximum"] = max_holds
    return made


EVENT_STREAM = "text/event-stream"
NO_BUFFERING = {"X-Accel-Buffering": "no"}  # a proxy passes each event on at once

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
        "The seat map of a date (or of one ?section=) in layout order",
        list_seats,
        Access.ADMITTED,
        {200: schema.SeatMap},
        query=schema.SectionQuery,
    ),
    Endpoint(
        "POST",
        "/reservations",
        "Hold for CONCERT_HOLD_SECONDS one seat (a Reservation), several seats all or none, "
        "or the best seats side by side (both {reservations})",
        hold,
        Access.ADMITTED,
        {201: (schema.Reservation, schema.Holds)},
        body=schema.Hold,
        conflicts=(404, 409, 429),
        idempotency_key=True,
    ),
    Endpoint(
        "POST",
        "/reservations/{reservation_id}/extension",
        "Extend your hold once by CONCERT_HOLD_EXTENSION_SECONDS",
        extend_hold,
        Access.ADMITTED,
        {200: schema.Reservation},
        conflicts=(409,),
    ),
    Endpoint(
        "POST",
        "/payments",
        "Pay for holds at once: seats sold, balance debited, queue token expired",
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
        "/concerts/{concert_id}/dates/{date_id}/seats/events",
        "The live seat map: a snapshot event, then a seats event of what changed",
        seat_events,
        Access.ADMITTED,
        {200: str},
        media_type=EVENT_STREAM,
        events=schema.SEAT_EVENTS,
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
        "GET",
        "/me",
        "You: account, balance, place in line and holds counting down",
        me,
        Access.CUSTOMER,
        {200: schema.Me},
    ),
    Endpoint(
        "GET",
        "/reservations",
        "Your reservations, newest first, a page at a time",
        list_reservations,
        Access.CUSTOMER,
        {200: schema.Reservations},
        query=schema.ReservationsQuery,
    ),
    Endpoint(
        "GET",
        "/wallet/transactions",
        "Your wallet's charges, payments and refunds, newest first",
        list_transactions,
        Access.CUSTOMER,
        {200: schema.Transactions},
        query=schema.PageQuery,
    ),
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
        "POST",
        "/admin/concerts",
        "Add a concert",
        create_concert,
        Access.ADMIN,
        {201: schema.Concert},
        body=schema.NewConcert,
    ),
    Endpoint(
        "POST",
        "/admin/concerts/{concert_id}/dates",
        "Put a date on sale with its whole seat layout",
        create_date,
        Access.ADMIN,
        {201: schema.CreatedDate},
        body=schema.DateSpec,
    ),
    Endpoint(
        "GET",
        "/admin/concerts/{concert_id}/dates/{date_id}/sales",
        "A date's seats counted at one instant, per section",
        date_sales,
        Access.ADMIN,
        {200: schema.Sales},
    ),
    Endpoint(
        "GET",
        "/admin/concerts/{concert_id}/dates/{date_id}/sales.csv",
        "Every sold seat of a date, as CSV: reservation_id,payment_id,section,row,number,"
        "price,paid_at,email, then a line per seat by reservation",
        sales_csv,
        Access.ADMIN,
        {200: str},
        media_type=CSV,
    ),
    Endpoint(
        "POST",
        "/admin/reservations/{reservation_id}/refund",
        "Refund a paid seat: on sale again, the money back in the wallet",
        refund,
        Access.ADMIN,
        {200: schema.Reservation},
        conflicts=(409,),
        idempotency_key=True,
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
        "/metrics",
        "Prometheus metrics, every worker's together (an admin's token)",
        metrics,
        Access.ADMIN,
        {200: str},
        media_type=PROMETHEUS,
    ),
    Endpoint(
        "GET",
        "/",
        "The customer's web app",
        customer_app,
        Access.ANYONE,
        {200: str},
        media_type=web.HTML,
        uses_stores=False,
    ),
    Endpoint(
        "GET",
        "/ops",
        "The operator's web page",
        operator_page,
        Access.ANYONE,
        {200: str},
        media_type=web.HTML,
        uses_stores=False,
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
