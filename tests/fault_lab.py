"""The faults-under-load lab: the service as production runs it (``concert serve --workers 2``
on PostgreSQL and Redis), a fault proxy in front of each store, customers who race for seats
and pay, and the checks made after each fault.

- `RestartablePostgres`, `OwnRedis`: throwaway servers in a temporary directory, on ports
  fixed for their life, so PostgreSQL can be stopped (fast or immediate) and started again and
  Redis paused (SIGSTOP) and resumed. Never the machine's shared servers.
- `ConcertServer`: ``concert migrate``, ``seed-demo`` and ``serve``; its worker processes.
- `Rush`: customers who join the line, hold seats (mostly the same few front seats), pay with
  an Idempotency-Key (retried with the same key when the answer was lost or 503), cancel or
  abandon holds and top up their wallets; every request timed and classified (`Outcome`).
- `check_stores`: what PostgreSQL and Redis hold afterwards (no seat sold twice, money exact,
  no payment half done, no hold kept past its expiry) against what the customers were told.
- `run_scenario`: one fault while customers rush, from the baseline to the recovery; its
  `Report` says the figures and every problem found.

Everything here binds and connects to 127.0.0.1 only, every loop is bounded in count and time,
and everything started is stopped and removed by the context managers that start it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import psycopg

from adapters.redis import RedisLink, connect
from fault_proxy import Fault, ProxyThread
from services import ServiceMissing, free_port, postgres_bindir

LOOPBACK = "127.0.0.1"
HOLD_SECONDS = 3
SCHEDULER_INTERVAL = 0.2
SEAT_PRICE = 50_000
SEATS_PER_DATE = 1500  # the demo's 50, and more added straight into PostgreSQL
BLOCK = 300  # seats a scenario's customers race for
CLIENT_TIMEOUT = 10.0  # a request still unanswered then is a hang
UNAVAILABLE_WITHIN = 3.0  # "about two seconds", with slack for a busy two-core machine
RECOVERY_WITHIN = 5.0
BEFORE_FAULT = 1.5  # seconds of load before the fault
AFTER_FAULT = 7.0  # seconds of load after it: requests started past RECOVERY_WITHIN must pass
PASSWORD = "correct horse battery"
SKIPPED_LOG_LINES = ("Traceback", "The above", "During handling", "INFO:")
KEEP_LOG_VARIABLE = "CONCERT_FAULTS_KEEP_LOG"  # a path: the server's log is copied there

# answers that are part of racing and paying, not failures
NORMAL_REFUSALS = frozenset(
    {
        "seat_unavailable",
        "hold_limit_reached",
        "insufficient_balance",
        "hold_expired",
        "reservation_not_held",
        "queue_token_invalid",
        "queue_token_not_active",
        "idempotency_key_in_use",
    }
)

OK, REFUSED, UNAVAILABLE, BAD, TIMEOUT, CONNECTION = (
    "ok",
    "4xx",
    "503",
    "bad answer",
    "timeout",
    "connection error",
)


# -- servers ----------------------------------------------------------------------------------


def _wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {seconds} s")


class RestartablePostgres:
    """A throwaway PostgreSQL cluster in a temporary directory, on one port for its life, that
    can be stopped and started again. Commits are synchronous (an acknowledged commit survives
    an immediate stop); fsync is off, which only an operating system crash would notice."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.workdir = Path(tempfile.mkdtemp(prefix="concert-faults-pg-"))
        self.data = self.workdir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            owner = pwd.getpwnam("postgres")
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.running = False

    def url(self, port: int | None = None) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{port or self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=90)

    def create(self) -> None:
        initdb = str(self.bindir / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses={LOOPBACK} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        pg_ctl = str(self.bindir / "pg_ctl")
        log = str(self.workdir / "log")
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast``: backends told to end, a checkpoint; ``immediate``: a crash, recovered
        from at the next start."""
        self.running = False
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class OwnRedis:
    """A throwaway ``redis-server`` on one port for its life; `pause` stops the process
    (SIGSTOP: its sockets stay open, nothing answers) until `resume`."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceMissing("redis-server not found on PATH; install redis-server")
        self.binary = binary
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="concert-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, port: int | None = None) -> str:
        return f"redis://{LOOPBACK}:{port or self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, 10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def remove(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGCONT)
                self.process.kill()
                self.process.wait(timeout=10)
        finally:
            self.process = None
            shutil.rmtree(self.workdir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc; this kernel may lack the
    ``task/*/children`` files, so every process's ``stat`` is read)."""
    found: set[int] = set()
    listed = list(Path(f"/proc/{pid}/task").glob("*/children"))
    for path in listed:
        with contextlib.suppress(OSError):
            found |= {int(word) for word in path.read_text().split()}
    if listed:
        return sorted(found)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # after the command, in parentheses that may hold anything: state, then ppid
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return sorted(found)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ConcertServer:
    """The ``concert`` command in ``workdir`` with ``env``: one-off commands, and ``serve``."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = workdir / "serve.log"
        self.seen_workers: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", *args],
            env=env or self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"concert {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def start(self, workers: int) -> None:
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "entrypoints.cli",
                    "serve",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(self.port),
                    "--workers",
                    str(workers),
                ],
                cwd=self.workdir,
                # no balancer to wait for: a stop drains at once
                env={"CONCERT_SHUTDOWN_GRACE_SECONDS": "0", **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"concert serve did not become ready:\n{self.log_tail()}")
            time.sleep(0.1)
        self.wait_for_workers(workers, 30)

    def workers(self) -> list[int]:
        """The pids of the uvicorn worker processes (children of ``serve`` that multiprocessing
        spawned)."""
        assert self.process is not None
        found = [pid for pid in _children(self.process.pid) if "spawn_main" in _command_line(pid)]
        self.seen_workers.update(found)
        return found

    def wait_for_workers(self, count: int, seconds: float) -> list[int]:
        deadline = time.monotonic() + seconds
        while True:
            found = self.workers()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_since(0).splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            self.seen_workers.update(
                pid for pid in _children(process.pid) if "spawn_main" in _command_line(pid)
            )
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for pid in self.seen_workers:  # a worker left behind by its supervisor
            if _alive(pid) and "spawn_main" in _command_line(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# -- customers --------------------------------------------------------------------------------


@attrs.define(eq=False)
class Customer:
    user_id: int
    email: str
    token: str = ""  # once logged in
    queue_token: str | None = None
    needs_charge: bool = False
    charged: int = 0  # acknowledged charges (200)
    charge_keys: dict[str, int] = attrs.Factory(dict)  # every charge sent: key -> amount
    serial: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def queued(self) -> dict[str, str]:
        return {**self.auth, "X-Queue-Token": self.queue_token or ""}

    def key(self, what: str) -> str:
        self.serial += 1
        return f"{what}-{self.user_id}-{self.serial}-{secrets.token_hex(4)}"


@attrs.frozen
class Paid:
    """A payment a customer was told succeeded (201)."""

    reservation_id: int
    payment_id: int
    seat_id: int
    user_id: int
    amount: int


@attrs.define
class SeatBlock:
    concert_id: int
    date_id: int
    seat_ids: list[int]
    sold: set[int] = attrs.Factory(set)

    def pick(self, rng: random.Random) -> int:
        """Mostly one of the first twenty seats not known to be sold (everyone wants the
        front), else any seat of the block."""
        if rng.random() < 0.7:
            front = []
            for seat in self.seat_ids:
                if seat not in self.sold:
                    front.append(seat)
                    if len(front) == 20:
                        break
            if front:
                return rng.choice(front)
        return rng.choice(self.seat_ids)


@attrs.define
class Shop:
    """What the customers were told, over every scenario."""

    customers: list[Customer]
    probe: Customer
    blocks: list[SeatBlock]
    probe_seats: list[int]
    paid: dict[int, Paid] = attrs.Factory(dict)
    probe_index: int = 0

    def everyone(self) -> list[Customer]:
        return [*self.customers, self.probe]

    def next_probe_seat(self) -> int:
        seat = self.probe_seats[self.probe_index % len(self.probe_seats)]
        self.probe_index += 1
        return seat


# -- requests ---------------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    what: str
    started: float  # time.monotonic()
    seconds: float
    kind: str
    status: int | None = None
    code: str | None = None
    detail: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.seconds

    @property
    def failed(self) -> bool:
        return self.kind not in (OK, REFUSED)


def error_code(response: httpx.Response) -> str | None:
    """The code of an error body ``{"error": {"code", "message"}}``, exactly that shape."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not (isinstance(body, dict) and set(body) == {"error"}):
        return None
    error = body["error"]
    if not (isinstance(error, dict) and set(error) == {"code", "message"}):
        return None
    code, message = error["code"], error["message"]
    if isinstance(code, str) and isinstance(message, str) and message:
        return code
    return None


def classify(response: httpx.Response) -> tuple[str, str | None]:
    status = response.status_code
    if 200 <= status < 300:
        return OK, None
    code = error_code(response)
    if 400 <= status < 500 and code is not None:
        return REFUSED, code
    if status == 503 and code == "unavailable":
        return UNAVAILABLE, code
    return BAD, code


class Recorder:
    """Every request of a scenario, timed and classified; and how many of each are in
    flight."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.notes: list[str] = []
        self._crowds: list[tuple[str, int, asyncio.Event]] = []

    def crowd(self, what: str, count: int) -> asyncio.Event:
        """An event set once ``count`` requests ``what`` are in flight at once."""
        event = asyncio.Event()
        self._crowds.append((what, count, event))
        return event

    async def call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response | None:
        """The answer, or None when there was none (a timeout or a broken connection)."""
        started = time.monotonic()
        self.in_flight[what] += 1
        for crowded, count, event in self._crowds:
            if crowded == what and self.in_flight[what] >= count:
                event.set()
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                response = await client.request(method, path, headers=headers, json=json)
        except (TimeoutError, httpx.TimeoutException) as e:
            self._add(what, started, TIMEOUT, detail=repr(e))
            return None
        except httpx.TransportError as e:
            self._add(what, started, CONNECTION, detail=repr(e))
            return None
        finally:
            self.in_flight[what] -= 1
        kind, code = classify(response)
        detail = response.text[:300] if kind == BAD else ""
        self._add(what, started, kind, response.status_code, code, detail)
        return response

    def _add(
        self,
        what: str,
        started: float,
        kind: str,
        status: int | None = None,
        code: str | None = None,
        detail: str = "",
    ) -> None:
        seconds = time.monotonic() - started
        self.outcomes.append(Outcome(what, started, seconds, kind, status, code, detail))


class Rush:
    """The shop's customers racing for one block of seats and paying, until told to stop."""

    def __init__(
        self,
        shop: Shop,
        client: httpx.AsyncClient,
        recorder: Recorder,
        block: SeatBlock,
        seed: int,
    ) -> None:
        self.shop = shop
        self.client = client
        self.recorder = recorder
        self.block = block
        self.rng = random.Random(seed)
        self.stop = asyncio.Event()

    async def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        json: Any = None,
        what: str | None = None,
    ) -> httpx.Response | None:
        label = what or f"{method} {re.sub(r'/[0-9]+', '/{id}', path)}"
        return await self.recorder.call(
            self.client, method, path, label, headers=headers, json=json
        )

    async def run(self, seconds_at_most: float, cycles_at_most: int = 2000) -> None:
        """Every customer at once, until `stop` is set (or the bounds are reached)."""
        deadline = time.monotonic() + seconds_at_most
        await asyncio.gather(
            *(self._customer(c, deadline, cycles_at_most) for c in self.shop.customers)
        )

    async def _customer(self, customer: Customer, deadline: float, cycles: int) -> None:
        await asyncio.sleep(self.rng.uniform(0, 0.2))
        for _ in range(cycles):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            await self._cycle(customer)
            await self._pause(0.01, 0.06)

    async def _pause(self, low: float, high: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.rng.uniform(low, high)):
                await self.stop.wait()

    async def _cycle(self, c: Customer) -> None:
        if c.queue_token is None:
            await self.join(c)
            if c.queue_token is None:
                return
        if c.needs_charge or self.rng.random() < 0.08:
            await self.charge(c)
        roll = self.rng.random()
        if roll < 0.06:
            await self._seat_map(c)
            return
        if roll < 0.12:
            await self.call("GET", "/wallet", headers=c.auth)
            return
        seat = self.block.pick(self.rng)
        held = await self.call("POST", "/reservations", headers=c.queued, json={"seat_id": seat})
        if held is None or held.status_code != 201:
            if held is not None and held.status_code == 403:
                c.queue_token = None
            return
        reservation_id = int(held.json()["reservation_id"])
        await self._pause(0.05, 0.25)  # the customer looks at the hold before paying
        choice = self.rng.random()
        if choice < 0.12:
            await self.call("DELETE", f"/reservations/{reservation_id}", headers=c.auth)
        elif choice < 0.22:
            pass  # abandoned: the hold lapses and the scheduler sweeps it
        else:
            await self.pay(c, reservation_id, seat)

    async def join(self, c: Customer) -> None:
        joined = await self.call("POST", "/queue/tokens", headers=c.auth)
        if joined is not None and joined.status_code in (200, 201):
            body = joined.json()
            if body["status"] == "active":
                c.queue_token = str(body["token"])

    async def charge(self, c: Customer) -> None:
        """Top up: a big amount when a payment was refused for the balance, else a small one.
        An answer lost or 503 is sent again with the same key, once."""
        if c.needs_charge:
            amount = self.rng.randrange(100_000, 400_000, 1000)
        else:
            amount = self.rng.randrange(1_000, 100_000, 1000)
        key = c.key("charge")
        c.charge_keys[key] = amount
        for _ in range(2):
            charged = await self.call(
                "POST",
                "/wallet/charges",
                headers={**c.auth, "Idempotency-Key": key},
                json={"amount": amount},
            )
            if charged is not None and charged.status_code == 200:
                c.charged += amount
                c.needs_charge = False
                return
            if charged is not None and charged.status_code not in (409, 503):
                return
            await self._pause(0.1, 0.3)

    async def pay(self, c: Customer, reservation_id: int, seat: int) -> None:
        """Pay with an Idempotency-Key; an answer lost, 503 or still in use is sent again with
        the same key (a new key after topping up for a 402), a few times at most."""
        key = c.key("pay")
        for _ in range(4):
            paid = await self.call(
                "POST",
                "/payments",
                headers={**c.queued, "Idempotency-Key": key},
                json={"reservation_id": reservation_id},
            )
            status = None if paid is None else paid.status_code
            if paid is not None and status == 201:
                body = paid.json()
                self.shop.paid[reservation_id] = Paid(
                    reservation_id, int(body["payment_id"]), seat, c.user_id, int(body["amount"])
                )
                self.block.sold.add(seat)
                c.queue_token = None  # paying expires the queue token
                return
            if status == 402:
                c.needs_charge = True
                await self.charge(c)
                key = c.key("pay")  # the 402 is kept under the first key
                continue
            if status == 403:
                c.queue_token = None
                return
            if paid is None or status == 503 or error_code(paid) == "idempotency_key_in_use":
                await self._pause(0.2, 0.4)
                continue
            return  # hold_expired, reservation_not_held...

    async def _seat_map(self, c: Customer) -> None:
        block = self.block
        path = f"/concerts/{block.concert_id}/dates/{block.date_id}/seats"
        answer = await self.call(
            "GET", path, headers=c.queued, what="GET /concerts/{id}/dates/{id}/seats"
        )
        if answer is not None and answer.status_code == 200:
            block.sold |= {s["seat_id"] for s in answer.json()["seats"] if s["status"] == "sold"}
        elif answer is not None and answer.status_code == 403:
            c.queue_token = None

    async def probe(self) -> bool:
        """One customer's whole visit, answered normally: balance, place in line, a hold on a
        seat nobody races for, its cancellation."""
        p = self.shop.probe
        wallet = await self.call("GET", "/wallet", headers=p.auth, what="probe GET /wallet")
        if wallet is None or wallet.status_code != 200:
            return False
        joined = await self.call("POST", "/queue/tokens", headers=p.auth, what="probe join")
        if joined is None or joined.status_code not in (200, 201):
            return False
        body = joined.json()
        if body["status"] != "active":
            return False
        p.queue_token = str(body["token"])
        return await self.hold_and_cancel(self.shop.next_probe_seat(), "probe") is None

    async def hold_and_cancel(self, seat: int, label: str) -> str | None:
        """None when the probe customer could hold ``seat`` and cancel the hold; else what
        came back."""
        p = self.shop.probe
        held = await self.call(
            "POST",
            "/reservations",
            headers=p.queued,
            json={"seat_id": seat},
            what=f"{label} POST /reservations",
        )
        if held is None or held.status_code != 201:
            return "no answer" if held is None else f"{held.status_code} {held.text[:200]}"
        reservation_id = held.json()["reservation_id"]
        cancelled = await self.call(
            "DELETE",
            f"/reservations/{reservation_id}",
            headers=p.auth,
            what=f"{label} DELETE /reservations/{{id}}",
        )
        if cancelled is None or cancelled.status_code != 200:
            return "no answer" if cancelled is None else cancelled.text[:200]
        return None


# -- the lab ----------------------------------------------------------------------------------


@attrs.define
class Lab:
    postgres: RestartablePostgres
    redis: OwnRedis
    pg_proxy: ProxyThread
    redis_proxy: ProxyThread
    server: ConcertServer
    shop: Shop
    prefix: str
    rows: list[Report] = attrs.Factory(list)


def _sign_up(base: str, email: str, charge: int) -> Customer:
    with httpx.Client(base_url=base, timeout=30) as client:
        body = {"email": email, "password": PASSWORD}
        signed = client.post("/auth/signup", json=body)
        assert signed.status_code == 201, signed.text
        login = client.post("/auth/login", json=body)
        assert login.status_code == 200, login.text
        customer = Customer(int(signed.json()["user_id"]), email, login.json()["access_token"])
        key = customer.key("charge")
        customer.charge_keys[key] = charge
        charged = client.post(
            "/wallet/charges",
            json={"amount": charge},
            headers={**customer.auth, "Idempotency-Key": key},
        )
        assert charged.status_code == 200, charged.text
        customer.charged = charge
        return customer


def _add_seats(database_url: str) -> tuple[list[SeatBlock], list[int]]:
    """Seats 51 to `SEATS_PER_DATE` on each demo date (before any server reads the catalog),
    cut into blocks of `BLOCK`; the last two blocks are the probe's."""
    blocks: list[SeatBlock] = []
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO seats (date_id, concert_id, section, section_order, row_label, "
            "row_order, number, price) "
            "SELECT d.date_id, d.concert_id, 'Floor', 0, 'A', 0, n, %s FROM concert_dates d, "
            "generate_series(51, %s) AS n",
            (SEAT_PRICE, SEATS_PER_DATE),
        )
        dates = connection.execute(
            "SELECT date_id, concert_id FROM concert_dates ORDER BY date_id"
        ).fetchall()
        for date_id, concert_id in dates:
            seats = [
                int(seat_id)
                for (seat_id,) in connection.execute(
                    "SELECT seat_id FROM seats WHERE date_id = %s ORDER BY number", (date_id,)
                ).fetchall()
            ]
            for start in range(0, len(seats), BLOCK):
                blocks.append(SeatBlock(concert_id, date_id, seats[start : start + BLOCK]))
    probe_seats = [seat for block in blocks[-2:] for seat in block.seat_ids]
    return blocks[:-2], probe_seats


@contextlib.contextmanager
def lab_running(customers: int) -> Iterator[Lab]:
    """Throwaway PostgreSQL and Redis, a fault proxy in front of each, ``concert serve
    --workers 2`` through the proxies, a catalog and ``customers`` signed up and charged.
    Everything is stopped and removed afterwards, whatever happened."""
    with contextlib.ExitStack() as stack:
        postgres = RestartablePostgres()
        stack.callback(postgres.remove)
        redis_server = OwnRedis()
        stack.callback(redis_server.remove)
        workdir = Path(tempfile.mkdtemp(prefix="concert-faults-"))
        stack.callback(shutil.rmtree, workdir, True)
        keep = os.environ.get(KEEP_LOG_VARIABLE)
        if keep:  # the server's log, for a post-mortem
            stack.callback(lambda: shutil.copy(workdir / "serve.log", keep))
        postgres.create()
        postgres.start()
        redis_server.start()
        pg_proxy = ProxyThread(postgres.port, name="postgres")
        pg_proxy.start()
        stack.callback(pg_proxy.stop)
        redis_proxy = ProxyThread(redis_server.port, name="redis")
        redis_proxy.start()
        stack.callback(redis_proxy.stop)
        prefix = f"faults-{secrets.token_hex(4)}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CONCERT_DATABASE_URL": postgres.url(pg_proxy.port),
            "CONCERT_REDIS_URL": redis_server.url(redis_proxy.port),
            "CONCERT_REDIS_PREFIX": prefix,
            "CONCERT_JWT_SECRET": secrets.token_urlsafe(48),
            "CONCERT_HOLD_SECONDS": str(HOLD_SECONDS),
            "CONCERT_SCHEDULER_INTERVAL_SECONDS": str(SCHEDULER_INTERVAL),
            "CONCERT_QUEUE_CAPACITY": "100000",
            "CONCERT_AUTH_ATTEMPTS_PER_ADDRESS": "100000",
            "CONCERT_HOLD_ATTEMPTS_PER_CUSTOMER": "100000",
        }
        server = ConcertServer(workdir, env)
        direct = {**env, "CONCERT_DATABASE_URL": postgres.url()}
        server.command("migrate", env=direct)
        server.command("seed-demo", env=direct)
        blocks, probe_seats = _add_seats(postgres.url())
        stack.callback(server.stop)
        server.start(workers=2)
        people = [
            _sign_up(server.url, f"fan{n}-{secrets.token_hex(3)}@example.com", 1_000_000)
            for n in range(customers)
        ]
        probe = _sign_up(server.url, f"probe-{secrets.token_hex(3)}@example.com", 1_000_000)
        shop = Shop(people, probe, blocks, probe_seats)
        yield Lab(postgres, redis_server, pg_proxy, redis_proxy, server, shop, prefix)


