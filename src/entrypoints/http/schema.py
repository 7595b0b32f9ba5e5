"""Every request and response body of the HTTP contract (`../shared/API.md`), declared once.

The route table (`routes`) names these types; requests are decoded and checked against them,
answers encoded from them, and `/openapi.json` is generated from them. Limits are the core's
constants, so a limit changed there changes here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from concert_domain.accounts import (
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
)
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
Timestamp = Annotated[datetime, Meta(description="RFC 3339, with an offset")]


class Body(msgspec.Struct, kw_only=True):
    """A JSON object; fields not named are ignored."""


class Answer(msgspec.Struct, kw_only=True):
    """A JSON object the service answers."""


# -- requests -------------------------------------------------------------------------------


class SignUp(Body):
    email: NewEmail
    password: NewPassword


class LogIn(Body):
    email: Email
    password: Password


class HoldSeat(Body):
    seat_id: int


class Pay(Body):
    reservation_id: int


class Charge(Body):
    amount: Amount


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


class Concerts(Answer):
    concerts: list[Concert]


class OpenDate(Answer):
    date_id: Id
    date: date
    starts_at: Timestamp
    available_seats: Annotated[int, Meta(ge=1)]


class OpenDates(Answer):
    dates: list[OpenDate]


class Seat(Answer):
    seat_id: Id
    number: int
    price: Won
    status: Literal["available", "held", "sold"]


class SeatMap(Answer):
    seats: list[Seat]


class Reservation(Answer):
    reservation_id: Id
    seat_id: Id
    date_id: Id
    concert_id: Id
    number: int
    price: Won
    status: Literal["held", "paid", "cancelled", "expired"]
    expires_at: Timestamp


class Balance(Answer):
    balance: Won


class Payment(Answer):
    payment_id: Id
    reservation_id: Id
    amount: Won
    balance: Won
    status: Literal["paid"]


class Health(Answer):
    status: Literal["ok"]


class Readiness(Answer):
    """``status`` and, for each part checked, ``ok`` or what is wrong with it."""

    status: Literal["ok", "unavailable"]
    database: str | msgspec.UnsetType = msgspec.UNSET
    redis: str | msgspec.UnsetType = msgspec.UNSET
