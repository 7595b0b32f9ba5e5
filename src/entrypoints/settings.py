"""Configuration, read once from the environment into a frozen, validated value.

Reading settings only reads and checks: it connects to nothing and writes nothing. A bad value
stops the command with one line naming the variable (`SettingsError`, exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from adapters.redis.cluster import cluster_address, is_cluster_url
from adapters.redis.link import RedisAddress
from adapters.security.tokens import MIN_SECRET_BYTES
from concert_domain import BookingPolicy, QueuePolicy
from entrypoints.http.clients import Proxies
from entrypoints.logs import FORMATS

DEFAULT_DATABASE = "concert.sqlite3"
SECRET_FILE = ".concert-secret"


class SettingsError(Exception):
    """A setting is wrong; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@attrs.frozen
class Settings:
    database_url: str
    redis_url: str | None = None
    # the HMAC key when CONCERT_JWT_SECRET gives it; else `secret_file` keeps it (SQLite only)
    jwt_secret: bytes | None = attrs.field(default=None, repr=False)
    secret_file: Path | None = None
    redis_prefix: str = "concert"
    access_token_seconds: int = 3600
    hold_seconds: int = 300
    hold_extension_seconds: int = 120
    max_holds_per_user: int = 4
    queue_capacity: int = 1000
    queue_active_seconds: int = 600
    scheduler_interval_seconds: float = 1.0
    auth_attempts_per_address: int = 120
    hold_attempts_per_customer: int = 600
    trusted_proxies: str = ""
    log_format: str = "json"
    # on SIGTERM: serve this long with /readyz at 503, then give requests in flight this long
    shutdown_grace_seconds: float = 5.0
    shutdown_drain_seconds: int = 10
    # where the workers of one `concert serve` write their metrics (several workers only)
    metrics_dir: Path | None = None

    @property
    def policy(self) -> BookingPolicy:
        return BookingPolicy(
            hold_seconds=self.hold_seconds,
            hold_extension_seconds=self.hold_extension_seconds,
            max_holds_per_user=self.max_holds_per_user,
            queue=QueuePolicy(self.queue_capacity, self.queue_active_seconds),
            auth_attempts_per_address=self.auth_attempts_per_address,
            hold_attempts_per_customer=self.hold_attempts_per_customer,
        )

    @property
    def proxies(self) -> Proxies:
        return Proxies.parse(self.trusted_proxies)

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    env = os.environ if environ is None else environ
    here = cwd or Path.cwd()
    database_url = _database_url(env, here)
    jwt_secret, secret_file = _jwt_secret(env, database_url, here)
    return Settings(
        database_url=database_url,
        redis_url=_redis_url(env),
        jwt_secret=jwt_secret,
        secret_file=secret_file,
        redis_prefix=_redis_prefix(env),
        access_token_seconds=_positive(env, "CONCERT_ACCESS_TOKEN_SECONDS", 3600),
        hold_seconds=_positive(env, "CONCERT_HOLD_SECONDS", 300),
        hold_extension_seconds=_positive(env, "CONCERT_HOLD_EXTENSION_SECONDS", 120),
        max_holds_per_user=_positive(env, "CONCERT_MAX_HOLDS_PER_USER", 4),
        queue_capacity=_positive(env, "CONCERT_QUEUE_CAPACITY", 1000),
        queue_active_seconds=_positive(env, "CONCERT_QUEUE_ACTIVE_SECONDS", 600),
        scheduler_interval_seconds=_positive_float(env, "CONCERT_SCHEDULER_INTERVAL_SECONDS", 1.0),
        shutdown_grace_seconds=_positive_float(
            env, "CONCERT_SHUTDOWN_GRACE_SECONDS", 5.0, zero=True
        ),
        shutdown_drain_seconds=_positive(env, "CONCERT_SHUTDOWN_DRAIN_SECONDS", 10),
        auth_attempts_per_address=_count(env, "CONCERT_AUTH_ATTEMPTS_PER_ADDRESS", 120),
        hold_attempts_per_customer=_count(env, "CONCERT_HOLD_ATTEMPTS_PER_CUSTOMER", 600),
        trusted_proxies=_trusted_proxies(env),
        log_format=log_format(env),
    )


def _trusted_proxies(env: Mapping[str, str]) -> str:
    listed = env.get("CONCERT_TRUSTED_PROXIES", "")
    try:
        Proxies.parse(listed)
    except ValueError as e:
        raise SettingsError("CONCERT_TRUSTED_PROXIES", str(e)) from None
    return listed


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = env.get("CONCERT_REDIS_URL") or None
    if url is not None:
        try:
            if is_cluster_url(url):
                cluster_address(url)
            else:
                RedisAddress.from_url(url)
        except ValueError as e:
            raise SettingsError("CONCERT_REDIS_URL", str(e)) from None
    return url


def log_format(env: Mapping[str, str]) -> str:
    """``CONCERT_LOG_FORMAT``: ``json`` (the default) or ``text``."""
    chosen = env.get("CONCERT_LOG_FORMAT") or "json"
    if chosen not in FORMATS:
        raise SettingsError("CONCERT_LOG_FORMAT", f"must be one of {', '.join(FORMATS)}")
    return chosen


def _redis_prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("CONCERT_REDIS_PREFIX") or "concert"
    if not (prefix.isascii() and prefix.replace("-", "").replace("_", "").isalnum()):
        raise SettingsError("CONCERT_REDIS_PREFIX", "letters, digits, - and _ only")
    return prefix


def _database_url(env: Mapping[str, str], here: Path) -> str:
    url = env.get("CONCERT_DATABASE_URL") or f"sqlite:///{here / DEFAULT_DATABASE}"
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as e:
        raise SettingsError("CONCERT_DATABASE_URL", f"not a database URL: {url!r}") from e
    if backend not in ("sqlite", "postgresql"):
        raise SettingsError("CONCERT_DATABASE_URL", f"use postgresql or sqlite, not {backend!r}")
    return url


def _jwt_secret(
    env: Mapping[str, str], database_url: str, here: Path
) -> tuple[bytes | None, Path | None]:
    """The secret the environment gives, or the file that keeps one beside the SQLite file."""
    given = env.get("CONCERT_JWT_SECRET")
    if given:
        secret = given.encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise SettingsError("CONCERT_JWT_SECRET", f"must be at least {MIN_SECRET_BYTES} bytes")
        return secret, None
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise SettingsError("CONCERT_JWT_SECRET", "is required with PostgreSQL")
    folder = Path(url.database).parent if url.database else here
    return None, (here / folder / SECRET_FILE).resolve()


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"not a whole number: {raw!r}") from None
    if value <= 0:
        raise SettingsError(name, f"must be positive, not {value}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number, 0 or more (0: no limit)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"not a whole number: {raw!r}") from None
    if value < 0:
        raise SettingsError(name, f"must be 0 (no limit) or more, not {value}")
    return value


def _positive_float(
    env: Mapping[str, str], name: str, default: float, *, zero: bool = False
) -> float:
    """A finite number of seconds above 0 (or from 0, if ``zero``)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"not a number: {raw!r}") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        least = "0 or more" if zero else "a positive number of"
        raise SettingsError(name, f"must be {least} seconds, not {raw}")
    return value
