"""The composition root: the one place that chooses adapters and plugs them into the ports.

Everything is built from one `Settings` value (`build_services`), or on in-memory adapters for
the library and the tests (`build_memory_dependencies`), by the same `build_dependencies`.
Nothing connects at import: every builder here is called by a command, a lifespan or a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import attrs
from redis import exceptions as redis_errors
from starlette.applications import Starlette

from adapters.caching import (
    CatalogCache,
    KnownAccounts,
    SeatMapReadModel,
    SeatMapVersions,
    VerifiedTokens,
    seatmaps,
)
from adapters.clock import SystemClock
from adapters.memory import (
    InMemoryAttemptLimiter,
    InMemoryDatabase,
    InMemoryHoldTimers,
    InMemoryQueueStore,
    InMemorySeatMapVersions,
)
from adapters.redis import (
    Keys,
    RedisAttemptLimiter,
    RedisHoldTimers,
    RedisLink,
    RedisQueueStore,
    RedisSeatMapVersions,
    connect,
)
from adapters.security import Argon2PasswordHasher, JwtAccessTokens
from adapters.security.tokens import MIN_SECRET_BYTES
from adapters.sql import SqlDatabase
from concert_domain import BookingPolicy, Dependencies
from concert_domain.errors import StoreUnavailable
from concert_domain.ports import (
    AttemptLimiter,
    Clock,
    HoldTimers,
    PasswordHasher,
    QueueStore,
    UnitOfWorkFactory,
)
from entrypoints.http.app import create_app
from entrypoints.http.metrics import Metrics, use_directory
from entrypoints.http.stopping import stopping_gracefully
from entrypoints.scheduler import run_scheduler
from entrypoints.settings import Settings, SettingsError

log = logging.getLogger("concert")

Check = Callable[[], Awaitable[None]]


def build_dependencies(
    *,
    uow: UnitOfWorkFactory,
    redis: RedisLink | None = None,
    redis_keys: Keys | None = None,
    clock: Clock | None = None,
    policy: BookingPolicy | None = None,
    passwords: PasswordHasher | None = None,
    jwt_secret: bytes | None = None,
    access_token_seconds: int = 3600,
    seat_map_max_age: timedelta = seatmaps.MAX_AGE,
) -> Dependencies:
    """Every port over the database's units of work ``uow``: Redis, when given, for the line,
    hold timers, attempt counters and seat-map versions (shared by every process), else process
    memory (one process only). Seats, dates, seat maps, verified tokens and the accounts seen
    to exist are kept by the process (`adapters.caching`); a kept seat map is served at most
    ``seat_map_max_age`` should a change of version be lost."""
    queue: QueueStore
    timers: HoldTimers
    limiter: AttemptLimiter
    versions: SeatMapVersions
    if redis is None:
        line = InMemoryQueueStore()
        queue, timers = line, InMemoryHoldTimers(line)
        limiter, versions = InMemoryAttemptLimiter(), InMemorySeatMapVersions()
    else:
        queue = RedisQueueStore(redis, redis_keys)
        timers = RedisHoldTimers(redis, redis_keys)
        limiter = RedisAttemptLimiter(redis, redis_keys)
        versions = RedisSeatMapVersions(redis, redis_keys)
    tokens = JwtAccessTokens(jwt_secret or secrets.token_bytes(32), access_token_seconds)
    return Dependencies(
        uow=SeatMapReadModel(KnownAccounts(CatalogCache(uow)), versions, max_age=seat_map_max_age),
        clock=clock or SystemClock(),
        passwords=passwords or Argon2PasswordHasher(),
        tokens=VerifiedTokens(tokens),
        queue=queue,
        timers=timers,
        attempts=limiter,
        policy=policy or BookingPolicy(),
    )


def build_memory_dependencies(
    *,
    clock: Clock | None = None,
    policy: BookingPolicy | None = None,
    passwords: PasswordHasher | None = None,
    jwt_secret: bytes | None = None,
    access_token_seconds: int = 3600,
    database: InMemoryDatabase | None = None,
    seat_map_max_age: timedelta = seatmaps.MAX_AGE,
) -> Dependencies:
    """Every port on in-memory adapters: no servers, one process, nothing kept on exit."""
    return build_dependencies(
        uow=(database or InMemoryDatabase()).unit_of_work,
        clock=clock,
        policy=policy,
        passwords=passwords,
        jwt_secret=jwt_secret,
        access_token_seconds=access_token_seconds,
        seat_map_max_age=seat_map_max_age,
    )


@attrs.frozen
class Services:
    """What a process runs on: the ports, the checks `/readyz` makes, and how to let go."""

    deps: Dependencies
    database: SqlDatabase
    redis: RedisLink | None

    @property
    def readiness(self) -> dict[str, Check]:
        checks: dict[str, Check] = {"database": self.database.ping}
        if self.redis is not None:
            checks["redis"] = self.ping_redis
        return checks

    async def ping_redis(self) -> None:
        assert self.redis is not None
        await ping(self.redis)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        await self.database.dispose()


def build_services(settings: Settings, *, pool_size: int = 8) -> Services:
    """The database, Redis if configured, and every port on them, for one process."""
    try:
        database = SqlDatabase(settings.database_url, pool_size=pool_size)
    except OSError as e:  # the SQLite file, made on the spot
        raise SettingsError(
            "CONCERT_DATABASE_URL", f"the database file cannot be made: {e.strerror} ({e.filename})"
        ) from e
    redis = connect(settings.redis_url) if settings.redis_url else None
    deps = build_dependencies(
        uow=database.unit_of_work,
        redis=redis,
        redis_keys=Keys(settings.redis_prefix),
        policy=settings.policy,
        jwt_secret=jwt_secret(settings),
        access_token_seconds=settings.access_token_seconds,
    )
    return Services(deps, database, redis)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, pool_size: int = 8) -> AsyncIterator[Services]:
    services = build_services(settings, pool_size=pool_size)
    try:
        yield services
    finally:
        await services.close()


OBSERVE_SECONDS = 1.0


def build_app(settings: Settings, *, scheduler: bool = True) -> Starlette:
    """The service as ``concert serve`` runs it in each worker: its lifespan builds the
    services from ``settings`` and, if asked, runs the scheduler loop beside the requests."""

    if settings.metrics_dir is not None:  # several workers: metrics go through files
        use_directory(settings.metrics_dir)
    metrics = Metrics(settings.metrics_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(settings) as services:
            app.state.deps = services.deps
            app.state.readiness = services.readiness
            stopping = stopping_gracefully(
                app.state.stopping,
                settings.shutdown_grace_seconds,
                settings.shutdown_drain_seconds,
                app.state.seat_feeds.end_all,
            )
            async with (
                _scheduling(services.deps, settings, metrics, on=scheduler),
                _observing(services, metrics),
            ):
                with stopping:
                    settle_garbage_collector()
                    yield

    return create_app(lifespan=lifespan, proxies=settings.proxies, metrics=metrics)


@contextlib.asynccontextmanager
async def _scheduling(
    deps: Dependencies, settings: Settings, metrics: Metrics, *, on: bool
) -> AsyncIterator[None]:
    if not on:
        yield
        return
    stop = asyncio.Event()
    ticking = asyncio.create_task(
        run_scheduler(deps, settings.scheduler_interval_seconds, stop, metrics.count_tick)
    )
    try:
        yield
    finally:
        stop.set()
        await ticking


@contextlib.asynccontextmanager
async def _observing(services: Services, metrics: Metrics) -> AsyncIterator[None]:
    """The stores' pool and link in the metrics, every `OBSERVE_SECONDS`, while serving."""

    async def observe() -> None:
        while True:
            opened = 0 if services.redis is None else services.redis.connections_opened
            metrics.observe_stores(services.database.pool_stats(), opened)
            await asyncio.sleep(OBSERVE_SECONDS)

    task = asyncio.create_task(observe())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def settle_garbage_collector() -> None:
    """Move everything built at start-up out of the collector's sight (`gc.freeze`): a full
    collection then walks only what requests have made since, not every module, table and
    kept seat (docs/benchmarks.md has what it did to the tail latency)."""
    gc.collect()
    gc.freeze()


