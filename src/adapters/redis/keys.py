"""Every Redis key name the service uses, in one place.

All keys start with a configurable prefix. A script touches only keys passed to it in KEYS,
never a name it builds, and the keys of one script share a Redis Cluster slot: the waiting
line, its tickets, the hold timers and the customers' hold attempts share the hash tag
``{line}`` (a script that checks a ticket and takes timers touches them all), while a login
counter and a seat map's version are each a script's only key. So the line's keys are a fixed
handful: tickets and customers are fields of the line's hashes, not keys of their own. Emails
are hashed: no address is written into a key name.
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
    def tickets(self) -> str:
        """Hash: token → ``user|status``, or ``user|active|expires`` (ms) while active."""
        return f"{self._line}:tickets"

    @property
    def live_tokens(self) -> str:
        """Hash: customer → their live (waiting or active) token."""
        return f"{self._line}:live"

    @property
    def retired(self) -> str:
        """Sorted set: expired tokens scored by when they are forgotten (ms)."""
        return f"{self._line}:retired"

    def hold(self, seat_id: SeatId) -> str:
        """String per seat: its hold timer, ``owner|expires`` (ms)."""
        return f"{self._line}:hold:{seat_id}"

    def hold_attempts(self, user_id: UserId) -> str:
        """Hash per customer: their hold attempts in the open window (beside the line's keys,
        for the script that takes a timer counts them)."""
        return f"{self._line}:attempts:{user_id}"

    def seat_map_version(self, date_id: DateId) -> str:
        """String per concert date: its seat map's current version."""
        return f"{self.prefix}:seatmap:{date_id}"

    def attempts(self, key: str) -> str:
        """Hash per key (an email, a client address; hashed): attempts in the open window."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.prefix}:attempts:{digest}"
