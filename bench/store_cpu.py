"""Server-side CPU per operation: how much CPU PostgreSQL and Redis spend on each use case, for
planning (docs/scaling.md).

    python bench/store_cpu.py [--customers 20000] [--line 100000] [--phase-seconds 60]

The use cases run in this process (no HTTP) through `build_dependencies`, against a throwaway
PostgreSQL (fsync off) and a throwaway Redis made for the run and removed after it, always:
CPU is read for the whole server, so a server someone else uses (CONCERT_TEST_DATABASE_URL,
CONCERT_TEST_REDIS_URL) would count their work too. Each phase's CPU is divided by the
operations it did:

- PostgreSQL: the postmaster and every process under it, from /proc (background workers too,
  and the children that ended during the phase);
- Redis: `INFO cpu` (user + system);
- this process: the use cases' own CPU without HTTP (SQLAlchemy, psycopg, the Redis client).

First the line alone: ``--line`` customers join one Redis line of capacity 1,000, their
positions are read, and bare PINGs give the floor (64 callers). Then, on ``--customers``
customers and one date of 50,000 seats (50 sections of 20 rows of 50), with 8 callers: each
customer joins (admitted at once), reads their status, holds one seat, charges their wallet and
pays the hold; then section seat maps and whole seat maps are read from the database, past the
per-process cache. Each phase stops at its count or after ``--phase-seconds``, whichever comes
first; a phase works on what the one before it did. The table warns if the holds and payments
read reservations by sequential scans (a plan made while the table was nearly empty), which
makes their PostgreSQL figures grow with the table.

Prints one markdown table with the command, the date, the commit and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import sql_hold

import services
from adapters.clock import ManualClock
from adapters.redis import Keys, RedisLink, RedisQueueStore, connect
from adapters.sql import SqlDatabase
from adapters.sql.engine import postgres_conninfo
from booking import cheap_hasher
from concert_domain import BookingPolicy, QueuePolicy, usecases
from concert_domain.ids import DateId, QueueToken, ReservationId, SeatId, UserId
from entrypoints.wiring import build_dependencies

NOW = sql_hold.NOW
SECTIONS, ROWS, SEATS_PER_ROW = 50, 20, 50
SEATS_PER_SECTION = ROWS * SEATS_PER_ROW
SEATS = SECTIONS * SEATS_PER_SECTION
PRICE = 50_000
LINE_POLICY = QueuePolicy(capacity=1_000, active_seconds=600)
LINE_WORKERS = 64
WORKERS = 8
SECTION_MAPS = 2_000
WHOLE_MAPS = 5
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# /proc/<pid>/stat after the command name: field 4 (ppid) is index 1; utime, stime, cutime
# and cstime (fields 14 to 17) are indexes 11 to 14
PPID, UTIME, STIME, CUTIME, CSTIME = 1, 11, 12, 13, 14


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class PostgresCpu:
    """CPU seconds of a local PostgreSQL: its postmaster and every process under it. A child
    that ended was reaped by its parent, whose cutime and cstime then carry its time."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster

    @classmethod
    def of_backend(cls, backend: int) -> PostgresCpu:
        """The local server whose backend process is ``backend``: its parent."""
        postmaster = int(_stat(backend)[PPID])
        if Path(f"/proc/{postmaster}/comm").read_text().strip() != "postgres":
            raise RuntimeError(f"process {postmaster} is not a local PostgreSQL postmaster")
        return cls(postmaster)

    def seconds(self) -> float:
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    stats[int(entry.name)] = _stat(int(entry.name))
        children: dict[int, list[int]] = {}
        for pid, stat in stats.items():
            children.setdefault(int(stat[PPID]), []).append(pid)
        ticks, todo = 0, [self.postmaster]
        while todo:
            pid = todo.pop()
            found = stats.get(pid)
            if found is not None:
                ticks += sum(int(found[field]) for field in (UTIME, STIME, CUTIME, CSTIME))
            todo.extend(children.get(pid, []))
        return ticks / CLOCK_TICK


async def redis_cpu_seconds(redis: RedisLink) -> float:
    info: str = await redis.call("INFO", "cpu")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


