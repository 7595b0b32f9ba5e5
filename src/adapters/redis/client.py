"""The Redis client and the translation of its errors into the core's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from redis import exceptions
from redis.asyncio import Redis

from concert_domain.errors import StoreUnavailable


def connect(url: str) -> Redis:
    """A client for ``url``; nothing is sent until the first command. It reconnects by itself
    after Redis restarts."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=10,
        retry_on_timeout=False,
    )


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise `StoreUnavailable` for a Redis that cannot be reached; script errors are bugs and
    pass through."""
    try:
        yield
    except (exceptions.ConnectionError, exceptions.TimeoutError) as e:
        raise StoreUnavailable("redis cannot be reached") from e


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)
