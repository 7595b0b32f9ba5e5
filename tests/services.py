"""Real servers for the integration tests.

PostgreSQL comes from ``CONCERT_TEST_DATABASE_URL`` when it is set; otherwise a throwaway
cluster is made from the local binaries in a temporary directory, on a free loopback port, and
removed afterwards. Either way the tests work in a schema of their own that is dropped at the
end, so a shared server is left as it was found.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import attrs
import psycopg
from sqlalchemy.engine import make_url

from adapters.redis import RedisLink

DATABASE_VARIABLE = "CONCERT_TEST_DATABASE_URL"


class ServiceMissing(Exception):
    """A server the integration tests need is not installed here."""


def missing(reason: str) -> NoReturn:
    """Skip loudly for want of a server; under CI=true, fail instead."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"CI needs the integration services: {reason}", pytrace=False)
    pytest.skip(f"INTEGRATION TESTS SKIPPED: {reason}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        raise ServiceMissing(
            "PostgreSQL server binaries not found (no initdb on PATH or in "
            "/usr/lib/postgresql/*/bin); install postgresql or set " + DATABASE_VARIABLE
        )
    return Path(candidates[0]).parent


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh cluster on a free port, as a ``postgresql://`` URL; stopped and removed after."""
    bindir = postgres_bindir()
    workdir = Path(tempfile.mkdtemp(prefix="concert-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = workdir / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(workdir / "log"),
            "-w",
            "start",
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    url = os.environ.get(DATABASE_VARIABLE)
    if url:
        yield url
    else:
        with throwaway_postgres() as url:
            yield url


@contextlib.contextmanager
def private_schema(server_url: str) -> Iterator[str]:
    """A schema of our own on the server, as a SQLAlchemy URL whose search_path points at it;
    dropped with everything in it afterwards."""
    name = f"concert_test_{secrets.token_hex(6)}"
    plain = make_url(server_url).set(drivername="postgresql")
    conninfo = plain.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield plain.set(
            drivername="postgresql+psycopg",
            query={**plain.query, "options": f"-csearch_path={name}"},
        ).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


REDIS_VARIABLE = "CONCERT_TEST_REDIS_URL"


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port that can be killed and restarted
    on the same port (the fault tests do)."""

    def __init__(self, *options: str) -> None:
        self.options = options  # more redis-server options, e.g. ("--requirepass", "secret")
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceMissing(
                "redis-server not found on PATH; install redis-server or set " + REDIS_VARIABLE
            )
        self.binary = binary
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="concert-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):  # up to 5 s
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.1),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


async def redis_keys_matching(redis: RedisLink, pattern: str) -> list[str]:
    """Every key matching ``pattern`` (SCAN, never KEYS: the server may be shared)."""
    found, cursor = [], "0"
    while True:
        cursor, batch = await redis.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        found.extend(batch)
        if cursor == "0":
            return found


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get(REDIS_VARIABLE)
    if url:
        yield url
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@attrs.frozen
class Served:
    """A running ``concert serve``: where it answers, and its process (the workers are its
    children)."""

    url: str
    pid: int


@contextlib.contextmanager
def concert_serve(cwd: Path, env: dict[str, str], *args: str) -> Iterator[Served]:
    """``concert serve`` on a free loopback port, its output in ``cwd/serve.log``; yields it
    once ``/readyz`` answers 200, and stops it afterwards."""
    import sys

    import httpx

    port = free_port()
    log_path = cwd / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "serve", "--port", str(port), *args],
            cwd=cwd,
            env={"CONCERT_SHUTDOWN_GRACE_SECONDS": "0", **env},  # no balancer to wait for
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"concert serve did not become ready:\n{log_path.read_text()}"
                    )
                time.sleep(0.1)
            yield Served(base, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
