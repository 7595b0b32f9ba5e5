"""The link to Redis, and the translation of its errors into the core's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from redis import exceptions

from adapters.redis.cluster import RedisClusterLink, is_cluster_url
from adapters.redis.link import RedisLink
from concert_domain.errors import StoreUnavailable


def connect(url: str) -> RedisLink:
    """The process's link to Redis at ``url``; nothing is sent until the first command. It
    connects again by itself after Redis restarts; a command waits at most two seconds. For
    ``redis+cluster://host:port`` (or ``rediss+cluster://``), a link to the Redis Cluster that
    node belongs to (`RedisClusterLink`)."""
    if is_cluster_url(url):
        return RedisClusterLink.from_url(url, timeout=2.0)
    return RedisLink.from_url(url, timeout=2.0)


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
