"""Customer accounts: email and password rules, and what login hands back."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import datetime

import attrs

from concert_domain.errors import InvalidRequest, Unauthorized
from concert_domain.ids import UserId
from concert_domain.reservations import Reservation

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256
EMAIL_MAX_LENGTH = 254

# local@domain.tld: no spaces, one "@", a domain of dot-separated labels ending in letters.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_EMAIL = re.compile(EMAIL_PATTERN)


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively: the lower-cased, trimmed form is the one stored."""
    return email.strip().lower()


def validate_email(email: str) -> str:
    """Return the normalized email, or raise `InvalidRequest` if it is not an address."""
    normalized = normalize_email(email)
    if len(normalized) > EMAIL_MAX_LENGTH or not _EMAIL.fullmatch(normalized):
        raise InvalidRequest("email must be an address such as name@example.com")
    return normalized


def validate_password(password: str) -> str:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidRequest(
            f"password must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters long"
        )
    return password


class Role(enum.StrEnum):
    """Customers book; admins (made by ``concert create-admin``) also run the catalog."""

    CUSTOMER = "customer"
    ADMIN = "admin"


@attrs.frozen
class Account:
    user_id: UserId
    email: str
    password_hash: str = attrs.field(repr=False)
    created_at: datetime
    role: Role = Role.CUSTOMER


@attrs.frozen
class AccountOverview:
    """An account, its balance and its unexpired holds, read at one instant."""

    account: Account
    balance: int
    holds: Sequence[Reservation]


@attrs.frozen
class AccessToken:
    """A bearer token and how many seconds it lives."""

    access_token: str = attrs.field(repr=False)
    expires_in: int
    token_type: str = "Bearer"


@attrs.frozen
class Identity:
    """Whom a genuine access token names, in which role, and until when it does."""

    user_id: UserId
    expires_at: datetime
    role: Role = Role.CUSTOMER

    def at(self, now: datetime) -> UserId:
        """The customer, if the token is still valid at ``now``; raises `Unauthorized`."""
        if now >= self.expires_at:
            raise Unauthorized("the access token has expired; log in again")
        return self.user_id