# -- checks -----------------------------------------------------------------------------------


async def _rows(connection: psycopg.AsyncConnection[Any], query: str) -> list[tuple[Any, ...]]:
    cursor = await connection.execute(query)
    return list(await cursor.fetchall())


async def check_stores(lab: Lab, block: SeatBlock) -> tuple[list[str], dict[str, int]]:
    """What PostgreSQL and Redis hold, read directly (not through the proxies): problems and
    figures."""
    problems: list[str] = []
    figures: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(
        lab.postgres.url(), autocommit=True, connect_timeout=5
    ) as db:

        async def none_of(what: str, query: str) -> None:
            found = await _rows(db, query)
            if found:
                problems.append(f"{what}: {found[:5]}{' ...' if len(found) > 5 else ''}")

        await none_of(
            "a seat with more than one held or paid reservation",
            "SELECT seat_id, array_agg(reservation_id) FROM reservations "
            "WHERE status IN ('held', 'paid') GROUP BY seat_id HAVING count(*) > 1",
        )
        await none_of(
            "a paid reservation without exactly one payment of its price by its customer",
            "SELECT r.reservation_id, count(p.payment_id) FROM reservations r "
            "LEFT JOIN payments p ON p.reservation_id = r.reservation_id "
            "AND p.amount = r.price AND p.user_id = r.user_id "
            "WHERE r.status = 'paid' GROUP BY r.reservation_id HAVING count(p.payment_id) <> 1",
        )
        await none_of(
            "a payment whose reservation is not paid",
            "SELECT p.payment_id, r.status FROM payments p "
            "JOIN reservations r ON r.reservation_id = p.reservation_id "
            "WHERE r.status <> 'paid'",
        )
        await none_of(
            "a payment without exactly one ledger entry of its amount",
            "SELECT p.payment_id, count(l.entry_id) FROM payments p "
            "LEFT JOIN ledger l ON l.payment_id = p.payment_id AND l.kind = 'payment' "
            "AND l.amount = p.amount AND l.user_id = p.user_id "
            "GROUP BY p.payment_id HAVING count(l.entry_id) <> 1",
        )
        await none_of(
            "a ledger payment entry without its payment",
            "SELECT l.entry_id FROM ledger l LEFT JOIN payments p ON p.payment_id = l.payment_id "
            "WHERE l.kind = 'payment' AND p.payment_id IS NULL",
        )
        await none_of(
            "a balance that is not its charges less its payments",
            "SELECT w.user_id, w.balance, "
            "coalesce(sum(l.amount) FILTER (WHERE l.kind IN ('charge', 'refund')), 0) "
            "- coalesce(sum(l.amount) FILTER (WHERE l.kind = 'payment'), 0) "
            "FROM wallets w LEFT JOIN ledger l ON l.user_id = w.user_id "
            "GROUP BY w.user_id, w.balance HAVING w.balance <> "
            "coalesce(sum(l.amount) FILTER (WHERE l.kind IN ('charge', 'refund')), 0) "
            "- coalesce(sum(l.amount) FILTER (WHERE l.kind = 'payment'), 0)",
        )
        await none_of("a negative balance", "SELECT user_id FROM wallets WHERE balance < 0")
        stale = await _rows(
            db,
            "SELECT reservation_id, seat_id, extract(epoch FROM now() - expires_at)::int "
            "FROM reservations WHERE status = 'held' "
            "AND expires_at < now() - interval '2 seconds' ORDER BY expires_at",
        )
        if stale:
            earlier = sum(1 for _, seat, _ in stale if seat not in block.seat_ids)
            problems.append(
                f"{len(stale)} holds left 'held' more than 2 s past their expiry (the sweep "
                f"runs every {SCHEDULER_INTERVAL} s), {earlier} of them from earlier faults; "
                "(reservation, seat, seconds past expiry): "
                + ", ".join(str(row) for row in stale[:5])
            )
        # against what the customers were told
        paid_rows = await _rows(
            db,
            "SELECT p.reservation_id, p.payment_id, r.seat_id, p.user_id, p.amount, r.status "
            "FROM payments p JOIN reservations r ON r.reservation_id = p.reservation_id",
        )
        stored = {int(row[0]): row for row in paid_rows}
        for told in lab.shop.paid.values():
            row = stored.get(told.reservation_id)
            if row is None or (int(row[1]), int(row[2]), int(row[3]), int(row[4]), row[5]) != (
                told.payment_id,
                told.seat_id,
                told.user_id,
                told.amount,
                "paid",
            ):
                problems.append(f"a payment acknowledged with 201 is not stored as told: {told}")
        charges = dict(
            await _rows(
                db,
                "SELECT user_id, sum(amount) FROM ledger WHERE kind = 'charge' GROUP BY user_id",
            )
        )
        for c in lab.shop.everyone():
            applied = int(charges.get(c.user_id, 0))
            sent = sum(c.charge_keys.values())
            if not c.charged <= applied <= sent:
                problems.append(
                    f"customer {c.user_id}: charges acknowledged {c.charged:,}, "
                    f"in the ledger {applied:,}, sent {sent:,} (distinct keys)"
                )
        [(sold, revenue)] = await _rows(
            db, "SELECT count(*), coalesce(sum(amount), 0) FROM payments"
        )
        figures["sold"], figures["revenue"] = int(sold), int(revenue)
        # a seat whose every hold lapsed at least a second ago must be free to hold again
        seats = ",".join(str(seat) for seat in block.seat_ids)
        lapsed = await _rows(
            db,
            f"SELECT seat_id FROM reservations WHERE seat_id IN ({seats}) GROUP BY seat_id "
            "HAVING bool_and(status IN ('expired', 'cancelled') OR status = 'held') "
            "AND max(expires_at) < now() - interval '1 second' "
            "ORDER BY max(expires_at) DESC LIMIT 3",
        )
    figures["lapsed seats tried"] = len(lapsed)
    problems += await _holdable(lab, block, [int(seat) for (seat,) in lapsed])
    problems += await _redis_timers(lab)
    return problems, figures


