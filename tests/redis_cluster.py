"""A throwaway Redis Cluster for the tests: masters from ``redis-server --cluster-enabled yes``
on free loopback ports (their cluster bus ports too) in a temporary directory, joined by
``redis-cli --cluster create``; stopped and removed afterwards."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from services import ServiceMissing, free_port


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServiceMissing(f"{name} not found on PATH; install redis-server (and redis-tools)")
    return found


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports; a few draws each at most."""
    ports: list[int] = []
    for _ in range(10 * count):
        if len(ports) == count:
            return ports
        port = free_port()
        if port not in ports:
            ports.append(port)
    if len(ports) == count:
        return ports
    raise RuntimeError(f"no {count} distinct free ports in {10 * count} draws")


def _stop(nodes: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL every node, then wait for each; one that does not end is not waited for again
    and does not keep the others running."""
    for node in nodes:
        with contextlib.suppress(OSError):
            node.kill()
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=10)


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[list[int]]:
    """A cluster of ``masters`` masters and no replicas, every slot served, as the ports of its
    nodes on 127.0.0.1. Raises `ServiceMissing` without redis-server or redis-cli."""
    server, cli = _binary("redis-server"), _binary("redis-cli")
    workdir = Path(tempfile.mkdtemp(prefix="concert-redis-cluster-"))
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        ports = _free_ports(2 * masters)
        ports, buses = ports[:masters], ports[masters:]
        for port, bus in zip(ports, buses, strict=True):
            home = workdir / str(port)
            home.mkdir()
            options = {
                "port": port,
                "cluster-port": bus,
                "bind": "127.0.0.1",
                "cluster-enabled": "yes",
                "cluster-config-file": home / "nodes.conf",
                "dir": home,
                "save": "",
                "appendonly": "no",
            }
            command = [server]
            for name, value in options.items():
                command += [f"--{name}", str(value)]
            nodes.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in ports:
            _until(cli, port, "PING", "PONG")
        addresses = [f"127.0.0.1:{port}" for port in ports]
        create = [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        subprocess.run([*create, "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in ports:
            _until(cli, port, "CLUSTER INFO", "cluster_state:ok")
        yield ports
    finally:
        _stop(nodes)
        shutil.rmtree(workdir, ignore_errors=True)


def _until(cli: str, port: int, command: str, answer: str, seconds: float = 20.0) -> None:
    """Wait until the node's answer to ``command`` holds ``answer``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(port), *command.split()],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if answer in asked.stdout:
            return
        time.sleep(0.05)
    raise RuntimeError(f"Redis Cluster node {port} did not answer {answer} in {seconds:.0f} s")