@dataclass(frozen=True)
class Phase:
    """What one phase did and the CPU each side spent on it, idle CPU taken off (None: not
    read)."""

    operation: str
    done: int
    seconds: float
    postgres: float | None
    redis: float | None
    process: float
    load: float  # the 1-minute load average at its end

    def micros(self, cpu: float | None) -> str:
        if cpu is None:
            return ""
        per = max(cpu, 0.0) / self.done * 1e6
        return f"{per:,.1f}" if per < 100 else f"{per:,.0f}"


class Meter:
    """Runs phases bounded in count and time, and reads the servers' CPU around each."""

    def __init__(self, redis: RedisLink, phase_seconds: float) -> None:
        self.redis = redis
        self.phase_seconds = phase_seconds
        self.postgres: PostgresCpu | None = None
        # CPU seconds a second with nothing asked: timers and background writers
        self.idle_postgres = 0.0
        self.idle_redis = 0.0
        self.phases: list[Phase] = []
        self.warnings: list[str] = []

    async def cpu(self) -> tuple[float | None, float]:
        postgres = None if self.postgres is None else self.postgres.seconds()
        return postgres, await redis_cpu_seconds(self.redis)

    async def measure_idle(self, seconds: float = 3.0) -> None:
        """The servers' idle CPU a second, taken off every phase after."""
        postgres, redis = await self.cpu()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        postgres_after, redis_after = await self.cpu()
        self.idle_redis = (redis_after - redis) / elapsed
        if postgres is not None and postgres_after is not None:
            self.idle_postgres = (postgres_after - postgres) / elapsed

    async def run(
        self,
        operation: str,
        count: int,
        workers: int,
        step: Callable[[int], Awaitable[object]],
        *,
        uses_redis: bool = True,
    ) -> int:
        """Call ``step(0)``, ``step(1)``, ... from ``workers`` coroutines until ``count`` calls
        or the time allowed is up; returns how many were made (always the first ones). Redis's
        CPU is left out of a phase that does not use it: what it shows is background work."""
        counter = itertools.count()
        done = 0
        deadline = time.perf_counter() + self.phase_seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline and (n := next(counter)) < count:
                await step(n)
                done += 1

        postgres, redis = await self.cpu()
        process, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        seconds = time.perf_counter() - start
        process = time.process_time() - process
        postgres_after, redis_after = await self.cpu()
        phase = Phase(
            operation,
            done,
            seconds,
            None
            if postgres is None or postgres_after is None
            else postgres_after - postgres - self.idle_postgres * seconds,
            redis_after - redis - self.idle_redis * seconds if uses_redis else None,
            process,
            os.getloadavg()[0],
        )
        self.phases.append(phase)
        print(
            f"{operation}: {done:,} in {seconds:.1f} s, load {phase.load:.1f}",
            file=sys.stderr,
            flush=True,
        )
        return done


async def the_line_alone(meter: Meter, redis: RedisLink, customers: int) -> None:
    """Joins, position reads and bare PINGs on one line, through the store alone."""
    line = RedisQueueStore(redis, Keys(prefix="line-alone"))
    tokens: list[QueueToken] = []

    async def join(n: int) -> None:
        ticket, _ = await line.join(UserId(n + 1), NOW, LINE_POLICY)
        tokens.append(ticket.token)

    await meter.run(f"join a line of {customers:,} (store alone)", customers, LINE_WORKERS, join)
    await meter.run(
        "read a ticket's position (store alone)",
        len(tokens),
        LINE_WORKERS,
        lambda n: line.get(tokens[n], NOW),
    )
    await meter.run("bare PING", customers, LINE_WORKERS, lambda _: redis.ping())


