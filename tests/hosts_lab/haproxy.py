"""HAProxy 2.6 in front of the hosts, in a namespace of its own, configured as a production
deployment would be (`config`), plus what the lab reads of it: the servers' states from its
stats socket (`Watch` records every change with the moment it was seen) and one access-log
line per request (`access_log`), which names the host that served it and how it ended.

Retries: a request that never reached a host (the connection failed) is always safe to send
to another, and is. A request that may have reached one (its connection closed without an
answer, or no answer in time) is sent again only when doing it twice is harmless: a GET, HEAD
or OPTIONS, joining the line (which answers a customer's live token again), or a POST that
carries an ``Idempotency-Key`` to one of the routes that honour it (``/reservations``,
``/payments``, ``/wallet/charges``, ``/admin/reservations/{id}/refund``: the service answers a
repeat with the first answer). Any other POST (a key elsewhere is ignored: an extension, an
admin's creation, a sign-up would run twice), and every DELETE, fails instead of being repeated.

When a host connection HAProxy reused closes before any answer to a request it may not
repeat, HAProxy closes the customer's connection without an answer and without a log line, as
the host itself would have (so that the client may decide to send it again); the lab counts
such a request against the host killed meanwhile (`results`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs

from .netns import Namespace, kill_everything_in
from .stores import marked, record, wait_for_port

PORT = 8080
BACKEND = "concert_hosts"
SERVER_HEADER = "X-Lab-Server"  # the lab's only addition: which host answered
CHECK_SECONDS = 30.0  # `haproxy -c` at most


def binary() -> str | None:
    return shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(path).exists()),
        None,
    )


def config(bind: str, servers: list[tuple[str, str]], stats_socket: Path) -> str:
    """The configuration: ``servers`` are (name, address:port) pairs."""
    lines = "\n".join(f"    server {name} {address}" for name, address in servers)
    return f"""\
global
    log stdout format raw local0 info
    stats socket {stats_socket} mode 600 level admin
    maxconn 4096
    hard-stop-after 10s

defaults
    mode http
    log global
    option forwardfor                 # the service believes it from CONCERT_TRUSTED_PROXIES
    timeout connect 1s
    timeout client 60s
    timeout server 30s                # the live seat map sends a heartbeat every 15 s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 5s
    timeout check 1s
    # accepted at, ms to the request (handshake, idle), host, status, termination state,
    # retries (+: sent to another host), ms active, method, path, X-Request-ID
    log-format "%Ts.%ms %Th %Ti %s %ST %tsc %rc %Ta %HM %HP %[capture.req.hdr(0)]"