async def _holdable(lab: Lab, block: SeatBlock, seats: list[int]) -> list[str]:
    problems = []
    recorder = Recorder()
    async with httpx.AsyncClient(base_url=lab.server.url, timeout=CLIENT_TIMEOUT) as client:
        rush = Rush(lab.shop, client, recorder, block, seed=0)
        if seats and lab.shop.probe.queue_token is None:
            await rush.join(lab.shop.probe)
        for seat in seats:
            refused = await rush.hold_and_cancel(seat, "lapsed")
            if refused is not None:
                problems.append(f"seat {seat}, whose holds all lapsed, cannot be held: {refused}")
    return problems


async def _redis_timers(lab: Lab) -> list[str]:
    """Every hold timer in Redis lapses by itself, no later than a hold's lifetime."""
    problems = []
    link: RedisLink = connect(lab.redis.url())
    try:
        cursor, keys = "0", []
        for _ in range(1000):
            cursor, batch = await link.call(
                "SCAN", cursor, "MATCH", f"{lab.prefix}:{{line}}:hold:*", "COUNT", 1000
            )
            keys += batch
            if cursor == "0":
                break
        for key in keys:
            ttl = await link.call("PTTL", key)
            if ttl == -1 or ttl > HOLD_SECONDS * 1000 + 1000:
                problems.append(f"hold timer {key} lapses in {ttl} ms")
    finally:
        await link.aclose()
    return problems


