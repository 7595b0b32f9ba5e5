"""The on-sale rush, measured against the framework's own ceiling: `nox -s bench`.

    python bench/run.py [--seconds 10] [--connections 64] [--only embedded|postgresql+redis]
                        [--scenarios abcdefghi] [--profile DIR]

Starts throwaway PostgreSQL and Redis servers (loopback only), then for each configuration
(PostgreSQL + Redis behind `concert serve --workers 2`, and the embedded default with one
worker) measures the reference endpoints and nine scenarios (a) to (i) with the same uvicorn
settings and prints one markdown table. Every run is bounded in time and count and stops by
itself. ``--scenarios`` runs only the scenarios whose letters it lists (the references are
always measured, before and after): ``--scenarios h`` is the best-available rush alone.

The service is served from the installed package, or from ``PYTHONPATH`` when it is set
(``PYTHONPATH=/tmp/old/src`` measures an older checkout with this harness); each configuration
says on stderr which, and whether that code answers ``GET /metrics``. The service's output (a
log line a request) goes to a file in its working directory (`services.concert_serve`), never
to a pipe; the directory is removed at the end of each configuration, kept if it stops on an
error.

Besides throughput and latency, each single-kind run reports CPU time per request, over the
requests answered: the server's (its processes' user + system time, from /proc), steadier than
throughput on a machine whose cores the driver and the databases share; and the whole
machine's (every process: service, PostgreSQL, Redis and the driver, from /proc/stat), which is
what bounds throughput when everything shares two cores. ``--profile DIR``
records each run of the service with py-spy into ``DIR`` (collapsed stacks, as flame graph
tools read them); `bench/hotspots.py` summarizes one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import jwt
import psycopg
import uvloop
from sqlalchemy.engine import make_url

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import reference_app  # noqa: E402

import services  # noqa: E402

SECRET = secrets.token_urlsafe(32)
BALANCE = 1_000_000
BEST_CUSTOMERS = 800  # (h)'s customers, one best-available request each
# (i): LISTENERS open live seat maps of a demo-like date during (b)'s rush on it, against the
# same rush without them, LIVE_ROUNDS times each (alternating which goes first), after one
# rush to warm up; the 50 who pay in a rush are replaced by others for the next
LISTENERS = 1_000
LIVE_ROUNDS = 5  # a rush is short: about 200 hold requests, most of them in 0.1 s
LIVE_RUSHES = 2 * LIVE_ROUNDS + 1
LIVE_RUSH_CUSTOMERS = 1_000
LIVE_SEATS = 50
LIVE_TIMED_EVERY = 10  # every tenth listener's delivery delays are timed: a sample of 100
LIVE_SETTLE_SECONDS = 5.0  # the longest the listeners are given to show the rush's end
LIVE_TAIL_SECONDS = 0.5  # the server's CPU is counted this long after each rush (both kinds)
# before each rush, the server's CPU over 2 s in which one seat is held, then let go: two
# changes, each reaching every listener
LIVE_CHANGE_SECONDS = (0.25, 0.75, 1.0)  # before the hold, before letting go, after
GROUPS = {  # customers admitted before the scenarios start
    "reads": range(1, 65),
    "rush": range(101, 1101),
    "mixed": range(1101, 1165),
    "pay": range(20_001, 50_001),  # one hold each: a payment expires its payer's queue token
    "best": range(12_001, 12_001 + BEST_CUSTOMERS),
    "listen": range(13_001, 13_001 + LISTENERS),  # (i)'s open live seat maps
    # (i)'s rushers, 1,000 a rush; a payment expires its payer's queue token
    "live rush": range(14_001, 14_001 + LIVE_RUSH_CUSTOMERS + LIVE_SEATS * LIVE_RUSHES),
}
# which groups each scenario needs admitted; (c)'s line waits behind all of them
SCENARIO_GROUPS = {
    "a": ("reads",),
    "b": ("rush",),
    "c": tuple(GROUPS),
    "d": ("mixed",),
    "e": ("pay",),
    "f": (),
    "g": ("reads",),
    "h": ("best",),
    "i": ("listen", "live rush"),
}
# which reference each scenario's ratios are to
SCENARIO_REFERENCES = {
    "a": ("bare",),
    "b": ("psycopg",),
    "c": ("redis",),
    "d": ("bare",),
    "e": ("psycopg",),
    "f": (),
    "g": ("bare",),
    "h": ("psycopg",),
    "i": (),  # its ratios are to the same rush without streams, in the same run
}
SCENARIOS = "".join(SCENARIO_GROUPS)
REFERENCES = ("bare", "redis", "psycopg")
LINE = range(2001, 12001)  # customers who join the line during scenario (c)
CUSTOMERS = 50_000
OPERATOR = CUSTOMERS + 1  # an admin account, for scenario (f)
BIG_SECTIONS, BIG_ROWS, BIG_SEATS_A_ROW = 40, 10, 50  # 20,000 seats, 500 a section
BIG_DATES = 3
# (h): a date of 8 sections of 10 rows of 25 seats, for BEST_CUSTOMERS customers asking for 2,
# 3 or 4 seats side by side each (3 on average): 2,400 seats asked for, enough to fill it
BEST_SECTIONS, BEST_ROWS, BEST_SEATS_A_ROW = 8, 10, 25  # 2,000 seats
BEST_RUN_SECONDS = 60.0  # at least: the row is bounded by its count, and the date should fill
BEST_QUANTITIES = (2, 3, 4)
PAY_SEATS = len(GROUPS["pay"])
ADMITTED = sum(len(group) for group in GROUPS.values())
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@attrs.frozen
class Row:
    config: str
    scenario: str
    tally: loadgen.Tally
    reference: str | None = None
    reference_rate: float = 0.0
    target: float | None = None
    check: str = ""
    failed: bool = False  # a 5xx, a transport error or a wrong answer: the run exits non-zero
    server_cpu: float | None = None  # seconds of the server's CPU over the run
    machine_cpu: float | None = None  # seconds of the whole machine's CPU over the run

    def markdown(self) -> str:
        ratio = self.tally.throughput / self.reference_rate if self.reference_rate else None
        verdict = ""
        if ratio is not None and self.target is not None:
            verdict = "met" if ratio >= self.target and self.tally.p99 < 50 else "short"
        errors = sum(
            n for label, n in self.tally.statuses.items() if label.startswith(("5", "transport"))
        )
        answered = len(self.tally.latencies)
        cpu = machine = ""
        if self.server_cpu is not None and self.machine_cpu is not None and answered:
            cpu = f"{self.server_cpu / answered * 1e6:,.0f}"
            machine = f"{self.machine_cpu / answered * 1e6:,.0f}"
        return (
            f"| {self.config} | {self.scenario} | {self.tally.throughput:,.0f} | "
            f"{self.tally.p50:.1f} | {self.tally.p99:.1f} | {errors} | {cpu} | {machine} | "
            + (
                f"{ratio:.{2 if ratio >= 0.1 else 3}f} of {self.reference}"
                if ratio is not None
                else ""
            )
            + f" | {'' if self.target is None else f'≥ {self.target}'} {verdict} | {self.check} |"
        )


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine, every core, from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal, *_ = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants, read from /proc."""
    total, pending = 0.0, [pid]
    while pending:
        found = pending.pop()
        try:
            stat = Path(f"/proc/{found}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{found}/task/{found}/children").read_text().split()
        except FileNotFoundError:
            continue  # gone since its parent listed it
        total += (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
        pending.extend(int(child) for child in children)
    return total


@attrs.define
class Watch:
    """Watches a server's processes over runs: their CPU time, and a py-spy profile of each
    run when ``profile_dir`` is set."""

    pid: int
    label: str
    profile_dir: Path | None = None
    cpu: float = 0.0
    machine: float = 0.0

    @contextlib.contextmanager
    def run(self, name: str) -> Iterator[Watch]:
        spy = None
        if self.profile_dir is not None:
            slug = re.sub(r"[^0-9a-zA-Z]+", "-", f"{self.label} {name}").strip("-")
            spy = subprocess.Popen(
                [
                    *("py-spy", "record", "--pid", str(self.pid), "--subprocesses"),
                    *("--rate", "250", "--format", "raw", "--nonblocking"),
                    *("--output", str(self.profile_dir / f"{slug}.txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)  # let it attach to every worker
        started, machine_started = cpu_seconds(self.pid), machine_cpu_seconds()
        try:
            yield self
        finally:
            self.cpu = cpu_seconds(self.pid) - started
            self.machine = machine_cpu_seconds() - machine_started
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait(timeout=60)


@functools.cache
def token_for(user: int) -> str:
    """One access token per customer for the whole run (an hour long), minted once: signing a
    JWT per request would spend the driver's CPU, which shares the machine with the server."""
    now = int(time.time())
    role = "admin" if user == OPERATOR else "customer"
    claims = {"sub": str(user), "role": role, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, SECRET, "HS256")


def headers(user: int, queue: str | None = None) -> dict[str, str]:
    found = {"Authorization": f"Bearer {token_for(user)}"}
    if queue:
        found["X-Queue-Token"] = queue
    return found


SEED_SQL = [
    "INSERT INTO accounts (user_id, email, password_hash, created_at) "
    "SELECT n, 'bench' || n || '@example.com', 'unusable', {now} FROM {series}",
    f"INSERT INTO wallets (user_id, balance) SELECT n, {BALANCE} FROM {{series}}",
    "INSERT INTO accounts (user_id, email, password_hash, created_at, role) "
    f"VALUES ({OPERATOR}, 'operator@example.com', 'unusable', {{now}}, 'admin')",
    "INSERT INTO ledger (user_id, kind, amount, balance, created_at) "
    f"SELECT n, 'charge', {BALANCE}, {BALANCE}, {{now}} FROM {{series}}",
    "INSERT INTO concert_dates (concert_id, day, starts_at, sale_opens_at, sale_closes_at) "
    "VALUES (1, '2027-06-01', {later}, {now}, {later})",
    "INSERT INTO seats (date_id, concert_id, section, section_order, row_label, row_order, "
    "number, price) SELECT (SELECT max(date_id) FROM concert_dates), 1, 'Pay', 0, 'P', 0, n, "
    "50000 FROM {seats}",
]


def seed_postgres(url: str) -> None:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for sql in SEED_SQL:
            connection.execute(
                sql.format(
                    now="now()",
                    later="TIMESTAMPTZ '2027-06-01 19:00+09'",
                    series=f"generate_series(1, {CUSTOMERS}) n",
                    seats=f"generate_series(1, {PAY_SEATS}) n",
                )
            )
        connection.execute("SELECT setval('accounts_user_id_seq', %s)", (OPERATOR,))


def seed_sqlite(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        for sql in SEED_SQL:
            connection.execute(
                sql.format(
                    now="'2026-01-01 00:00:00'",
                    later="'2027-06-01 10:00:00.000000'",
                    series=numbers(CUSTOMERS),
                    seats=numbers(PAY_SEATS),
                )
            )


def numbers(count: int) -> str:
    """1 to ``count`` as a SQLite row source with a column ``n``."""
    return (
        "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
        f"WHERE n < {count}) SELECT n FROM s)"
    )


@contextlib.contextmanager
def reference_server(workers: int, conninfo: str, redis_url: str) -> Iterator[tuple[int, int]]:
    port = services.free_port()
    env = {**os.environ, "BENCH_PSYCOPG": conninfo, "BENCH_REDIS": redis_url}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "reference_app:create",
            "--factory",
            "--app-dir",
            str(HERE),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with (
                contextlib.suppress(OSError),
                contextlib.closing(
                    __import__("socket").create_connection(("127.0.0.1", port), 0.2)
                ),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the reference server did not start")
            time.sleep(0.1)
        time.sleep(0.5)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


async def references(
    port: int, watch: Watch, connections: int, seconds: float, names: tuple[str, ...]
) -> dict[str, tuple[loadgen.Tally, float, float]]:
    """Each reference endpoint's tally (of those ``names``), and the server's and the
    machine's CPU seconds."""

    async def get(path: str, method: str = "GET") -> loadgen.Step:
        async def step(connection: loadgen.Connection, _: int) -> str:
            status, _body = await connection.request(method, path)
            return str(status)

        return step

    found: dict[str, tuple[loadgen.Tally, float, float]] = {}
    for name, path, method in (
        ("bare", "/bare", "GET"),
        ("redis", "/redis", "GET"),
        ("psycopg", "/psycopg", "POST"),
    ):
        if name not in names:
            continue
        await loadgen.drive("127.0.0.1", port, connections, await get(path, method), seconds=1)
        with watch.run(name):
            tally = await loadgen.drive(
                "127.0.0.1", port, connections, await get(path, method), seconds=seconds
            )
        found[name] = (tally, watch.cpu, watch.machine)
    return found


def share_time(elapsed: float, *tallies: loadgen.Tally) -> None:
    """Split a run that interleaved several kinds of request between them, in proportion to
    the time their requests were in flight (every connection always has one in flight), so
    that each kind's throughput is its own and not diluted by the others'."""
    busy = sum(sum(tally.latencies) for tally in tallies)
    for tally in tallies:
        tally.elapsed = elapsed * sum(tally.latencies) / busy if busy else elapsed


@attrs.define
class Rush:
    """One rush: its hold requests and payments (each with its share of the run's time),
    each customer's outcome, and when each 201 to a hold arrived (`time.monotonic`)."""

    holds: loadgen.Tally
    pays: loadgen.Tally
    outcomes: loadgen.Tally
    held_at: dict[int, float]
    paid: set[int]  # the customers whose hold was answered 201 (and who went on to pay)
    seconds: float  # from the first request to the last answer


async def rush(
    host: str,
    port: int,
    connections: int,
    seconds: float,
    customers: list[int],
    seats: list[int],
    tokens: dict[int, str],
) -> Rush:
    """Scenario (b)'s rush: every customer, all at once on ``connections``, holds one of
    ``seats`` still thought free (up to three tries), then pays for it. Bounded by its
    customers and by 6 times ``seconds``."""
    open_seats = list(seats)
    holds, pays = loadgen.Tally(), loadgen.Tally()
    held_at: dict[int, float] = {}
    paid: set[int] = set()

    async def race(connection: loadgen.Connection, n: int) -> str:
        user = customers[n]
        for _ in range(3):
            if not open_seats:
                return "no seat left"
            seat = random.choice(open_seats)
            started = time.perf_counter()
            status, body = await connection.request(
                "POST", "/reservations", {"seat_id": seat}, headers(user, tokens[user])
            )
            holds.record(started, str(status))
            if status == 409:
                with contextlib.suppress(ValueError):
                    open_seats.remove(seat)
                continue
            if status != 201:
                return f"hold {status}"
            held_at[seat] = time.monotonic()
            paid.add(user)
            started = time.perf_counter()
            status, _ = await connection.request(
                "POST",
                "/payments",
                {"reservation_id": body["reservation_id"]},
                headers(user, tokens[user]),
            )
            pays.record(started, str(status))
            with contextlib.suppress(ValueError):
                open_seats.remove(seat)
            return f"pay {status}"
        return "gave up"

    started = time.perf_counter()
    outcomes = await loadgen.drive(
        host, port, connections, race, seconds=seconds * 6, limit=len(customers)
    )
    lasted = time.perf_counter() - started
    share_time(lasted, holds, pays)
    return Rush(holds, pays, outcomes, held_at, paid, lasted)


async def join(connection: loadgen.Connection, user: int) -> str:
    status, body = await connection.request("POST", "/queue/tokens", headers=headers(user))
    if status not in (200, 201):
        raise RuntimeError(f"join failed: {status} {body}")
    return str(body["token"])


async def scenarios(
    config: str, port: int, watch: Watch, connections: int, seconds: float, wanted: str
) -> list[Row]:
    """The scenarios whose letters are in ``wanted``; rows without their reference rates (the
    caller adds them)."""
    host = "127.0.0.1"
    groups = {"reads"} | {name for letter in wanted for name in SCENARIO_GROUPS[letter]}
    admitted = [user for name, group in GROUPS.items() if name in groups for user in group]
    tokens: dict[int, str] = {}

    async def admit(connection: loadgen.Connection, n: int) -> str:
        tokens[admitted[n]] = await join(connection, admitted[n])
        return "joined"

    await loadgen.drive(host, port, connections, admit, seconds=600, limit=len(admitted))
    assert len(tokens) == len(admitted), "the setup could not admit every customer"
    setup = loadgen.Connection(host, port)
    [concert] = (await setup.request("GET", "/concerts"))[1]["concerts"]  # the demo
    dates = (
        await setup.request(
            "GET", f"/concerts/{concert['concert_id']}/dates", headers=headers(1, tokens[1])
        )
    )[1]["dates"]
    base = f"/concerts/{concert['concert_id']}/dates"
    seat_ids = {}
    for date in dates:
        seats = (
            await setup.request(
                "GET", f"{base}/{date['date_id']}/seats", headers=headers(1, tokens[1])
            )
        )[1]["seats"]
        seat_ids[date["date_id"]] = [s["seat_id"] for s in seats]
    read_date, rush_date, mixed_date, pay_date = (d["date_id"] for d in dates[:4])
    readers = list(GROUPS["reads"])
    await setup.close()
    rows = []

    async def measured(
        scenario: str,
        step: loadgen.Step,
        *,
        run_seconds: float = seconds,
        limit: int | None = None,
        reference: str | None = None,
        target: float | None = None,
    ) -> None:
        """Drive one kind of request and add its row, with the CPU it cost."""
        with watch.run(scenario):
            tally = await loadgen.drive(
                host, port, connections, step, seconds=run_seconds, limit=limit
            )
        rows.append(
            Row(
                config,
                scenario,
                tally,
                reference,
                target=target,
                server_cpu=watch.cpu,
                machine_cpu=watch.machine,
            )
        )

    # (a) admitted customers reading seat maps
    if "a" in wanted:

        async def read(connection: loadgen.Connection, n: int) -> str:
            user = readers[n % len(readers)]
            status, _ = await connection.request(
                "GET", f"{base}/{read_date}/seats", headers=headers(user, tokens[user])
            )
            return str(status)

        await measured("(a) seat map reads", read, reference="bare", target=0.8)

    # (b) 1,000 customers racing for the 50 seats of one date: hold, then pay
    if "b" in wanted:
        with watch.run("rush"):
            raced = await rush(
                host, port, connections, seconds, list(GROUPS["rush"]), seat_ids[rush_date], tokens
            )
        rows.append(Row(config, "(b) rush: hold requests", raced.holds, "psycopg", target=0.5))
        rows.append(Row(config, f"(b) rush: the {len(raced.pays.latencies)} payments", raced.pays))

    # (c) 10,000 customers join the line (most of them wait), then each polls their status
    if "c" in wanted:
        line = list(LINE)
        line_tokens: dict[int, str] = {}

        async def queue_join(connection: loadgen.Connection, n: int) -> str:
            status, body = await connection.request(
                "POST", "/queue/tokens", headers=headers(line[n])
            )
            if status in (200, 201):
                line_tokens[n] = body["token"]
            return str(status)

        async def queue_poll(connection: loadgen.Connection, n: int) -> str:
            user = line[n]
            status, _ = await connection.request(
                "GET", "/queue/status", headers=headers(user, line_tokens.get(n))
            )
            return str(status)

        for name, step, target in (
            ("(c) queue joins", queue_join, 0.6),
            ("(c) queue status polls", queue_poll, 0.8),
        ):
            await measured(
                name,
                step,
                run_seconds=seconds * 6,
                limit=len(line),
                reference="redis",
                target=target,
            )

    # (d) a mixed steady load
    if "d" in wanted:
        mixed = list(GROUPS["mixed"])
        held: dict[int, list[int]] = {user: [] for user in mixed}
        mixed_seats = seat_ids[mixed_date]

        async def mix(connection: loadgen.Connection, n: int) -> str:
            user = mixed[n % len(mixed)]
            auth = headers(user, tokens[user])
            roll = random.random()
            if roll < 0.6:
                status, _ = await connection.request(
                    "GET", f"{base}/{mixed_date}/seats", headers=auth
                )
            elif roll < 0.7:
                status, body = await connection.request(
                    "POST", "/reservations", {"seat_id": random.choice(mixed_seats)}, auth
                )
                if status == 201:
                    held[user].append(body["reservation_id"])
            elif roll < 0.75 and held[user]:
                status, _ = await connection.request(
                    "DELETE", f"/reservations/{held[user].pop()}", headers=auth
                )
            elif roll < 0.85:
                status, _ = await connection.request(
                    "POST", "/wallet/charges", {"amount": 1_000}, auth
                )
            elif roll < 0.95 and held[user]:
                status, _ = await connection.request(
                    "POST", "/payments", {"reservation_id": held[user].pop()}, auth
                )
                if status == 201:
                    tokens[user] = await join(connection, user)
            else:
                status, _ = await connection.request("GET", "/queue/status", headers=auth)
            return str(status)

        await measured("(d) mixed steady load", mix, reference="bare")

    # (e) customers hold distinct free seats for a while, then pay for what they hold: each
    # at its own throughput
    if "e" in wanted:
        payers = list(GROUPS["pay"])
        free = seat_ids[pay_date]
        reservations: dict[int, int] = {}

        async def hold_free(connection: loadgen.Connection, n: int) -> str:
            user = payers[n]
            status, body = await connection.request(
                "POST", "/reservations", {"seat_id": free[n]}, headers(user, tokens[user])
            )
            if status == 201:
                reservations[n] = body["reservation_id"]
            return str(status)

        async def pay_held(connection: loadgen.Connection, n: int) -> str:
            user = payers[n]
            status, _ = await connection.request(
                "POST",
                "/payments",
                {"reservation_id": reservations[n]},
                headers(user, tokens[user]),
            )
            return str(status)

        await measured(
            "(e) holds on free seats", hold_free, limit=len(payers), reference="psycopg", target=0.5
        )
        holding = sorted(reservations)

        async def pay_next(connection: loadgen.Connection, n: int) -> str:
            return await pay_held(connection, holding[n])

        await measured(
            "(e) payments", pay_next, limit=len(holding), reference="psycopg", target=0.5
        )

    # (f) an operator puts 20,000-seat dates on sale, one request each, one after the other
    if "f" in wanted:
        big_dates: list[int] = []

        async def create_big_date(connection: loadgen.Connection, n: int) -> str:
            status, body = await connection.request(
                "POST",
                f"/admin/concerts/{concert['concert_id']}/dates",
                big_layout(),
                headers(OPERATOR),
            )
            if status == 201:
                big_dates.append(body["date_id"])
            return str(status) if status == 201 else f"{status} {body}"

        with watch.run("(f) create a 20,000-seat date"):
            created = await loadgen.drive(
                host, port, 1, create_big_date, seconds=600, limit=BIG_DATES
            )
        assert big_dates, f"no date was created: {dict(created.statuses)}"
        rows.append(
            Row(
                config,
                f"(f) create a {big_seats():,}-seat date (one request; p50 is its time)",
                created,
                server_cpu=watch.cpu,
                machine_cpu=watch.machine,
            )
        )

    # (g) seat map reads of one 500-seat section of such a date, beside (a)'s of a 50-seat date
    if "g" in wanted:
        section = f"{base}/{big_dates[0]}/seats?section=S{BIG_SECTIONS // 2}"

        async def read_section(connection: loadgen.Connection, n: int) -> str:
            user = readers[n % len(readers)]
            status, _ = await connection.request(
                "GET", section, headers=headers(user, tokens[user])
            )
            return str(status)

        await measured(
            f"(g) seat map reads: one {BIG_ROWS * BIG_SEATS_A_ROW}-seat section of the "
            f"{big_seats():,}-seat date",
            read_section,
            reference="bare",
        )

    # (h) a rush for blocks: BEST_CUSTOMERS admitted customers each ask once, all at once, for
    # the best 2, 3 or 4 seats side by side on one fresh date, until it is full
    if "h" in wanted:
        rows.append(
            await best_available_rush(
                config, host, port, watch, connections, seconds, concert["concert_id"], tokens
            )
        )

    # (i) (b)'s rush on a demo-like date while LISTENERS customers watch its live seat map,
    # against the same rush unwatched
    if "i" in wanted:
        rows.extend(
            await live_seat_map_rush(
                config, host, port, watch, connections, seconds, concert["concert_id"], tokens
            )
        )
    return rows


async def best_available_rush(
    config: str,
    host: str,
    port: int,
    watch: Watch,
    connections: int,
    seconds: float,
    concert_id: int,
    tokens: dict[int, str],
) -> Row:
    """Scenario (h): one best-available request per customer on a date made for it through
    the admin API. Counts 201 and 409 answers apart; checks every 201 is ``quantity`` seats
    side by side in one row of the date, no seat given twice, and that the date's held count
    is what was answered. Anything else (a 5xx, another status, a wrong block) fails the row."""
    operator = loadgen.Connection(host, port)
    status, body = await operator.request(
        "POST",
        f"/admin/concerts/{concert_id}/dates",
        layout(BEST_SECTIONS, BEST_ROWS, BEST_SEATS_A_ROW),
        headers(OPERATOR),
    )
    await operator.close()  # idle through the run, it would outlive the server's keep-alive
    if status != 201:
        raise RuntimeError(f"(h) could not create its date: {status} {body}")
    date_id, seats_total = body["date_id"], body["seats_total"]
    customers = list(GROUPS["best"])
    given: dict[int, int] = {}  # seat id: the customer it went to
    wrong: list[str] = []
    by_quantity: Counter[int] = Counter()
    by_answer: dict[str, loadgen.Tally] = {}  # the latencies of each kind of answer apart

    async def hold_best(connection: loadgen.Connection, n: int) -> str:
        started = time.perf_counter()
        label = await hold_once(connection, n)
        by_answer.setdefault(label, loadgen.Tally()).record(started, label)
        return label

    async def hold_once(connection: loadgen.Connection, n: int) -> str:
        user = customers[n]
        quantity = BEST_QUANTITIES[n % len(BEST_QUANTITIES)]
        status, body = await connection.request(
            "POST",
            "/reservations",
            {"date_id": date_id, "quantity": quantity},
            headers(user, tokens[user]),
        )
        if status != 201:
            return f"{status} {error_code(body)}".strip()
        problem = wrong_block(body, quantity, date_id)
        for held in body["reservations"] if problem is None else ():
            if given.setdefault(held["seat_id"], user) != user:
                problem = f"seat {held['seat_id']} given to {user} and {given[held['seat_id']]}"
        if problem is not None:
            wrong.append(problem)
            return "201 wrong block"
        by_quantity[quantity] += 1
        return "201"

    run_seconds = max(BEST_RUN_SECONDS, seconds * 6)
    with watch.run("(h) best available"):
        tally = await loadgen.drive(
            host, port, connections, hold_best, seconds=run_seconds, limit=len(customers)
        )
    status, sales = await operator.request(
        "GET", f"/admin/concerts/{concert_id}/dates/{date_id}/sales", headers=headers(OPERATOR)
    )
    await operator.close()
    held = sales["held"] if status == 200 else None
    statuses = tally.statuses
    unexpected = {
        label: count
        for label, count in statuses.items()
        if label not in ("201", "409 seats_not_together")
    }
    unasked = len(customers) - len(tally.latencies)
    problems = [f"{count} answered {label}" for label, count in sorted(unexpected.items())]
    problems += wrong[:3]
    if held != len(given):
        problems.append(f"the date holds {held} seats where the 201s gave {len(given)}")
    made = ", ".join(f"{by_quantity[q]:,} of {q}" for q in BEST_QUANTITIES)
    p99 = {label: f", p99 {answers.p99:,.0f} ms" for label, answers in by_answer.items()}
    check = (
        f"201: {statuses['201']:,} ({made}{p99.get('201', '')}); 409 seats_not_together: "
        f"{statuses['409 seats_not_together']:,}{p99.get('409 seats_not_together', '')}; "
        f"date held {len(given):,}/{seats_total:,}"
    )
    if unasked:  # slow, not wrong: the figures stand, but the date did not fill
        check += f"; {unasked:,} customers not served within {run_seconds:.0f} s"
    if problems:
        check = f"FAILED: {'; '.join(problems)}. {check}"
        print(f"{config} (h) best available FAILED: {'; '.join(problems)}", file=sys.stderr)
    return Row(
        config,
        f"(h) rush: best available, {BEST_QUANTITIES[0]} to {BEST_QUANTITIES[-1]} seats "
        f"side by side on a {seats_total:,}-seat date",
        tally,
        "psycopg",
        check=check,
        failed=bool(problems),
        server_cpu=watch.cpu,
        machine_cpu=watch.machine,
    )


@attrs.define
class Listening:
    """`bench/listeners.py` running in a process of its own: the open live seat maps."""

    process: asyncio.subprocess.Process

    async def send(self, message: dict[str, object]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def receive(self, within: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"bench/listeners.py ended ({self.process.returncode})")
        found: dict[str, Any] = json.loads(line)
        return found


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[Listening]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "listeners.py"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**24,  # its last answer, the timed delays, is one long line
    )
    try:
        yield Listening(process)
    finally:
        if process.stdin is not None:
            process.stdin.close()  # if it still waits for a line, it closes its streams and ends
        if process.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 10)  # it closes its streams and ends
        if process.returncode is None:
            process.kill()  # its streams close with it
            await process.wait()


async def request_once(
    host: str,
    port: int,
    method: str,
    path: str,
    body: object = None,
    user: int = OPERATOR,
    queue: str | None = None,
) -> tuple[int, Any]:
    """One request on a connection of its own (one kept between phases would outlive the
    server's keep-alive)."""
    connection = loadgen.Connection(host, port)
    try:
        return await connection.request(method, path, body, headers(user, queue))
    finally:
        await connection.close()


def pooled(tallies: list[loadgen.Tally]) -> loadgen.Tally:
    """Several runs of one kind as one: their answers together over their time together."""
    found = loadgen.Tally()
    for tally in tallies:
        found.latencies.extend(tally.latencies)
        found.statuses.update(tally.statuses)
        found.elapsed += tally.elapsed
    return found


def demo_like_layout() -> dict[str, object]:
    """A date a month ahead, on sale now, like the demo's: section Floor, row A, 50 seats."""
    starts_at = time.strftime("%Y-%m-%dT19:00:00Z", time.gmtime(time.time() + 30 * 86400))
    return {
        "starts_at": starts_at,
        "sections": [
            {"name": "Floor", "price": 50_000, "rows": [{"row": "A", "seats": LIVE_SEATS}]}
        ],
    }


async def live_seat_map_rush(
    config: str,
    host: str,
    port: int,
    watch: Watch,
    connections: int,
    seconds: float,
    concert_id: int,
    tokens: dict[int, str],
) -> list[Row]:
    """Scenario (i): (b)'s rush (1,000 customers for 50 seats, hold then pay) on a fresh
    demo-like date, once with LISTENERS admitted customers reading its live seat map (opened
    before, read throughout by `bench/listeners.py`, closed after) and once without, LIVE_ROUNDS
    times each in alternating order, each rush on a date and with customers of its own. Rows:
    the rush's holds without and with the streams (the server's CPU counted over each rush and
    LIVE_TAIL_SECONDS after it, payments included), the delivery delay from a hold's 201 to the
    first event showing that seat taken at every LIVE_TIMED_EVERY-th listener, and how many
    listeners ended with every change. A 5xx or any unexpected answer, a stream that does not
    open or breaks, or a wrong count of seats sold fails the row."""
    watchers = list(GROUPS["listen"])
    rushers = list(GROUPS["live rush"])
    reader, changer = watchers[:2]
    problems: list[str] = []
    quiet: list[Rush] = []
    loud: list[Rush] = []
    cpu = {False: [0.0, 0.0], True: [0.0, 0.0]}  # streams open: server, machine seconds
    spells = {False: 0.0, True: 0.0}  # streams open: server CPU seconds over the 2-change spells
    opening: list[tuple[float, float]] = []  # seconds to open them all, server CPU seconds
    delays: list[float] = []
    complete: list[str] = []
    missed = 0
    events: list[float] = []  # events a listener got, each rush with streams
    order = [None] + [  # None: the rush to warm up, not counted
        streamed
        for round_no in range(LIVE_ROUNDS)
        for streamed in ((False, True) if round_no % 2 == 0 else (True, False))
    ]
    for k, kind in enumerate(order):
        customers = rushers[:LIVE_RUSH_CUSTOMERS]
        streamed = bool(kind)
        name = "warm-up" if kind is None else "streams" if streamed else "no streams"
        status, body = await request_once(
            host, port, "POST", f"/admin/concerts/{concert_id}/dates", demo_like_layout()
        )
        if status != 201:
            raise RuntimeError(f"(i) could not create its date: {status} {body}")
        date_id = body["date_id"]
        base = f"/concerts/{concert_id}/dates/{date_id}"
        status, body = await request_once(
            host, port, "GET", f"{base}/seats", user=reader, queue=tokens[reader]
        )
        if status != 200:
            raise RuntimeError(f"(i) could not read its date's seats: {status} {body}")
        seat_ids = [seat["seat_id"] for seat in body["seats"]]
        async with contextlib.AsyncExitStack() as stack:
            live = None
            if streamed:
                live = await stack.enter_async_context(listening())
                with watch.run(f"(i) open {LISTENERS} streams"):
                    await live.send(
                        {
                            "host": host,
                            "port": port,
                            "path": f"{base}/seats/events",
                            "listeners": [[token_for(user), tokens[user]] for user in watchers],
                            "timed_every": LIVE_TIMED_EVERY,
                            "concurrency": connections,
                            "open_seconds": 60,
                        }
                    )
                    opened = await live.receive(90)
                opening.append((opened["seconds"], watch.cpu))
                problems += opened["broken"][:3]
                if opened["opened"] != LISTENERS:
                    problems.append(f"{opened['opened']} of {LISTENERS} streams opened")
            if kind is not None:
                with watch.run(f"(i) two changes, {name}"):
                    problems += await hold_and_let_go(host, port, seat_ids[-1], changer, tokens)
                spells[streamed] += watch.cpu
            with watch.run(f"(i) rush, {name}"):
                raced = await rush(host, port, connections, seconds, customers, seat_ids, tokens)
                await asyncio.sleep(LIVE_TAIL_SECONDS)
            if kind is not None:
                cpu[streamed][0] += watch.cpu
                cpu[streamed][1] += watch.machine
                (loud if streamed else quiet).append(raced)
            problems += rush_problems(raced, f"rush {k} ({name})")
            rushers = [user for user in rushers if user not in raced.paid]
            status, sales = await request_once(
                host, port, "GET", f"/admin/concerts/{concert_id}/dates/{date_id}/sales"
            )
            paid = raced.pays.statuses["201"]
            if status != 200 or sales["sold"] != paid:
                problems.append(f"rush {k}: {paid} paid, sales answered {status} {sales}")
            if live is not None:
                status, body = await request_once(
                    host, port, "GET", f"{base}/seats", user=reader, queue=tokens[reader]
                )
                final = {seat["seat_id"]: seat["status"] for seat in body["seats"]}
                await live.send(
                    {
                        "final": final,
                        "held_at": raced.held_at,
                        "settle_seconds": LIVE_SETTLE_SECONDS,
                    }
                )
                seen = await live.receive(LIVE_SETTLE_SECONDS + 60)
                problems += seen["broken"][:3]
                if seen["broken"]:
                    problems.append(f"rush {k}: {len(seen['broken'])} streams broke")
                delays.extend(seen["delays"])
                missed += seen["missed"]
                complete.append(f"{seen['complete']:,}/{seen['listeners']:,}")
                events.append(seen["events"] / seen["listeners"])
    quiet_holds = pooled([r.holds for r in quiet])
    loud_holds = pooled([r.holds for r in loud])
    rushes = f"{LIVE_ROUNDS} rushes of {LIVE_RUSH_CUSTOMERS:,} customers for {LIVE_SEATS} seats"

    def each(rushes: list[Rush]) -> str:
        rates = ", ".join(f"{r.holds.throughput:,.0f}" for r in rushes)
        holds = ", ".join(f"{len(r.holds.latencies)}" for r in rushes)
        lasted = ", ".join(f"{r.seconds * 1000:,.0f}" for r in rushes)
        return f"rushes {rates} holds/s; hold requests {holds}; rushes lasted {lasted} ms"

    def per_hold(server: float, holds: loadgen.Tally) -> float:
        return server / len(holds.latencies) * 1e6 if holds.latencies else 0.0

    quiet_cpu, loud_cpu = per_hold(cpu[False][0], quiet_holds), per_hold(cpu[True][0], loud_holds)
    ordered = sorted(delays)

    def delay(p: float) -> str:
        return f"{ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000:,.0f}"

    delivery = (
        f"201 to event at {LISTENERS // LIVE_TIMED_EVERY} listeners ({len(delays):,} "
        f"deliveries): p50 {delay(0.5)} ms, p99 {delay(0.99)} ms, max {delay(1.0)} ms, "
        f"{sum(d < 0 for d in delays)} before the 201, {missed} never; "
        f"events a listener a rush: {', '.join(f'{e - 2:.1f}' for e in events)} "
        "(and the 2 before it)"
        if delays
        else "no delivery timed"
    )
    changes = 2 * LIVE_ROUNDS  # of each kind
    fan_out = (
        f"one seat held then let go, before each rush: {spells[True] / changes * 1e3:,.0f} ms "
        f"of server CPU a change with the streams open, {spells[False] / changes * 1e3:,.0f} "
        f"without: {(spells[True] - spells[False]) / changes / LISTENERS * 1e6:,.0f} µs a "
        "change a listener"
    )
    loud_check = (
        f"p99 {loud_holds.p99 / quiet_holds.p99:.2f} and server CPU a hold "
        f"{loud_cpu / quiet_cpu:.2f} of no streams; {each(loud)}; {delivery}; listeners "
        f"with every change: {', '.join(complete)}; {LISTENERS:,} streams opened in "
        + ", ".join(f"{s:.1f} s" for s, _ in opening)
        + f" at {sum(c for _, c in opening) / (LISTENERS * len(opening)) * 1e6:,.0f} µs of "
        f"server CPU each; {fan_out}"
        if quiet_holds.p99 and quiet_cpu
        else ""
    )
    if problems:
        print(f"{config} (i) live seat map FAILED: {'; '.join(problems)}", file=sys.stderr)
        loud_check = f"FAILED: {'; '.join(problems)}. {loud_check}"
    return [
        Row(
            config,
            f"(i) rush holds, no streams ({rushes}, payments in the CPU)",
            quiet_holds,
            check=each(quiet),
            failed=bool(problems),
            server_cpu=cpu[False][0],
            machine_cpu=cpu[False][1],
        ),
        Row(
            config,
            f"(i) the same with {LISTENERS:,} live seat maps of the date open",
            loud_holds,
            "no streams",
            quiet_holds.throughput,
            check=loud_check,
            failed=bool(problems),
            server_cpu=cpu[True][0],
            machine_cpu=cpu[True][1],
        ),
    ]


async def hold_and_let_go(
    host: str, port: int, seat: int, user: int, tokens: dict[int, str]
) -> list[str]:
    """``user`` holds ``seat``, then cancels the hold, LIVE_CHANGE_SECONDS apart (the feeds
    poll every 0.25 s: each change is one event); what went wrong, if anything."""
    before, held, after = LIVE_CHANGE_SECONDS
    await asyncio.sleep(before)
    status, body = await request_once(
        host, port, "POST", "/reservations", {"seat_id": seat}, user, tokens[user]
    )
    if status != 201:
        return [f"the hold before a rush answered {status} {body}"]
    await asyncio.sleep(held)
    status, body = await request_once(
        host, port, "DELETE", f"/reservations/{body['reservation_id']}", None, user, tokens[user]
    )
    await asyncio.sleep(after)
    return [] if status == 200 else [f"letting go of the hold answered {status} {body}"]


def rush_problems(raced: Rush, name: str) -> list[str]:
    """What went wrong in a rush: any answer but a hold's 201 or 409 and a payment's 201."""
    found = [
        f"{name}: {count} customers ended {label}"
        for label, count in raced.outcomes.statuses.items()
        if label not in ("pay 201", "no seat left", "gave up")
    ]
    found += [
        f"{name}: {count} holds answered {label}"
        for label, count in raced.holds.statuses.items()
        if label not in ("201", "409")
    ]
    found += [
        f"{name}: {count} payments answered {label}"
        for label, count in raced.pays.statuses.items()
        if label != "201"
    ]
    return found


def error_code(body: object) -> str:
    """The ``error.code`` of an error answer, or "" when it has none."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code", ""))
    return ""


def wrong_block(body: object, quantity: int, date_id: int) -> str | None:
    """What is wrong with a best-available 201 answer, or None: it must be ``quantity`` held
    seats of the date, side by side (consecutive numbers) in one row, ordered by number."""
    if not isinstance(body, dict) or not isinstance(body.get("reservations"), list):
        return f"not a list of reservations: {body!r:.200}"
    held = body["reservations"]
    if len(held) != quantity:
        return f"{len(held)} seats where {quantity} were asked for"
    places = {(r["date_id"], r["section"], r["row"], r["status"]) for r in held}
    numbers = [r["number"] for r in held]
    if places != {(date_id, held[0]["section"], held[0]["row"], "held")}:
        return f"not held in one row of date {date_id}: {sorted(map(str, places))}"
    if numbers != list(range(numbers[0], numbers[0] + quantity)):
        return f"not side by side: numbers {numbers}"
    return None


def big_seats() -> int:
    return BIG_SECTIONS * BIG_ROWS * BIG_SEATS_A_ROW


def big_layout() -> dict[str, object]:
    """A date a month ahead laid out as BIG_SECTIONS sections of BIG_ROWS rows."""
    return layout(BIG_SECTIONS, BIG_ROWS, BIG_SEATS_A_ROW)


def layout(sections: int, rows: int, seats_a_row: int) -> dict[str, object]:
    """A date a month ahead, on sale now: ``sections`` sections of ``rows`` rows, the first
    section the dearest."""
    starts_at = time.strftime("%Y-%m-%dT19:00:00Z", time.gmtime(time.time() + 30 * 86400))
    return {
        "starts_at": starts_at,
        "sections": [
            {
                "name": f"S{s}",
                "price": 10_000 + 1_000 * (sections - s),
                "rows": [{"row": f"R{r}", "seats": seats_a_row} for r in range(rows)],
            }
            for s in range(sections)
        ],
    }


def check_books(config: str, url: str | None, sqlite_path: Path | None) -> str:
    sql = [
        "SELECT count(*) FROM (SELECT seat_id FROM reservations WHERE status = 'paid' "
        "GROUP BY seat_id HAVING count(*) > 1) t",
        "SELECT count(*) FROM reservations r JOIN seats s USING (seat_id) "
        "WHERE r.status = 'paid' AND s.date_id = "
        "(SELECT date_id FROM concert_dates ORDER BY starts_at LIMIT 1 OFFSET 1)",
        "SELECT (SELECT coalesce(sum(balance), 0) FROM wallets) "
        "+ (SELECT coalesce(sum(amount), 0) FROM payments) "
        "- (SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = 'charge')",
        "SELECT count(*) FROM wallets WHERE balance < 0",
    ]
    if url is not None:
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as connection:
            values = [connection.execute(q).fetchone()[0] for q in sql]  # type: ignore[index]
    else:
        assert sqlite_path is not None
        with contextlib.closing(sqlite3.connect(sqlite_path)) as connection:
            values = [connection.execute(q).fetchone()[0] for q in sql]
    double, rush_sold, imbalance, negative = values
    ok = double == 0 and rush_sold <= 50 and imbalance == 0 and negative == 0
    return (
        f"{'OK' if ok else 'VIOLATED'}: rush date sold {rush_sold}/50, seats sold twice {double}, "
        f"money off by {imbalance}, negative balances {negative}"
    )


def measure_config(
    config: str,
    pg_server: str,
    redis_url: str,
    connections: int,
    seconds: float,
    profile_dir: Path | None,
    wanted: str = SCENARIOS,
) -> tuple[list[Row], str]:
    names = tuple(
        name for name in REFERENCES if any(name in SCENARIO_REFERENCES[letter] for letter in wanted)
    )
    workdir = Path(tempfile.mkdtemp(prefix="concert-bench-"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONCERT_JWT_SECRET": SECRET,
        # room for every customer the scenarios admit: the line of (c) waits behind them
        "CONCERT_QUEUE_CAPACITY": str(ADMITTED),
        "CONCERT_SHUTDOWN_GRACE_SECONDS": "0",  # no balancer to wait for between rows
    }
    if "PYTHONPATH" in os.environ:  # to serve other code, e.g. an older checkout's src
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    workers = 1
    with contextlib.ExitStack() as stack:
        service_url = None
        if config == "postgresql+redis":
            service_url = stack.enter_context(services.private_schema(pg_server))
            env |= {
                "CONCERT_DATABASE_URL": service_url,
                "CONCERT_REDIS_URL": redis_url,
                "CONCERT_REDIS_PREFIX": f"bench-{secrets.token_hex(3)}",
            }
            workers = 2
            subprocess.run(
                [sys.executable, "-m", "entrypoints.cli", "migrate"],
                env=env,
                cwd=workdir,
                check=True,
                capture_output=True,
            )
        subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", "seed-demo"],
            env=env,
            cwd=workdir,
            check=True,
            capture_output=True,
        )
        if service_url is not None:
            seed_postgres(service_url)
        else:
            seed_sqlite(workdir / "concert.sqlite3")
        reference_url = stack.enter_context(services.private_schema(pg_server))
        reference_conninfo = (
            make_url(reference_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        asyncio.run(reference_app.prepare(reference_conninfo))

        def measure_references(when: str) -> dict[str, tuple[loadgen.Tally, float, float]]:
            with reference_server(workers, reference_conninfo, redis_url) as (ref_port, pid):
                watch = Watch(pid, f"{config} reference {when}", profile_dir)
                return uvloop.run(references(ref_port, watch, connections, seconds, names))

        before = measure_references("before")
        with services.concert_serve(workdir, env, "--workers", str(workers)) as served:
            port = int(served.url.rsplit(":", 1)[1])
            print(served_code(config, port), file=sys.stderr)
            watch = Watch(served.pid, config, profile_dir)
            rows = uvloop.run(scenarios(config, port, watch, connections, seconds, wanted))
        after = measure_references("after")  # the machine drifts: ratios are to the mean
        mean = {
            name: (before[name][0].throughput + after[name][0].throughput) / 2 for name in before
        }
        rows = [
            attrs.evolve(row, reference_rate=mean[row.reference]) if row.reference in mean else row
            for row in rows
        ]
        reference_rows = [
            Row(config, f"reference: {name}, {when}", tally, server_cpu=cpu, machine_cpu=machine)
            for when, refs in (("before", before), ("after", after))
            for name, (tally, cpu, machine) in refs.items()
        ]
        check = check_books(
            config, service_url, None if service_url else workdir / "concert.sqlite3"
        )
    # the service's database and its log (a line a request): kept only if the run stopped above
    shutil.rmtree(workdir, ignore_errors=True)
    return reference_rows + rows, check


def served_code(config: str, port: int) -> str:
    """Which code is served: where ``entrypoints`` comes from for the service (its
    PYTHONPATH, else the installed package), and whether it answers ``GET /metrics``."""

    async def ask() -> int:
        return (await request_once("127.0.0.1", port, "GET", "/metrics"))[0]

    where = os.environ.get("PYTHONPATH") or "the installed package"
    return f"{config}: serving the code of {where}; GET /metrics answers {uvloop.run(ask())}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", choices=["embedded", "postgresql+redis"])
    parser.add_argument(
        "--scenarios",
        default=SCENARIOS,
        metavar="LETTERS",
        help=f"run only these scenarios, e.g. h (default: {SCENARIOS}; g brings f along)",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="record every run with py-spy into DIR"
    )
    args = parser.parse_args()
    wanted = "".join(letter for letter in SCENARIOS if letter in args.scenarios.lower())
    if not wanted or set(args.scenarios.lower()) - set(SCENARIOS):
        parser.error(f"--scenarios takes letters of {SCENARIOS}")
    if "g" in wanted and "f" not in wanted:  # (g) reads a date that (f) creates
        wanted = "".join(sorted(wanted + "f"))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    ceiling = uvloop.run(loadgen.ceiling(args.connections, 3))
    print(f"load driver ceiling (one process, against a do-nothing server): {ceiling:,.0f} req/s")
    configs = [args.only] if args.only else ["postgresql+redis", "embedded"]
    table = [
        "| configuration | scenario | req/s | p50 ms | p99 ms | errors | server CPU µs/req "
        "| machine CPU µs/req | ratio | target | correctness |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    failed: list[str] = []
    with services.postgres_server() as pg_server, services.redis_server() as redis_url:
        for config in configs:
            rows, check = measure_config(
                config, pg_server, redis_url, args.connections, args.seconds, args.profile, wanted
            )
            table.extend(row.markdown() for row in rows)
            table.append(f"| {config} | books after the run | | | | | | | | | {check} |")
            failed.extend(f"{row.config} {row.scenario}: {row.check}" for row in rows if row.failed)
            print(f"{config} done", file=sys.stderr)
    print("\n".join(table))
    if failed:
        sys.exit("FAILED:\n" + "\n".join(failed))


if __name__ == "__main__":
    main()
