"""Access tokens remembered once verified.

Verifying a token (decoding it, checking its HMAC) costs more than anything else a queue
status request does. A token that verified is kept with whom it names and until when, so a
customer's later requests skip the check; whether it has expired is still judged on every
request (`Identity.at`). Only genuine tokens are kept: a forged one costs its sender a full
check every time and takes no room.
"""

from __future__ import annotations

from datetime import datetime

from adapters.caching.lru import LeastRecentlyUsed
from concert_domain.accounts import AccessToken, Identity, Role
from concert_domain.ids import UserId
from concert_domain.ports import AccessTokens

LIMIT = 100_000


class VerifiedTokens(AccessTokens):
    def __init__(self, inner: AccessTokens, *, limit: int = LIMIT) -> None:
        self._inner = inner
        self._kept: LeastRecentlyUsed[str, Identity] = LeastRecentlyUsed(limit)

    def issue(self, user_id: UserId, role: Role, now: datetime) -> AccessToken:
        return self._inner.issue(user_id, role, now)

    def verify(self, token: str) -> Identity:
        kept = self._kept.get(token)
        if kept is None:
            kept = self._inner.verify(token)
            self._kept.put(token, kept)
        return kept