# -- scenarios --------------------------------------------------------------------------------

FaultStep = Callable[[Lab, Recorder], Awaitable[float]]


@attrs.frozen
class Scenario:
    """A fault: ``begin`` starts it and returns the moment it began (time.monotonic()); it
    lasts ``seconds``; ``end`` ends it and returns the moment it ended."""

    name: str
    begin: FaultStep
    end: FaultStep
    seconds: float
    # a worker killed mid-request breaks the connections it was serving
    connection_errors_expected: bool = False


@attrs.define
class Report:
    name: str
    outcomes: list[Outcome]
    fault_start: float
    fault_end: float
    recovery: float | None
    store_problems: list[str]
    figures: dict[str, int]
    notes: list[str] = attrs.Factory(list)
    connection_errors_expected: bool = False

    def during(self, outcome: Outcome) -> bool:
        return outcome.ended >= self.fault_start and outcome.started <= self.fault_end

    @property
    def counts(self) -> collections.Counter[str]:
        return collections.Counter(o.kind for o in self.outcomes)

    @property
    def worst_failure(self) -> float:
        failed = [o.seconds for o in self.outcomes if o.kind == UNAVAILABLE]
        return max(failed, default=0.0)

    @property
    def worst_answer(self) -> float:
        return max((o.seconds for o in self.outcomes if o.status is not None), default=0.0)

    @property
    def payments(self) -> int:
        return sum(1 for o in self.outcomes if o.what == "POST /payments" and o.status == 201)

    @property
    def problems(self) -> list[str]:
        found = []

        def some(outcomes: list[Outcome]) -> str:
            shown = "; ".join(
                f"{o.what} -> {o.status or o.kind} {o.code or ''} after {o.seconds:.2f} s "
                f"(t{o.started - self.fault_start:+.2f} s) {o.detail}"
                for o in outcomes[:5]
            )
            return f"{len(outcomes)}: {shown}"

        bad = [o for o in self.outcomes if o.kind == BAD]
        if bad:
            found.append(f"answers other than 2xx, 4xx or 503 unavailable {some(bad)}")
        hung = [o for o in self.outcomes if o.kind == TIMEOUT]
        if hung:
            found.append(f"requests unanswered after {CLIENT_TIMEOUT} s {some(hung)}")
        slow = [
            o for o in self.outcomes if o.kind == UNAVAILABLE and o.seconds > UNAVAILABLE_WITHIN
        ]
        if slow:
            found.append(f"503s later than {UNAVAILABLE_WITHIN} s {some(slow)}")
        broken = [o for o in self.outcomes if o.kind == CONNECTION]
        if self.connection_errors_expected:  # only requests in flight at the kill
            broken = [
                o
                for o in broken
                if not (o.started <= self.fault_start + 0.5 and o.ended >= self.fault_start)
            ]
        if broken:
            found.append(f"broken connections {some(broken)}")
        odd = [o for o in self.outcomes if o.kind == REFUSED and o.code not in NORMAL_REFUSALS]
        if odd:
            found.append(f"refusals that racing does not explain {some(odd)}")
        early = [o for o in self.outcomes if o.failed and o.ended < self.fault_start]
        if early:
            found.append(f"failures before the fault {some(early)}")
        late = [
            o for o in self.outcomes if o.failed and o.started >= self.fault_end + RECOVERY_WITHIN
        ]
        if late:
            found.append(f"failures {RECOVERY_WITHIN} s and more after the fault {some(late)}")
        if self.recovery is None or self.recovery > RECOVERY_WITHIN:
            found.append(f"the probe did not pass within {RECOVERY_WITHIN} s: {self.recovery}")
        return found + self.store_problems + [n for n in self.notes if n.startswith("PROBLEM")]

    def row(self) -> str:
        counts = self.counts
        failed_during = sum(1 for o in self.outcomes if o.failed and self.during(o))
        recovery = "never" if self.recovery is None else f"{self.recovery:.2f}"
        return (
            f"| {self.name} | {len(self.outcomes)} | {counts[OK]} | {counts[REFUSED]} | "
            f"{counts[UNAVAILABLE]} | {counts[CONNECTION]} | {counts[TIMEOUT] + counts[BAD]} | "
            f"{failed_during} | {self.worst_failure:.2f} | {self.worst_answer:.2f} | "
            f"{recovery} | {self.payments} | {'ok' if not self.problems else 'FAILED'} |"
        )


