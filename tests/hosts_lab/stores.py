"""Throwaway PostgreSQL and Redis in the root namespace, listening on the bridge's address
only, in a working directory of the lab's (``WORKDIR_PREFIX*`` in the temporary directory).

`remove_stale_workdirs` ends what an earlier lab left behind when it was killed before it
could clean up: its PostgreSQL cluster (``pg_ctl stop``), the processes it recorded (`record`,
the pid and its start time) or that carry its `MARKER` (every process the lab starts has
``CONCERT_HOSTS_LAB=<its working directory's name>`` in its environment), then the directory.
No other process is touched, whatever its working directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from services import ServiceMissing, postgres_bindir

from .netns import GATEWAY, SUBNET, LabError

WORKDIR_PREFIX = "concert-hosts-lab-"
MARKER = "CONCERT_HOSTS_LAB"  # in the environment of every process the lab starts
PIDS = "pids"  # the processes the lab started outside its namespaces, with their start times


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def wait_for_port(address: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.2):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise LabError(f"nothing listens on {address}:{port} after {seconds} s")


def _as_postgres() -> list[str]:
    """initdb and pg_ctl refuse root: run them as ``postgres`` then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class BridgePostgres:
    """A fresh cluster in ``workdir/pg``, on the bridge's address, trusting the lab's subnet."""

    def __init__(self, workdir: Path) -> None:
        self.bindir = postgres_bindir()
        self.workdir = workdir
        self.home = workdir / "pg"
        self.data = self.home / "data"
        self.port = 0
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{GATEWAY}:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*_as_postgres(), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **marked(self.workdir)},
        )
        if done.returncode != 0:
            raise LabError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-300:]}")

    def start(self) -> None:
        self.home.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
        initdb = str(self.bindir / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET} trust\n")
        self.port = free_port(str(GATEWAY))
        options = (
            f"-p {self.port} -k {self.home} -c listen_addresses={GATEWAY} -c fsync=off "
            "-c full_page_writes=off -c max_connections=300"
        )
        pg_ctl = str(self.bindir / "pg_ctl")
        log = str(self.home / "log")
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60", "start")
        self.running = True
        with contextlib.suppress(OSError, ValueError, IndexError):  # the postmaster's pid
            record(self.workdir, int((self.data / "postmaster.pid").read_text().split()[0]))

    def stop(self) -> None:
        self.running = False
        stop_cluster(self.bindir, self.data)


def stop_cluster(bindir: Path, data: Path) -> None:
    """An immediate stop: nothing of the cluster is kept."""
    if (data / "postmaster.pid").exists():
        subprocess.run(
            [
                *_as_postgres(),
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )


class BridgeRedis:
    """A ``redis-server`` on the bridge's address, keeping nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceMissing("redis-server not found on PATH; install redis-server")
        self.binary = binary
        self.workdir = workdir
        self.home = workdir / "redis"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{GATEWAY}:{self.port}/0"

    def start(self) -> None:
        self.home.mkdir()
        self.port = free_port(str(GATEWAY))
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                str(GATEWAY),
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.home),
                "--protected-mode",
                "no",
            ],
            cwd=self.home,
            env={**os.environ, **marked(self.workdir)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        record(self.workdir, self.process.pid)
        wait_for_port(str(GATEWAY), self.port, 10)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def marked(workdir: Path) -> dict[str, str]:
    """The environment variable every process the lab starts carries: `MARKER` = the name of
    its working directory."""
    return {MARKER: workdir.name}


def record(workdir: Path, pid: int) -> None:
    """Keep ``pid`` (with its start time, so that a reused pid is not taken for it) in the
    working directory's `PIDS` file, for a later lab to end should this one die first."""
    started = _start_time(pid)
    if started is not None:
        with (workdir / PIDS).open("a") as pids:
            pids.write(f"{pid} {started}\n")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat``, field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _carries_marker(pid: int, value: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER}={value}".encode() in environ.split(b"\0")


def lab_processes(folder: Path) -> list[int]:
    """The live processes of the lab whose working directory is ``folder``: those it recorded
    (`record`, the same start time) and those carrying its `MARKER`; no other."""
    found = set()
    with contextlib.suppress(OSError, ValueError):
        for line in (folder / PIDS).read_text().splitlines():
            pid, started = line.split()
            if _start_time(int(pid)) == started:
                found.add(int(pid))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _carries_marker(int(entry.name), folder.name):
            found.add(int(entry.name))
    found.discard(os.getpid())
    return sorted(found)


def remove_stale_workdirs() -> list[str]:
    """Stop the servers an earlier lab left in its working directory and remove it; what
    could not be removed."""
    problems = []
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")):
        with contextlib.suppress(ServiceMissing, subprocess.TimeoutExpired, OSError):
            stop_cluster(postgres_bindir(), folder / "pg" / "data")
        for _ in range(50):
            pids = lab_processes(folder)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        else:
            problems.append(f"processes {pids} of the lab in {folder} outlived SIGKILL")
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            problems.append(f"directory {folder}")
    return problems


def stale_workdirs() -> list[str]:
    """The lab's working directories that exist, and processes working in them."""
    found = []
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")):
        found.append(f"directory {folder}")
        found += [f"process {pid} of the lab in {folder}" for pid in lab_processes(folder)]
    return found