async def ping(redis: RedisLink) -> None:
    """Raise `StoreUnavailable` unless Redis answers, and says yes (a server that wants a
    password, or refuses a client in protected mode, answers with an error)."""
    try:
        await redis.ping()
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as e:
        raise StoreUnavailable("redis does not answer") from e
    except redis_errors.ResponseError as e:
        raise StoreUnavailable(f"redis refuses this client: {e}") from e


def jwt_secret(settings: Settings) -> bytes:
    """The key for access tokens: the one the settings give, or the one kept in
    ``settings.secret_file``, made there (readable by its owner only) the first time."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    assert settings.secret_file is not None, "settings give a secret or a file to keep one"
    path = settings.secret_file
    if not path.exists():
        _write_new_secret(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SettingsError(
            "CONCERT_JWT_SECRET", f"{path} may be read by others (mode {mode:o}): chmod 600 it"
        )
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise SettingsError(
            "CONCERT_JWT_SECRET", f"{path} holds fewer than {MIN_SECRET_BYTES} bytes"
        )
    return secret


def _write_new_secret(path: Path) -> None:
    """Write a random secret to ``path`` whole or not at all, mode 0600: it appears under its
    name only once written, and a process that loses the race keeps the winner's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}.new")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            return
        log.warning("CONCERT_JWT_SECRET is unset: made a random one and kept it in %s", path)
    finally:
        draft.unlink(missing_ok=True)