TABLE_HEAD = (
    "| fault | requests | 2xx | 4xx | 503 | conn. errors | timeouts + other | failed in fault "
    "| worst 503 s | worst answer s | recovery s | paid | invariants |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


async def run_scenario(lab: Lab, scenario: Scenario, seed: int) -> Report:
    """Customers rush for a fresh block of seats; after `BEFORE_FAULT` s the fault begins,
    lasts, ends; a probe measures the recovery; the rush goes on `AFTER_FAULT` s past the
    end; then the stores are checked."""
    block = lab.shop.blocks.pop(0)
    recorder = Recorder()
    log_offset = lab.server.log_size()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=lab.server.url, timeout=CLIENT_TIMEOUT, limits=limits
    ) as client:
        rush = Rush(lab.shop, client, recorder, block, seed)
        waited = time.monotonic()
        for _ in range(100):  # an earlier fault may still be felt
            if await rush.probe():
                break
            if time.monotonic() - waited > 20:
                raise AssertionError(f"the service is not healthy before {scenario.name}")
            await asyncio.sleep(0.2)
        if len(recorder.outcomes) > 4:
            first = next((o for o in recorder.outcomes if o.kind != OK), "a token not active")
            recorder.notes.append(
                f"the service answered normally only {time.monotonic() - waited:.1f} s after "
                f"this test began (an earlier fault still felt): {first}"
            )
        recorder.outcomes.clear()
        longest = BEFORE_FAULT + scenario.seconds + AFTER_FAULT + 30
        load = asyncio.create_task(rush.run(seconds_at_most=longest))
        healed = True
        try:
            await asyncio.sleep(BEFORE_FAULT)
            healed = False
            fault_start = await scenario.begin(lab, recorder)
            await asyncio.sleep(max(0.0, scenario.seconds - (time.monotonic() - fault_start)))
            fault_end = await scenario.end(lab, recorder)
            healed = True
            recovery = None
            for _ in range(100):
                if await rush.probe():
                    recovery = time.monotonic() - fault_end
                    break
                if time.monotonic() - fault_end > 3 * RECOVERY_WITHIN:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(max(0.0, fault_end + AFTER_FAULT - time.monotonic()))
        finally:
            rush.stop.set()
            if not healed:  # something failed mid-fault: end the fault all the same
                await scenario.end(lab, recorder)
            await load
    await asyncio.sleep(SCHEDULER_INTERVAL * 3)
    store_problems, figures = await check_stores(lab, block)
    report = Report(
        scenario.name,
        list(recorder.outcomes),
        fault_start,
        fault_end,
        recovery,
        store_problems,
        figures,
        notes=list(recorder.notes),
        connection_errors_expected=scenario.connection_errors_expected,
    )
    logged = lab.server.log_since(log_offset)
    answered = [o for o in report.outcomes if o.status is not None]
    if answered:
        slowest = max(answered, key=lambda o: o.seconds)
        report.notes.append(
            f"slowest answer: {slowest.what} -> {slowest.status} {slowest.code or ''} after "
            f"{slowest.seconds:.2f} s (started at t{slowest.started - fault_start:+.2f} s)"
        )
    report.notes += log_summary(logged)
    tracebacks = traceback_summary(logged)
    if tracebacks is not None:
        report.notes.append(tracebacks)
    return report