async def seed_stadium(conninfo: str, customers: int) -> tuple[DateId, list[SeatId]]:
    """``customers`` customers with empty wallets (`sql_hold.seed_customers`) and one date on
    sale at NOW: its seats in a shuffled order, so that holds land all over the map."""
    async with await psycopg.AsyncConnection.connect(conninfo) as connection:
        cursor = connection.cursor()
        await sql_hold.seed_customers(cursor, customers)
        await cursor.execute("INSERT INTO concerts (title) VALUES ('stadium') RETURNING concert_id")
        concert = await cursor.fetchone()
        assert concert is not None
        await cursor.execute(
            "INSERT INTO concert_dates "
            "(concert_id, day, starts_at, sale_opens_at, sale_closes_at) "
            "VALUES (%s, DATE '2027-01-01', TIMESTAMPTZ '2027-01-01 20:00Z', %s, "
            "TIMESTAMPTZ '2027-01-01 00:00Z') RETURNING date_id",
            (concert[0], NOW - timedelta(days=30)),
        )
        date = await cursor.fetchone()
        assert date is not None
        await cursor.execute(
            "INSERT INTO seats "
            "(date_id, concert_id, section, section_order, row_label, row_order, number, price) "
            "SELECT %s, %s, 'S' || s, s, 'R' || r, r, n, %s "
            "FROM generate_series(1, %s) s, generate_series(1, %s) r, generate_series(1, %s) n",
            (date[0], concert[0], PRICE, SECTIONS, ROWS, SEATS_PER_ROW),
        )
        await cursor.execute("SELECT seat_id FROM seats WHERE date_id = %s", (date[0],))
        seats = [SeatId(seat) for (seat,) in await cursor.fetchall()]
        await connection.commit()
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
        # the seeded tables only: statistics of an empty reservations table would plan
        # sequential scans of it that grow with every hold until autovacuum analyzes it again
        await connection.execute("VACUUM ANALYZE accounts, wallets, concerts, concert_dates, seats")
    random.Random(0).shuffle(seats)
    return DateId(date[0]), seats


async def rows_scanned(conninfo: str, table: str) -> int:
    """Rows of ``table`` read by sequential scans so far (as last reported by the backends)."""
    async with await psycopg.AsyncConnection.connect(conninfo) as connection:
        found = await (
            await connection.execute(
                "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = %s", (table,)
            )
        ).fetchone()
    return int(found[0]) if found else 0


async def the_use_cases(
    meter: Meter, redis: RedisLink, database: SqlDatabase, conninfo: str, customers: int
) -> None:
    """Each customer joins, reads their status, holds a seat, charges and pays; then the
    date's seat maps are read from the database."""
    date_id, seats = await seed_stadium(conninfo, customers)
    async with await psycopg.AsyncConnection.connect(conninfo) as connection:
        backend = await (await connection.execute("SELECT pg_backend_pid()")).fetchone()
    assert backend is not None
    meter.postgres = PostgresCpu.of_backend(backend[0])
    await meter.measure_idle()
    deps = build_dependencies(
        uow=database.unit_of_work,
        redis=redis,
        redis_keys=Keys(prefix="use-cases"),
        clock=ManualClock(NOW),
        policy=BookingPolicy(queue=QueuePolicy(capacity=10**6, active_seconds=3600)),
        passwords=cheap_hasher(),
        jwt_secret=b"b" * 32,
    )
    tokens: dict[int, str] = {}
    held: dict[int, ReservationId] = {}

    async def join(n: int) -> None:
        tokens[n] = (await usecases.join_queue(UserId(n + 1), deps=deps))[0].token

    async def hold(n: int) -> None:
        reservation = await usecases.hold_seat(UserId(n + 1), tokens[n], seats[n], deps=deps)
        held[n] = reservation.reservation_id

    async def pay(n: int) -> None:
        await usecases.pay(UserId(n + 1), tokens[n], held[n], deps=deps)

    async def section_map(n: int) -> None:
        async with database.unit_of_work(read_only=True) as uow:
            await uow.catalog.seat_map(date_id, NOW, f"S{1 + n % SECTIONS}")

    async def whole_map(_: int) -> None:
        async with database.unit_of_work(read_only=True) as uow:
            await uow.catalog.seat_map(date_id, NOW)

    joined = await meter.run("join (use case, admitted at once)", customers, WORKERS, join)
    await meter.run(
        "queue status (use case)",
        joined,
        WORKERS,
        lambda n: usecases.queue_status(UserId(n + 1), tokens[n], deps=deps),
    )
    scanned = await rows_scanned(conninfo, "reservations")
    holding = await meter.run("hold one seat", min(joined, len(seats)), WORKERS, hold)
    await meter.run(
        "charge the wallet",
        holding,
        WORKERS,
        lambda n: usecases.charge_wallet(UserId(n + 1), 2 * PRICE, deps=deps),
    )
    await meter.run("pay one hold", holding, WORKERS, pay)
    scanned = await rows_scanned(conninfo, "reservations") - scanned
    if scanned > holding:  # a seat map may scan it, a hold or a payment should not
        meter.warnings.append(
            f"holds and payments read {scanned:,} reservations by sequential scans: a plan made"
            " on statistics of a much smaller table, so their PostgreSQL figures are too high"
        )
    await meter.run(
        f"section seat map, {SEATS_PER_SECTION:,} seats, cache bypassed",
        SECTION_MAPS,
        WORKERS,
        section_map,
        uses_redis=False,
    )
    await meter.run(
        f"whole seat map, {SEATS:,} seats, cache bypassed (one caller)",
        WHOLE_MAPS,
        1,
        whole_map,
        uses_redis=False,
    )


