"""A host of the lab: ``concert serve`` and ``concert scheduler`` inside its namespace.

`start` starts them (each in a session of its own, so a Ctrl-C at the lab's terminal reaches
only the lab, which then stops everything itself); `terminate` sends SIGTERM as an operator
stopping the host would; `kill` SIGKILLs every process in the namespace, as a machine that
dies. Their output goes to ``NAME-serve.log`` and ``NAME-scheduler-N.log`` in the lab's
working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .netns import Namespace, kill_everything_in, pids_in
from .stores import record

PORT = 8000


def concert_command() -> list[str]:
    """The ``concert`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("concert")
    return [str(script)] if script.exists() else [sys.executable, "-m", "entrypoints.cli"]


class Host:
    def __init__(
        self,
        name: str,
        namespace: Namespace,
        env: dict[str, str],
        workdir: Path,
        *,
        workers: int,
        schedulers: int,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.env = env
        self.workdir = workdir
        self.workers = workers
        self.schedulers = schedulers
        self.serve: subprocess.Popen[bytes] | None = None
        self.scheduler_processes: list[subprocess.Popen[bytes]] = []
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.namespace.address}:{PORT}"

    def _spawn(self, log_name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.workdir / log_name).open("ab") as log:
            process = subprocess.Popen(
                self.namespace.argv(*concert_command(), *args),
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        record(self.workdir, process.pid)
        return process

    def start(self) -> None:
        self.starts += 1
        self.serve = self._spawn(
            f"{self.name}-serve.log",
            "serve",
            "--host",
            str(self.namespace.address),
            "--port",
            str(PORT),
            "--workers",
            str(self.workers),
            "--no-scheduler",
        )
        self.scheduler_processes = [
            self._spawn(f"{self.name}-scheduler-{n}.log", "scheduler")
            for n in range(1, self.schedulers + 1)
        ]

    async def wait_ready(self, seconds: float) -> float:
        """Seconds until ``/readyz`` answers 200 on the host itself."""
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=1) as client:
            for _ in range(int(seconds / 0.1) + 1):
                if time.monotonic() - started > seconds:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return time.monotonic() - started
                if self.serve is None or self.serve.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM to ``concert serve`` and the schedulers."""
        for process in self._processes():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait_exit(self, seconds: float) -> bool:
        """Whether every process of the host has exited within ``seconds``."""
        deadline = time.monotonic() + seconds
        for process in self._processes():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def kill(self) -> float:
        """The machine dies: SIGKILL to every process in its namespace. The moment
        (time.time()) the signals were sent."""
        moment = self.send_kill(self.pids())
        self.finish_kill()
        return moment

    def pids(self) -> list[int]:
        """The processes in the host's namespace."""
        return pids_in(self.namespace.name)

    def send_kill(self, pids: list[int]) -> float:
        """SIGKILL to ``pids`` at once; the moment (time.time()) the signals were sent."""
        moment = time.time()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return moment

    def finish_kill(self) -> None:
        """After `send_kill`: anything that was starting meanwhile killed, and every process
        of the host waited for."""
        kill_everything_in(self.namespace.name)
        for process in self._processes():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def serve_exited(self) -> bool:
        return self.serve is None or self.serve.poll() is not None

    def exit_codes(self) -> dict[str, int | None]:
        return {
            "serve": None if self.serve is None else self.serve.returncode,
            **{
                f"scheduler {n}": process.returncode
                for n, process in enumerate(self.scheduler_processes, 1)
            },
        }

    def _processes(self) -> list[subprocess.Popen[bytes]]:
        return [*([self.serve] if self.serve else []), *self.scheduler_processes]

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / f"{self.name}-serve.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
