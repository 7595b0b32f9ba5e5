"""Domain errors: one base class, one subclass for every error code of the HTTP contract.

Each error carries its stable snake_case ``code`` and a message meant for people. The HTTP room
keeps the one table from error class to status; nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import ClassVar


class ConcertError(Exception):
    """Base of every error the core raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidRequest(ConcertError):
    """Input breaks a rule: a bad email, a short password, an amount out of range."""

    code = "invalid_request"


class EmailTaken(ConcertError):
    code = "email_taken"


class InvalidCredentials(ConcertError):
    code = "invalid_credentials"


class RateLimited(ConcertError):
    code = "rate_limited"


class Unauthorized(ConcertError):
    """A missing, malformed, expired or tampered access token."""

    code = "unauthorized"


class NotAdmitted(ConcertError):
    """The caller is not admitted by the waiting line (yet): an answer about the caller's place
    in line, not about what they asked for, so an idempotency key does not keep it."""


class QueueTokenRequired(NotAdmitted):
    code = "queue_token_required"


class QueueTokenInvalid(NotAdmitted):
    """Unknown, expired, or another customer's queue token."""

    code = "queue_token_invalid"


class QueueTokenNotActive(NotAdmitted):
    code = "queue_token_not_active"


class Forbidden(ConcertError):
    """The caller is who they say, but may not do this (a customer on an operator's path)."""

    code = "forbidden"


class NotFound(ConcertError):
    """No such thing, or it belongs to someone else: the two are never told apart."""

    code = "not_found"


class SeatUnavailable(ConcertError):
    code = "seat_unavailable"

    @classmethod
    def taken(cls, number: int) -> SeatUnavailable:
        return cls(f"seat {number} is held or sold")

    @classmethod
    def taken_seats(cls, labels: list[str]) -> SeatUnavailable:
        named = ", ".join(labels)
        return cls(
            f"seat {named} is held or sold"
            if len(labels) == 1
            else f"seats {named} are held or sold"
        )


class SeatsNotTogether(ConcertError):
    """Best available found no row with that many available seats side by side."""

    code = "seats_not_together"


class ExtensionLimitReached(ConcertError):
    """A hold is extended at most once."""

    code = "extension_limit_reached"


class HoldLimitReached(ConcertError):
    code = "hold_limit_reached"

    @classmethod
    def at(cls, limit: int) -> HoldLimitReached:
        return cls(f"you already hold {limit} seats, the most allowed; pay or cancel one first")


class SaleNotOpen(ConcertError):
    code = "sale_not_open"


class SaleClosed(ConcertError):
    code = "sale_closed"


class ReservationNotPaid(ConcertError):
    """A refund asked of a reservation that is not paid (held, cancelled, or refunded)."""

    code = "reservation_not_paid"


class ReservationNotHeld(ConcertError):
    """The reservation is already paid, cancelled or expired."""

    code = "reservation_not_held"


class HoldExpired(ConcertError):
    code = "hold_expired"


class InsufficientBalance(ConcertError):
    code = "insufficient_balance"

    @classmethod
    def for_reservation(cls, reservation_id: int) -> InsufficientBalance:
        return cls(
            f"the balance does not cover reservation {reservation_id}; "
            "top up the wallet and pay again"
        )


class IdempotencyKeyReused(ConcertError):
    code = "idempotency_key_reused"


class IdempotencyKeyInUse(ConcertError):
    code = "idempotency_key_in_use"


class StoreUnavailable(ConcertError):
    """A store (database, Redis) could not be reached or failed; the request may be retried."""

    code = "unavailable"


class TransactionConflict(StoreUnavailable):
    """The store gave up a transaction because of a concurrent one (a serialization failure,
    a deadlock, a busy SQLite file). Safe to retry as a whole; use cases retry a few times."""

    code = "conflict"


class TransactionClosed(RuntimeError):
    """A unit of work was asked to write after it committed: a bug in the caller, never an
    answer to a client."""


class TransactionAborted(RuntimeError):
    """A unit of work was asked to commit after one of its changes failed: the store has
    rolled it back. A bug in the caller (it went on after an error), never an answer."""


def _all_subclasses(cls: type[ConcertError]) -> list[type[ConcertError]]:
    found: list[type[ConcertError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[ConcertError]] = {
    cls.code: cls for cls in _all_subclasses(ConcertError)
}


def error_from_code(code: str, message: str) -> ConcertError:
    """Rebuild an error from its code, as an idempotency record replays a stored answer."""
    return ERRORS_BY_CODE.get(code, ConcertError)(message)