frontend concert
    bind {bind}
    http-request capture req.hdr(X-Request-ID) len 128
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 500ms fastinter 250ms downinter 1s fall 2 rise 2
    retries 3
    option redispatch 1               # every retry goes to another host
    retry-on conn-failure empty-response response-timeout
    # a request that may have reached a host is sent again only when that is harmless
    acl harmless_twice method GET HEAD OPTIONS
    acl harmless_twice path /queue/tokens   # joining again answers the caller's live token
    acl keyed req.hdr(Idempotency-Key) -m found
    acl honours_key path /reservations /payments /wallet/charges
    acl honours_key path_reg ^/admin/reservations/[0-9]+/refund$
    http-request disable-l7-retry unless harmless_twice || METH_POST keyed honours_key
    http-after-response set-header {SERVER_HEADER} %s
{lines}
"""


class HAProxy:
    """``haproxy -db`` inside ``namespace``: its access log in ``haproxy.log``, its own
    messages (servers going up and down) in ``haproxy.err``."""

    def __init__(self, namespace: Namespace, servers: list[tuple[str, str]], workdir: Path):
        found = binary()
        if found is None:
            raise RuntimeError("haproxy not found")
        self.binary = found
        self.namespace = namespace
        self.socket = workdir / "haproxy.sock"
        self.config_path = workdir / "haproxy.cfg"
        self.log_path = workdir / "haproxy.log"
        self.config = config(f"{namespace.address}:{PORT}", servers, self.socket)
        self.servers = [name for name, _ in servers]
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = workdir

    @property
    def url(self) -> str:
        return f"http://{self.namespace.address}:{PORT}"

    def start(self) -> None:
        self.config_path.write_text(self.config)
        try:
            checked = subprocess.run(
                [self.binary, "-c", "-q", "-f", str(self.config_path)],
                capture_output=True,
                text=True,
                timeout=CHECK_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"haproxy -c did not finish in {CHECK_SECONDS:.0f} s") from None
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy refuses its configuration: {checked.stderr.strip()}")
        with (
            self.log_path.open("ab") as log,
            (self.workdir / "haproxy.err").open("ab") as errors,
        ):
            self.process = subprocess.Popen(
                self.namespace.argv(self.binary, "-db", "-f", str(self.config_path)),
                cwd=self.workdir,
                env={**os.environ, **marked(self.workdir)},
                stdout=log,
                stderr=errors,
                start_new_session=True,
            )
        record(self.workdir, self.process.pid)
        wait_for_port(str(self.namespace.address), PORT, 10)

    def stop(self) -> None:
        kill_everything_in(self.namespace.name)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)

    async def _ask(self, command: str) -> str:
        """The answer of the stats socket to ``command``."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        try:
            writer.write(f"{command}\n".encode())
            await writer.drain()
            return (await asyncio.wait_for(reader.read(), 2)).decode(errors="replace")
        finally:
            writer.close()

    async def sessions(self) -> dict[int, str]:
        """The customers' connections HAProxy serves now with a host: each one's port on the
        customer's side (``src``) to the host (``srv``)."""
        found = {}
        for line in (await self._ask("show sess")).splitlines():
            fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
            source, server = fields.get("src", ""), fields.get("srv", "")
            port = source.rpartition(":")[2]
            if port.isdigit() and server and server != "<none>":
                found[int(port)] = server
        return found

    async def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it: ``UP``, ``DOWN``, ``UP 1/2`` (going
        down), ``DOWN 1/2`` (coming up)..."""
        text = await self._ask("show stat")
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", "FRONTEND")
        }


@attrs.frozen
class Change:
    at: float  # time.time()
    server: str
    status: str


class Watch:
    """The servers' states, read every `interval` s while it runs; every change kept."""

    interval = 0.05
    lifetime = 3600.0  # seconds a watch runs at most

    def __init__(self, haproxy: HAProxy) -> None:
        self.haproxy = haproxy
        self.current: dict[str, str] = {}
        self.changes: list[Change] = []
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        for _ in range(int(self.lifetime / self.interval)):
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                for server, status in (await self.haproxy.states()).items():
                    if self.current.get(server) != status:
                        self.current[server] = status
                        self.changes.append(Change(time.time(), server, status))
            await asyncio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Watch]:
        self._task = asyncio.create_task(self._poll())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def first(self, server: str, status: str, since: float) -> float | None:
        """When ``server`` was first seen ``status`` at or after ``since`` (time.time())."""
        return next(
            (
                c.at
                for c in self.changes
                if c.server == server and c.status == status and c.at >= since
            ),
            None,
        )

    async def wait_for(
        self, server: str, status: str, since: float, seconds: float
    ) -> float | None:
        """The moment ``server`` is seen ``status`` from ``since`` on, waiting ``seconds`` at
        most."""
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds / self.interval) + 1):
            seen = self.first(server, status, since)
            if seen is not None or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(self.interval)
        return None

    async def all_up(self, servers: list[str], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds / self.interval) + 1):
            if all(self.current.get(server) == "UP" for server in servers):
                return True
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(self.interval)
        return False


@attrs.frozen
class LogLine:
    at: float  # when the request began (time.time())
    server: str
    status: int
    termination: str
    retries: str
    total_ms: int
    method: str
    path: str
    request_id: str

    @property
    def redispatched(self) -> bool:
        return self.retries.startswith("+")


def access_log(path: Path) -> dict[str, LogLine]:
    """The access log's lines by request id (the lab gives every request one)."""
    found: dict[str, LogLine] = {}
    if not path.exists():
        return found
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 10)
        if len(parts) != 11:
            continue
        with contextlib.suppress(ValueError):
            accepted, handshake, idle, server, status, termination, retries = parts[:7]
            total, method, where, request_id = parts[7:]
            waited = max(0, int(handshake)) + max(0, int(idle))
            found[request_id] = LogLine(
                float(accepted) + waited / 1000,
                server,
                int(status),
                termination,
                retries,
                int(total),
                method,
                where,
                request_id,
            )
    return found