async def measure(
    postgres_url: str, redis_url: str, customers: int, line: int, phase_seconds: float
) -> Meter:
    redis = connect(redis_url)
    await redis.ping()
    meter = Meter(redis, phase_seconds)
    database = SqlDatabase(postgres_url, pool_size=WORKERS)
    try:
        await meter.measure_idle()
        await the_line_alone(meter, redis, line)
        await database.migrate()
        await the_use_cases(meter, redis, database, postgres_conninfo(postgres_url), customers)
    finally:
        await database.dispose()
        await redis.aclose()
    return meter


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    server = services.RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


def commit() -> str:
    """The commit measured, marked when its Python under src/ or bench/ has changes not
    committed."""
    here = Path(__file__).parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", ":(glob)src/**/*.py", "bench"], cwd=here
        )
    except (OSError, subprocess.CalledProcessError):
        return "an unknown commit"
    return f"{head} with uncommitted changes" if changed.returncode else head


def server_versions(postgres_url: str, redis_url: str) -> str:
    with psycopg.connect(postgres_conninfo(postgres_url)) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    postgres = row[0].split()[0] if row else "?"

    async def redis_version() -> str:
        redis = connect(redis_url)
        try:
            info: str = await redis.call("INFO", "server")
        finally:
            await redis.aclose()
        return info.split("redis_version:", 1)[1].split()[0]

    return f"PostgreSQL {postgres}, Redis {asyncio.run(redis_version())}"


def report(meter: Meter, command: str, started: datetime, load: float, versions: str) -> None:
    print(
        f"`{command}`, {started:%Y-%m-%d %H:%M} to {datetime.now(UTC):%H:%M} UTC, at {commit()}; "
        f"{os.cpu_count()} cores, 1-minute load average {load:.1f} at the start; "
        f"{versions}, throwaway on loopback (PostgreSQL with fsync off); idle CPU taken off:"
        f" PostgreSQL {meter.idle_postgres * 1e3:.1f} ms/s, Redis {meter.idle_redis * 1e3:.1f}"
        " ms/s.\n"
    )
    for warning in meter.warnings:
        print(f"**Warning**: {warning}.\n")
    print(
        "| operation | done | per s | PostgreSQL µs | Redis µs | this process µs | load |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    for phase in meter.phases:
        print(
            f"| {phase.operation} | {phase.done:,} | {phase.done / phase.seconds:,.0f} "
            f"| {phase.micros(phase.postgres)} | {phase.micros(phase.redis)} "
            f"| {phase.micros(phase.process)} | {phase.load:.1f} |"
        )
    print(
        "\nCPU per operation of each phase: PostgreSQL is its postmaster and every process under"
        " it, Redis its `INFO cpu`, this process the use cases without HTTP. PostgreSQL is read"
        " from the use cases on, and Redis is not read for the seat maps, which go straight to"
        " the database. Load is the 1-minute load average at each phase's end."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--customers", type=int, default=20_000, help="customers through the use cases"
    )
    parser.add_argument("--line", type=int, default=100_000, help="customers in the line alone")
    parser.add_argument(
        "--phase-seconds", type=float, default=60.0, help="the longest a phase may run"
    )
    args = parser.parse_args()
    command = shlex.join(["python", *sys.argv])
    started, load = datetime.now(UTC), os.getloadavg()[0]
    with (
        services.throwaway_postgres() as server,
        services.private_schema(server) as postgres_url,
        throwaway_redis() as redis_url,
    ):
        versions = server_versions(postgres_url, redis_url)
        meter = asyncio.run(
            measure(postgres_url, redis_url, args.customers, args.line, args.phase_seconds)
        )
    report(meter, command, started, load, versions)


if __name__ == "__main__":
    main()
