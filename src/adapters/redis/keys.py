"""Every Redis key name the service uses, in one place.

All keys start with a configurable prefix. The waiting line's keys and the hold timers share
one hash tag, so that a script that checks a ticket and takes a timer touches one Redis
Cluster slot. Emails are hashed: no address is written into a key name.
"""

from __future__ import annotations

import hashlib

import attrs

from concert_domain.ids import DateId, SeatId, UserId


@attrs.frozen
class Keys:
    prefix: str = "concert"

    @property
    def _line(self) -> str:
        return f"{self.prefix}:{{line}}"

    @property
    def waiting(self) -> str:
        """Sorted set: waiting tokens scored by join sequence."""
        return f"{self._line}:waiting"

    @property
    def active(self) -> str:
        """Sorted set: active tokens scored by their expiry (ms since the epoch)."""
        return f"{self._line}:active"

    @property
    def admitted(self) -> str:
        """Sorted set: recently admitted tokens scored by admission time, for the rate."""
        return f"{self._line}:admitted"

    @property
    def sequence(self) -> str:
        return f"{self._line}:sequence"

    @property
    def ticket_prefix(self) -> str:
        """Hash per token: user, seq, status, expires (ms)."""
        return f"{self._line}:ticket:"

    def ticket(self, token: str) -> str:
        return self.ticket_prefix + token

    @property
    def user_prefix(self) -> str:
        """String per customer: their live token."""
        return f"{self._line}:user:"

    def user(self, user_id: UserId) -> str:
        return f"{self.user_prefix}{user_id}"

    def hold(self, seat_id: SeatId) -> str:
        """String per seat: its hold timer, ``owner|expires`` (ms)."""
        return f"{self._line}:hold:{seat_id}"

    def seat_map_version(self, date_id: DateId) -> str:
        """String per concert date: its seat map's current version."""
        return f"{self.prefix}:seatmap:{date_id}"

    def hold_attempts(self, user_id: UserId) -> str:
        """Hash per customer: their hold attempts in the open window (beside the line's keys,
        for the script that takes a timer counts them)."""
        return f"{self._line}:attempts:{user_id}"

    def attempts(self, key: str) -> str:
        """Hash per key (an email, a client address; hashed): attempts in the open window."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.prefix}:attempts:{digest}"
