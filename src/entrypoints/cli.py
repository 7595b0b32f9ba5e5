"""The ``concert`` command: serve, scheduler, migrate, seed-demo, create-admin.

Settings come from the environment (`entrypoints.settings`) and everything is built from them
by `entrypoints.wiring`. A bad setting, or a database or Redis that cannot be reached at start,
stops the command with one line naming the variable and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import uvicorn
from uvicorn.supervisors import Multiprocess

from adapters.sql import MigrationRefused, SqlDatabase
from concert_domain import usecases
from concert_domain.accounts import Account
from concert_domain.errors import EmailTaken, InvalidRequest, StoreUnavailable
from entrypoints.logs import logging_config
from entrypoints.scheduler import run_scheduler
from entrypoints.settings import Settings, SettingsError, load_settings, log_format
from entrypoints.wiring import build_app, running

log = logging.getLogger("concert")
METRICS_PREFIX = "concert-metrics-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="concert", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser("serve", help="run the HTTP service (and the scheduler)")
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve_parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve_parser.add_argument("--workers", type=int, default=1, help="worker processes")
    serve_parser.add_argument(
        "--no-scheduler", action="store_true", help="do not run the scheduler loop in-process"
    )
    commands.add_parser("scheduler", help="run only the scheduler loop")
    commands.add_parser("migrate", help="bring the database schema up to date")
    commands.add_parser("seed-demo", help="add, once, a demo concert with 3 dates of 50 seats")
    admin_parser = commands.add_parser(
        "create-admin",
        help="make an admin account, or make an account admin",
        description="Make EMAIL's account an admin (at its next login), creating it if there "
        "is none with the password on the first line of standard input.",
    )
    admin_parser.add_argument("email", metavar="EMAIL")
    args = parser.parse_args(argv)

    actions: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "serve": serve,
        "scheduler": scheduler,
        "migrate": migrate,
        "seed-demo": seed_demo,
        "create-admin": create_admin,
    }
    try:
        logging.config.dictConfig(logging_config(log_format(os.environ)))
        return actions[args.command](load_settings(), args)
    except SettingsError as e:
        print(f"concert: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise SettingsError("--workers", "must be at least 1")
    if args.workers > 1 and settings.redis_url is None:
        raise SettingsError(
            "CONCERT_REDIS_URL", "--workers above 1 needs Redis: the waiting line must be shared"
        )
    asyncio.run(prepare_stores(settings))
    if args.workers == 1:
        _serve(settings, args)
        return 0
    forget_metrics_of_stopped_servers()
    # the workers add up their metrics through files there (uvicorn ends a stop by raising
    # its signal again, so the directory may outlive this process: the next one removes it)
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    try:
        _serve(attrs.evolve(settings, metrics_dir=Path(metrics_dir)), args)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def forget_metrics_of_stopped_servers() -> None:
    """Remove the metrics directories of `concert serve` processes that are gone."""
    for found in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*"):
        pid = found.name.removeprefix(METRICS_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(found, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    config = uvicorn.Config(
        # each worker builds its app from the same settings, handed over whole
        functools.partial(build_app, settings, scheduler=not args.no_scheduler),
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="info",
        log_config=logging_config(settings.log_format),  # each worker logs as this process
        access_log=False,  # the service writes its own line per request
        proxy_headers=False,  # a client's address is taken as the socket gives it
        server_header=False,  # no banner naming the server software
        # after the grace period of a SIGTERM (`entrypoints.http.stopping`), the requests in
        # flight are given this long
        timeout_graceful_shutdown=settings.shutdown_drain_seconds,
    )
    if args.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()


def scheduler(settings: Settings, args: argparse.Namespace) -> int:
    if settings.redis_url is None:
        log.warning(
            "CONCERT_REDIS_URL is unset: this scheduler releases lapsed holds, but the waiting "
            "line lives inside `concert serve`, whose own scheduler admits it"
        )

    async def loop() -> None:
        await prepare_stores(settings, migrate_sqlite=False)
        async with running(settings, pool_size=2) as services:
            stop = asyncio.Event()
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
            log.info("scheduler ticking every %s s", settings.scheduler_interval_seconds)
            await run_scheduler(services.deps, settings.scheduler_interval_seconds, stop)

    asyncio.run(loop())
    return 0


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> None:
        async with running(settings, pool_size=1) as services:
            await _reachable(services.database.ping)
            await _migrated(services.database)

    asyncio.run(run())
    print("the database schema is up to date")
    return 0


def seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> usecases.DemoCatalog:
        await prepare_stores(settings)
        async with running(settings, pool_size=1) as services:
            return await usecases.seed_demo_catalog(deps=services.deps)

    demo = asyncio.run(run())
    if demo.created:
        days = ", ".join(d.date.isoformat() for d in demo.dates)
        print(f"added concert {demo.concert.concert_id} ({demo.concert.title!r}) on {days}")
    else:
        print(f"the demo concert is already there (concert {demo.concert.concert_id})")
    return 0


def create_admin(settings: Settings, args: argparse.Namespace) -> int:
    password = _first_line_of_stdin()

    async def run() -> tuple[Account, bool]:
        await prepare_stores(settings)
        async with running(settings, pool_size=1) as services:
            return await usecases.create_admin(args.email, password, deps=services.deps)

    try:
        account, created = asyncio.run(run())
    except (InvalidRequest, EmailTaken) as e:
        print(f"concert create-admin: {e.message}", file=sys.stderr)
        return 1
    made = "created as an admin" if created else "is now an admin (from its next login)"
    print(f"account {account.user_id} ({account.email}) {made}")
    return 0


def _first_line_of_stdin() -> str | None:
    """The password: the first line of standard input (asked for when it is a terminal);
    None when there is none."""
    if sys.stdin is None:
        return None
    if sys.stdin.isatty():
        line = getpass.getpass("password (for a new account; empty to only promote): ")
    else:
        line = sys.stdin.readline()
    return line.rstrip("\r\n") or None


async def prepare_stores(settings: Settings, *, migrate_sqlite: bool = True) -> None:
    """Check that the database and Redis answer. The embedded SQLite file is migrated on the
    spot; PostgreSQL must have been migrated by `concert migrate`."""
    async with running(settings, pool_size=1) as services:
        database = services.database
        await _reachable(database.ping)
        if settings.is_sqlite and migrate_sqlite:
            await _migrated(database)
        elif not await database.schema_is_current():
            raise SettingsError(
                "CONCERT_DATABASE_URL", "the schema is not up to date: run `concert migrate`"
            )
        if services.redis is not None:
            await _reachable(services.ping_redis, "CONCERT_REDIS_URL", "Redis")


async def _migrated(database: SqlDatabase) -> None:
    try:
        await database.migrate()
    except MigrationRefused as e:
        raise SettingsError("CONCERT_DATABASE_URL", f"cannot be migrated: {e}") from e


async def _reachable(
    check: Callable[[], Awaitable[None]],
    variable: str = "CONCERT_DATABASE_URL",
    what: str = "the database",
) -> None:
    try:
        await check()
    except StoreUnavailable as e:
        why = "" if "cannot be reached" in e.message else f" ({e.message})"
        raise SettingsError(variable, f"{what} cannot be reached{why}") from e


if __name__ == "__main__":
    sys.exit(main())
