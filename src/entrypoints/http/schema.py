"""Every request and response body of the HTTP contract (`../shared/API.md`), declared once.

The route table (`routes`) names these types; requests are decoded and checked against them,
answers encoded from them, and `/openapi.json` is generated from them. Limits are the core's
constants, so a limit changed there changes here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from concert_domain.accounts import (
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
)
from concert_domain.catalog import (
    PRICE_MAX,
    PRICE_MIN,
    ROW_LABEL_MAX_LENGTH,
    ROWS_MAX,
    SEATS_PER_ROW_MAX,
    SECTION_NAME_MAX_LENGTH,
    SECTIONS_MAX,
    TITLE_MAX_LENGTH,
    VENUE_MAX_LENGTH,
)
from concert_domain.paging import LIMIT_MAX
from concert_domain.wallet import CHARGE_MAX, CHARGE_MIN

# a string that goes into a store: no NUL anywhere (lone surrogates never decode)
NO_NUL = r"^[^\x00]*$"
Id = Annotated[int, Meta(ge=1, description="an opaque identifier")]
Email = Annotated[str, Meta(max_length=EMAIL_MAX_LENGTH, pattern=NO_NUL)]
# what sign-up takes: an address, around which spaces are let go (`accounts.normalize_email`);
# documented here, checked by the core with its own message (a NUL is no address either)
NewEmail = Annotated[
    str,
    Meta(
        max_length=EMAIL_MAX_LENGTH,
        extra_json_schema={"pattern": rf"^\s*{EMAIL_PATTERN[1:-1]}\s*$"},
    ),
]
Password = Annotated[str, Meta(max_length=PASSWORD_MAX_LENGTH, pattern=NO_NUL)]
NewPassword = Annotated[
    str,
    Meta(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH, pattern=NO_NUL),
]
Won = Annotated[int, Meta(ge=0, description="an integer number of won")]
Amount = Annotated[int, Meta(ge=CHARGE_MIN, le=CHARGE_MAX, description="won to add")]
Timestamp = Annotated[datetime, Meta(tz=True, description="RFC 3339, with an offset")]
Price = Annotated[int, Meta(ge=PRICE_MIN, le=PRICE_MAX, description="won a seat")]
ReservationStatus = Literal["held", "paid", "cancelled", "expired", "refunded"]
Role = Literal["customer", "admin"]
Title = Annotated[str, Meta(min_length=1, max_length=TITLE_MAX_LENGTH, pattern=NO_NUL)]
Venue = Annotated[str, Meta(max_length=VENUE_MAX_LENGTH, pattern=NO_NUL)]
SectionName = Annotated[str, Meta(min_length=1, max_length=SECTION_NAME_MAX_LENGTH, pattern=NO_NUL)]
RowLabel = Annotated[str, Meta(min_length=1, max_length=ROW_LABEL_MAX_LENGTH, pattern=NO_NUL)]
UNIQUE = {"uniqueItems": True}
Cursor = Annotated[
    str,
    Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$", description="a page's `next`"),
]


class Body(msgspec.Struct, kw_only=True):
    """A JSON object; fields not named are ignored. A body that takes one of several forms
    names the fields each form requires in ``forms`` (documented as ``oneOf``): it must carry
    every field of exactly one of them, and the fields of the others are then ignored."""

    forms: ClassVar[tuple[tuple[str, ...], ...]] = ()


class Answer(msgspec.Struct, kw_only=True):
    """A JSON object the service answers."""


# -- requests -------------------------------------------------------------------------------


class SignUp(Body):
    email: NewEmail
    password: NewPassword


class LogIn(Body):
    email: Email
    password: Password


class Hold(Body):
    """One seat (``seat_id``); several seats of one date, all or none (``seat_ids``); or the
    best ``quantity`` seats side by side on a date (``date_id``, ``quantity``, and optionally
    ``section``)."""

    forms = (("seat_id",), ("seat_ids",), ("date_id", "quantity"))
    seat_id: int | UnsetType = UNSET
    seat_ids: Annotated[list[int], Meta(min_length=1, extra_json_schema=UNIQUE)] | UnsetType = UNSET
    date_id: int | UnsetType = UNSET
    quantity: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    section: SectionName | UnsetType = UNSET


class Pay(Body):
    """One hold (``reservation_id``) or several paid together (``reservation_ids``)."""

    forms = (("reservation_id",), ("reservation_ids",))
    reservation_id: int | UnsetType = UNSET
    reservation_ids: (
        Annotated[list[int], Meta(min_length=1, extra_json_schema=UNIQUE)] | UnsetType
    ) = UNSET


class Charge(Body):
    amount: Amount


class NewConcert(Body):
    title: Title
    venue: Venue = ""


class RowSpec(Body):
    row: RowLabel
    seats: Annotated[int, Meta(ge=1, le=SEATS_PER_ROW_MAX)]


class SectionSpec(Body):
    name: SectionName
    price: Price
    rows: Annotated[list[RowSpec], Meta(min_length=1, max_length=ROWS_MAX)]


class DateSpec(Body):
    """A date and its seat layout: sections in order of quality, each of rows."""

    starts_at: Timestamp
    sections: Annotated[list[SectionSpec], Meta(min_length=1, max_length=SECTIONS_MAX)]
    sale_opens_at: Timestamp | None = None
    sale_closes_at: Timestamp | None = None


# -- query strings --------------------------------------------------------------------------


class Query(msgspec.Struct, kw_only=True):
    """The parameters of a query string; those not named are ignored."""


class SectionQuery(Query):
    section: SectionName | None = None


class PageQuery(Query):
    limit: Annotated[int, Meta(ge=1, le=LIMIT_MAX)] = 50
    cursor: Cursor | None = None


class ReservationsQuery(PageQuery):
    status: ReservationStatus | None = None


# -- answers --------------------------------------------------------------------------------


class ErrorDetail(Answer):
    code: str
    message: str


class Error(Answer):
    error: ErrorDetail


class Account(Answer):
    user_id: Id
    email: str


class AccessToken(Answer):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class QueueStatus(Answer):
    token: str
    status: Literal["waiting", "active", "expired"]
    position: Annotated[int, Meta(ge=1)] | None
    estimated_wait_seconds: Annotated[int, Meta(ge=0)]


class Concert(Answer):
    concert_id: Id
    title: str
    venue: str


class Concerts(Answer):
    concerts: list[Concert]


class OpenDate(Answer):
    date_id: Id
    date: date
    starts_at: Timestamp
    sale_opens_at: Timestamp
    sale_closes_at: Timestamp
    on_sale: bool
    available_seats: Annotated[int, Meta(ge=1)]


class OpenDates(Answer):
    dates: list[OpenDate]


class Seat(Answer):
    seat_id: Id
    section: str
    row: str
    number: Annotated[int, Meta(ge=1)]
    label: str
    price: Won
    status: Literal["available", "held", "sold"]


class SeatMap(Answer):
    seats: list[Seat]


class SeatChange(Answer):
    seat_id: Id
    status: Literal["available", "held", "sold"]


# the events of the live seat map, by name, and what each one's data is
SEAT_EVENTS: dict[str, object] = {"snapshot": SeatMap, "seats": list[SeatChange]}


class Reservation(Answer):
    reservation_id: Id
    seat_id: Id
    date_id: Id
    concert_id: Id
    section: str
    row: str
    number: Annotated[int, Meta(ge=1)]
    label: str
    price: Won
    status: ReservationStatus
    expires_at: Timestamp


class Holds(Answer):
    reservations: list[Reservation]


class Reservations(Answer):
    reservations: list[Reservation]
    next: str | None


class CountingDown(Reservation):
    """An unexpired hold and the whole seconds it has left."""

    seconds_left: Annotated[int, Meta(ge=0)]


class Me(Answer):
    user_id: Id
    email: str
    role: Role
    balance: Won
    queue: QueueStatus | None
    holds: list[CountingDown]


class Transaction(Answer):
    transaction_id: Id
    kind: Literal["charge", "payment", "refund"]
    amount: int
    balance: Won
    at: Timestamp


class Transactions(Answer):
    transactions: list[Transaction]
    next: str | None


class Balance(Answer):
    balance: Won


class Payment(Answer):
    payment_id: Id
    reservation_id: Id
    reservation_ids: list[Id]
    amount: Won
    balance: Won
    status: Literal["paid"]


class CreatedDate(Answer):
    date_id: Id
    concert_id: Id
    date: date
    starts_at: Timestamp
    sale_opens_at: Timestamp
    sale_closes_at: Timestamp
    seats_total: Annotated[int, Meta(ge=1)]


class SectionSales(Answer):
    name: str
    seats_total: int
    available: int
    held: int
    sold: int
    revenue: Won


class Sales(Answer):
    """Counted at one instant: available + held + sold = seats_total."""

    date_id: Id
    seats_total: int
    available: int
    held: int
    sold: int
    revenue: Won
    sections: list[SectionSales]


class Health(Answer):
    status: Literal["ok"]


class Readiness(Answer):
    """``status`` and, for each part checked, ``ok`` or what is wrong with it."""

    status: Literal["ok", "unavailable", "stopping"]
    database: str | msgspec.UnsetType = msgspec.UNSET
    redis: str | msgspec.UnsetType = msgspec.UNSET