def log_summary(logged: str, most: int = 5) -> list[str]:
    """The server's messages (but tracebacks and uvicorn's INFO), each kind with how many
    times it came, most frequent first."""
    kinds: collections.Counter[str] = collections.Counter()
    for line in logged.splitlines():
        if not line or line[0].isspace() or line.startswith(SKIPPED_LOG_LINES):
            continue
        kinds[re.sub(r"0x[0-9a-f]+|\d+", "N", line)[:160]] += 1
    return [f"log: {count} x {kind}" for kind, count in kinds.most_common(most)]


def traceback_summary(logged: str) -> str | None:
    """What the server's tracebacks say, in a line: where, and what was raised."""
    count = logged.count("Traceback (most recent call last)")
    if not count:
        return None
    lines = logged.splitlines()
    where = collections.Counter(line for line in lines if line.startswith("unexpected error"))
    raised = collections.Counter(
        line[:120] for line in lines if re.match(r"^([A-Za-z_]\w*\.)+[A-Za-z_]\w*(:|$)", line)
    )
    return (
        f"PROBLEM: the server logged {count} tracebacks: {dict(where)}; "
        f"exceptions in them: {dict(raised)}"
    )


# -- faults -----------------------------------------------------------------------------------


def proxy_fault(which: str, fault: Fault, latency: float = 0.0) -> FaultStep:
    async def step(lab: Lab, recorder: Recorder) -> float:
        proxies = {"postgres": [lab.pg_proxy], "redis": [lab.redis_proxy]}
        proxies["both"] = proxies["postgres"] + proxies["redis"]
        moment = time.monotonic()
        for proxy in proxies[which]:
            await asyncio.to_thread(proxy.set_fault, fault, latency=latency)
        return moment

    return step


