"""The lab built and removed: `lab_running` makes the bridge and the namespaces, PostgreSQL and
Redis on the bridge, ``concert migrate``, the hosts, HAProxy, an operator and the scenarios'
dates (through HAProxy) and the customers; afterwards it removes all of it, whatever happened,
Ctrl-C included (a second Ctrl-C waits for the cleanup).

Customers' accounts are made by the project's own sign-up use case directly on PostgreSQL,
with a cheap argon2id hash (the service checks any argon2id hash at the cost the hash names):
hundreds of sign-ups at production cost would take minutes of CPU on this machine. Each one
then logs in through HAProxy, as every other request goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import httpx
import psycopg

from adapters.security import Argon2PasswordHasher
from adapters.sql import SqlDatabase
from concert_domain import usecases
from entrypoints.wiring import build_dependencies
from fault_lab import Customer
from services import ServiceMissing, postgres_bindir

from . import haproxy as lb
from . import netns, stores
from .hosts import Host, concert_command
from .load import Shop, Stage

PASSWORD = "correct horse battery"
PRICE = 50_000
HOLD_SECONDS = 10
QUEUE_ACTIVE_SECONDS = 5
SCHEDULER_INTERVAL = 0.5
READY_WITHIN = 60.0


@attrs.frozen
class Options:
    hosts: int = 3
    workers: int = 1  # uvicorn workers per host
    schedulers: int = 1  # `concert scheduler` processes per host
    customers: int = 300  # who rush, in the first two scenarios
    seats: int = 50  # what they rush for
    seconds: float = 30.0  # the steady load around the rolling restart, at least
    rounds: int = 6  # read-your-writes rounds per customer (one customer per host)
    grace: float = 2.0  # CONCERT_SHUTDOWN_GRACE_SECONDS: longer than HAProxy takes to see 503s
    seed: int = 1
    keep_logs: Path | None = None  # the logs and HAProxy's config are copied there

    @property
    def steady_customers(self) -> int:
        return max(10, self.customers // 5)

    @property
    def queue_capacity(self) -> int:
        """Fewer than rush, so that a line forms; enough for the steady customers."""
        return max(self.customers // 3, self.steady_customers + self.hosts + 5)


def missing() -> str | None:
    """Why the lab cannot run here, in a line; None when it can."""
    if os.geteuid() != 0:
        return "needs root (it makes network namespaces and a bridge)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    if lb.binary() is None:
        return "needs HAProxy 2.6 (apt-get install haproxy)"
    if shutil.which("redis-server") is None:
        return "needs redis-server"
    try:
        postgres_bindir()
    except ServiceMissing as e:
        return f"needs PostgreSQL: {e}"
    return None


@attrs.define
class Lab:
    options: Options
    workdir: Path
    env: dict[str, str]
    postgres: stores.BridgePostgres
    hosts: list[Host]
    haproxy: lb.HAProxy
    admin: dict[str, str] = attrs.Factory(dict)  # the operator's Authorization header
    stages: dict[str, Stage] = attrs.Factory(dict)
    rushing: list[Customer] = attrs.Factory(list)
    steady: list[Customer] = attrs.Factory(list)
    readers: list[Customer] = attrs.Factory(list)  # read-your-writes, one per host
    shop: Shop = attrs.Factory(Shop)
    setup_seconds: float = 0.0
    cleanup_problems: list[str] = attrs.Factory(list)

    def host(self, name: str) -> Host:
        return next(host for host in self.hosts if host.name == name)


@contextlib.contextmanager
def _cleanup_not_interrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while the lab removes what it made."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _step(problems: list[str], what: str, action: Callable[[], object]) -> object:
    """``action()``; whatever it raises is noted in ``problems``, so that the next step runs."""
    try:
        return action()
    except Exception as e:  # a step of the cleanup: every later one runs whatever happens
        problems.append(f"{what}: {type(e).__name__}: {e}")
        return None


def _listed(found: object) -> list[str]:
    return [str(item) for item in found] if isinstance(found, list) else []


def _remove(lab_parts: dict[str, object], workdir: Path, keep: Path | None) -> list[str]:
    """Remove what the lab made, each step on its own: one that fails (or times out) is
    reported and the next still runs."""
    problems: list[str] = []
    for name in ("haproxy", *sorted(k for k in lab_parts if k.startswith("host "))):
        part = lab_parts.get(name)
        if isinstance(part, lb.HAProxy):
            _step(problems, f"{name} did not stop", part.stop)
        elif isinstance(part, Host):
            _step(problems, f"{name} was not killed", part.kill)
    problems += _listed(_step(problems, "namespaces not removed", netns.remove_leftovers))
    for name in ("redis", "postgres"):
        part = lab_parts.get(name)
        if isinstance(part, stores.BridgeRedis | stores.BridgePostgres):
            _step(problems, f"{name} did not stop", part.stop)
    if keep is not None and workdir.exists():
        _step(problems, "logs not kept", lambda: _keep_logs(workdir, keep))
    # the working directory, and what of the lab still runs
    problems += _listed(_step(problems, "files not removed", stores.remove_stale_workdirs))
    for what, left in (("namespaces", netns.leftovers), ("files", stores.stale_workdirs)):
        problems += _listed(_step(problems, f"{what} not listed", left))
    return problems


def _keep_logs(workdir: Path, keep: Path) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    for path in [*workdir.glob("*.log"), *workdir.glob("haproxy.*")]:
        if path.is_file():
            shutil.copy(path, keep / path.name)


@contextlib.contextmanager
def lab_running(options: Options, *, wait_for_lock: float = 120) -> Iterator[Lab]:
    """The lab, built; removed afterwards (`Lab.cleanup_problems` says what could not be)."""
    started = time.monotonic()
    with netns.exclusive(wait_for_lock):
        stale = netns.remove_leftovers() + stores.remove_stale_workdirs()
        if stale:
            raise netns.LabError(f"an earlier lab's leftovers could not be removed: {stale}")
        workdir = Path(tempfile.mkdtemp(prefix=stores.WORKDIR_PREFIX))
        os.chmod(workdir, 0o755)  # PostgreSQL runs as its own user below it
        parts: dict[str, object] = {}
        lab: Lab | None = None
        try:
            lab = _build(options, workdir, parts)
            lab.setup_seconds = time.monotonic() - started
            yield lab
        finally:
            with _cleanup_not_interrupted():
                problems = _remove(parts, workdir, options.keep_logs)
            if lab is not None:
                lab.cleanup_problems = problems


def _build(options: Options, workdir: Path, parts: dict[str, object]) -> Lab:
    network = netns.Network()
    network.create()
    balancer = network.add("lb", 2)
    namespaces = [network.add(f"h{n}", 10 + n) for n in range(1, options.hosts + 1)]
    postgres = stores.BridgePostgres(workdir)
    parts["postgres"] = postgres
    postgres.start()
    redis = stores.BridgeRedis(workdir)
    parts["redis"] = redis
    redis.start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONCERT_DATABASE_URL": postgres.url,
        "CONCERT_REDIS_URL": redis.url,
        "CONCERT_REDIS_PREFIX": netns.PREFIX,
        "CONCERT_JWT_SECRET": secrets.token_urlsafe(48),  # every host signs and checks alike
        "CONCERT_HOLD_SECONDS": str(HOLD_SECONDS),
        "CONCERT_SCHEDULER_INTERVAL_SECONDS": str(SCHEDULER_INTERVAL),
        "CONCERT_QUEUE_CAPACITY": str(options.queue_capacity),
        "CONCERT_QUEUE_ACTIVE_SECONDS": str(QUEUE_ACTIVE_SECONDS),
        "CONCERT_AUTH_ATTEMPTS_PER_ADDRESS": "0",  # every customer comes from the lab's address
        "CONCERT_TRUSTED_PROXIES": str(balancer.address),
        "CONCERT_SHUTDOWN_GRACE_SECONDS": str(options.grace),
        "TMPDIR": str(workdir / "tmp"),  # what the hosts leave there goes with the lab
        **stores.marked(workdir),  # an earlier lab's leftovers are found by it (`stores`)
    }
    (workdir / "tmp").mkdir()
    _command(env, workdir, "migrate")
    _command(env, workdir, "create-admin", "ops@lab.example", stdin=f"{PASSWORD}\n")
    hosts = []
    for n, namespace in enumerate(namespaces, 1):
        host = Host(
            f"h{n}",
            namespace,
            env,
            workdir,
            workers=options.workers,
            schedulers=options.schedulers,
        )
        parts[f"host {host.name}"] = host
        host.start()
        hosts.append(host)
    servers = [(host.name, f"{host.namespace.address}:8000") for host in hosts]
    balancer_process = lb.HAProxy(balancer, servers, workdir)
    parts["haproxy"] = balancer_process
    lab = Lab(options, workdir, env, postgres, hosts, balancer_process)
    asyncio.run(_prepare(lab))
    return lab


def _command(env: dict[str, str], workdir: Path, *args: str, stdin: str = "") -> None:
    done = subprocess.run(
        [*concert_command(), *args],
        env=env,
        cwd=workdir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise netns.LabError(f"concert {args[0]} failed: {done.stderr.strip()[-500:]}")


async def _prepare(lab: Lab) -> None:
    await asyncio.gather(*(host.wait_ready(READY_WITHIN) for host in lab.hosts))
    lab.haproxy.start()
    watch = lb.Watch(lab.haproxy)
    async with watch.running():
        if not await watch.all_up([host.name for host in lab.hosts], 20):
            raise netns.LabError(f"HAProxy does not see every host up: {watch.current}")
    options = lab.options
    people = options.customers + options.steady_customers + options.hosts
    accounts = await _sign_up(lab.postgres.url, people)
    async with httpx.AsyncClient(base_url=lab.haproxy.url, timeout=30) as client:
        lab.admin = {"Authorization": f"Bearer {await _log_in(client, 'ops@lab.example')}"}
        await _log_in_all(client, accounts)
        concert = await client.post(
            "/admin/concerts",
            json={"title": "Hosts Lab", "venue": "10.231.0.0/24"},
            headers=lab.admin,
        )
        concert_id = int(concert.json()["concert_id"])
        sizes = {
            "rush": options.seats,
            "kill": options.seats,
            "rolling": 1000,
            "read-your-writes": 60,
            "lost answer": 10,
        }
        for day, (name, seats) in enumerate(sizes.items(), 30):
            lab.stages[name] = await _stage(lab, client, concert_id, name, seats, day)
    lab.rushing = accounts[: options.customers]
    lab.steady = accounts[options.customers : options.customers + options.steady_customers]
    lab.readers = accounts[options.customers + options.steady_customers :]


async def _sign_up(database_url: str, count: int) -> list[Customer]:
    database = SqlDatabase(database_url, pool_size=4)
    deps = build_dependencies(
        uow=database.unit_of_work,
        passwords=Argon2PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    run = secrets.token_hex(3)
    try:
        made: list[Customer] = []
        for start in range(0, count, 20):
            batch = await asyncio.gather(
                *(
                    usecases.sign_up(f"fan{n}-{run}@lab.example", PASSWORD, deps=deps)
                    for n in range(start, min(count, start + 20))
                )
            )
            made += [Customer(int(a.user_id), a.email) for a in batch]
        return made
    finally:
        await database.dispose()


async def _log_in(client: httpx.AsyncClient, email: str) -> str:
    for _ in range(5):
        answer = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        if answer.status_code == 200:
            return str(answer.json()["access_token"])
        await asyncio.sleep(0.2)
    raise netns.LabError(f"{email} cannot log in: {answer.status_code} {answer.text[:200]}")


async def _log_in_all(client: httpx.AsyncClient, customers: list[Customer]) -> None:
    for start in range(0, len(customers), 30):
        batch = customers[start : start + 30]
        tokens = await asyncio.gather(*(_log_in(client, c.email) for c in batch))
        for customer, token in zip(batch, tokens, strict=True):
            customer.token = token


async def _stage(
    lab: Lab, client: httpx.AsyncClient, concert_id: int, name: str, seats: int, day: int
) -> Stage:
    """A date of ``seats`` seats (rows of at most 100), on sale now."""
    starts = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    rows, letters = [], "ABCDEFGHIJKLMNOPQRST"
    for n in range(0, seats, 100):
        rows.append({"row": letters[n // 100], "seats": min(100, seats - n)})
    spec = {
        "starts_at": (starts + timedelta(days=day)).isoformat(),
        "sections": [{"name": "Floor", "price": PRICE, "rows": rows}],
    }
    made = await client.post(f"/admin/concerts/{concert_id}/dates", json=spec, headers=lab.admin)
    if made.status_code != 201:
        raise netns.LabError(f"the {name} date was refused: {made.text[:300]}")
    date_id = int(made.json()["date_id"])
    async with await psycopg.AsyncConnection.connect(lab.postgres.url, autocommit=True) as db:
        cursor = await db.execute(
            "SELECT seat_id FROM seats WHERE date_id = %s "
            "ORDER BY section_order, row_order, number",
            (date_id,),
        )
        seat_ids = [int(seat_id) for (seat_id,) in await cursor.fetchall()]
    return Stage(name, concert_id, date_id, seat_ids, PRICE)
