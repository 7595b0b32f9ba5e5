"""Identifier types.

Identifiers are opaque to clients; inside the core they are distinct types so that a seat id can
never be passed where a reservation id is expected. Stores hand them out.
"""

from typing import NewType

UserId = NewType("UserId", int)
ConcertId = NewType("ConcertId", int)
DateId = NewType("DateId", int)
SeatId = NewType("SeatId", int)
ReservationId = NewType("ReservationId", int)
PaymentId = NewType("PaymentId", int)
QueueToken = NewType("QueueToken", str)