def postgres_stop(mode: str) -> FaultStep:
    async def step(lab: Lab, recorder: Recorder) -> float:
        moment = time.monotonic()
        await asyncio.to_thread(lab.postgres.stop, mode)
        return moment

    return step


async def postgres_start(lab: Lab, recorder: Recorder) -> float:
    await asyncio.to_thread(lab.postgres.start)
    return time.monotonic()


async def redis_pause(lab: Lab, recorder: Recorder) -> float:
    lab.redis.pause()
    return time.monotonic()


async def redis_resume(lab: Lab, recorder: Recorder) -> float:
    lab.redis.resume()
    return time.monotonic()


async def kill_worker_mid_payment(lab: Lab, recorder: Recorder) -> float:
    """SIGKILL one of the two workers at a moment when payments are in flight (waiting for
    three at once, a few seconds at most)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await recorder.crowd("POST /payments", 3).wait()
    in_flight = recorder.in_flight["POST /payments"]
    workers = lab.server.workers()
    assert len(workers) == 2, f"expected two workers, found {workers}"
    victim = random.Random(len(recorder.outcomes)).choice(workers)
    os.kill(victim, signal.SIGKILL)
    moment = time.monotonic()
    recorder.notes.append(f"killed worker {victim} with {in_flight} payments in flight")
    return moment


async def worker_replaced(lab: Lab, recorder: Recorder) -> float:
    return time.monotonic()
