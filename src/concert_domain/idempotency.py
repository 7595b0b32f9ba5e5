"""Idempotency keys: a retried request has at most one effect and gets the first answer again.

A key is scoped to its customer. Its record is claimed before the work starts (``pending``), and
completed with the answer in the same transaction as the work (``done``). A retry with the same
key and the same request replays the answer; with a different request it is refused; while the
first is still running it is told so. A pending claim whose request died is taken over after
``PENDING_LEASE``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from concert_domain.errors import (
    ConcertError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidRequest,
)
from concert_domain.ids import UserId

# long past any request's own time (a store round trip gives up after 2 s, a stopping server
# lets go of its requests after CONCERT_SHUTDOWN_DRAIN_SECONDS): a retry past it takes the claim
# over, and should the first request still be running, it can no longer keep an answer, so its
# change rolls back (`ports.IdempotencyRepository.complete`)
PENDING_LEASE = timedelta(seconds=10)
RETENTION = timedelta(hours=24)

# printable ASCII, not starting or ending with a space (HTTP drops those: " a" arrives as "a")
KEY_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$"
_KEY = re.compile(KEY_PATTERN)

JsonScalar = int | str | None


def kept_integer(body: Mapping[str, JsonScalar], name: str) -> int:
    """An integer of a kept answer."""
    value = body[name]
    if not isinstance(value, int):
        raise TypeError(f"a kept answer has a non-integer {name}: {value!r}")
    return value


def validate_idempotency_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters, not starting or "
            "ending with a space"
        )
    return key


def fingerprint(operation: str, **request: JsonScalar) -> str:
    """A stable digest of one request: the operation and its parameters."""
    canonical = json.dumps([operation, request], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


@attrs.frozen
class StoredOutcome:
    """The first answer to a request: a body of plain values, or an error code and message."""

    body: Mapping[str, JsonScalar] | None = None
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def of_error(cls, error: ConcertError) -> StoredOutcome:
        return cls(error_code=error.code, error_message=error.message)


@attrs.frozen
class IdempotencyRecord:
    user_id: UserId
    key: str
    fingerprint: str
    state: IdempotencyState
    created_at: datetime
    outcome: StoredOutcome | None = None

    def abandoned(self, now: datetime, lease: timedelta = PENDING_LEASE) -> bool:
        """Whether this is a claim whose request has outlived ``lease``: it died, and a retry
        takes the key over."""
        return self.state is IdempotencyState.PENDING and self.created_at + lease <= now

    def replay(self, request_fingerprint: str) -> StoredOutcome:
        """The stored answer for a retry, or the error that refuses it."""
        if self.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request"
            )
        if self.state is IdempotencyState.PENDING or self.outcome is None:
            raise IdempotencyKeyInUse(
                "the first request with this Idempotency-Key is still running"
            )
        return self.outcome
