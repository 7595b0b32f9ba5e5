"""Pages of a customer's records, newest first, and the cursors between them.

A cursor names the last record of a page by when it was made and its id, so the next page
starts strictly before it: records made meanwhile are newer than every page already served and
never shift what a cursor names. Cursors are opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

import attrs

from concert_domain.errors import InvalidRequest

T = TypeVar("T")

LIMIT_DEFAULT = 50
LIMIT_MAX = 100


@attrs.frozen
class Position:
    """Where a page ends: the made-at instant and id of its last record."""

    at: datetime
    id: int

    def cursor(self) -> str:
        text = f"{int(self.at.timestamp() * 1_000_000)}.{self.id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def of_cursor(cls, cursor: str) -> Position:
        """Raises `InvalidRequest` for what no page handed out."""
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            micros, _, record = base64.urlsafe_b64decode(padded).decode().partition(".")
            at = datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
            return cls(at, int(record))
        except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
            raise InvalidRequest("cursor must be the `next` of a page") from None


@attrs.frozen
class Page(Generic[T]):
    items: list[T]
    next: Position | None


def checked_limit(limit: int) -> int:
    if isinstance(limit, bool) or not 1 <= limit <= LIMIT_MAX:
        raise InvalidRequest(f"limit must be 1 to {LIMIT_MAX}")
    return limit


def page_of(found: list[T], limit: int, position_of: Callable[[T], Position]) -> Page[T]:
    """A page from up to ``limit + 1`` records read: the extra one only says there is a next."""
    items = found[:limit]
    return Page(items, position_of(items[-1]) if len(found) > limit else None)
