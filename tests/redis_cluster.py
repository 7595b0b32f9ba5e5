"""A throwaway Redis Cluster for the tests: masters (and replicas, if asked) from
``redis-server --cluster-enabled yes`` on free loopback ports (their cluster bus ports too) in
a temporary directory, joined by ``redis-cli --cluster create``; stopped and removed
afterwards."""

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


class ThrowawayCluster:
    """The nodes of a `redis_cluster`: their ports on 127.0.0.1, and a way to kill one."""

    def __init__(self, ports: list[int], processes: list[subprocess.Popen[bytes]]) -> None:
        self.ports = ports
        self._processes = dict(zip(ports, processes, strict=True))

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (it is not started again)."""
        process = self._processes[port]
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def redis_cluster(
    masters: int = 3, *, replicas: int = 0, node_timeout_ms: int = 15_000
) -> Iterator[ThrowawayCluster]:
    """A cluster of ``masters`` masters with ``replicas`` replicas each, every slot served and
    every replica in step with its master; a master is deemed failed after ``node_timeout_ms``
    without an answer (then a replica takes over). Raises `ServiceMissing` without
    redis-server or redis-cli."""
    server, cli = _binary("redis-server"), _binary("redis-cli")
    workdir = Path(tempfile.mkdtemp(prefix="concert-redis-cluster-"))
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        count = masters * (1 + replicas)
        ports = _free_ports(2 * count)
        ports, buses = ports[:count], ports[count:]
        for port, bus in zip(ports, buses, strict=True):
            home = workdir / str(port)
            home.mkdir()
            options = {
                "port": port,
                "cluster-port": bus,
                "bind": "127.0.0.1",
                "cluster-enabled": "yes",
                "cluster-config-file": home / "nodes.conf",
                "cluster-node-timeout": node_timeout_ms,
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
        create = [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
        subprocess.run([*create, "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in ports:
            _until(cli, port, "CLUSTER INFO", "cluster_state:ok")
            if replicas:  # a master with its replicas, or a replica in step with its master
                _until(cli, port, "INFO replication", f"connected_slaves:{replicas}",
                       or_answer="master_link_status:up")  # fmt: skip
        yield ThrowawayCluster(ports, nodes)
    finally:
        _stop(nodes)
        shutil.rmtree(workdir, ignore_errors=True)


def _until(
    cli: str, port: int, command: str, answer: str, seconds: float = 20.0, or_answer: str = ""
) -> None:
    """Wait until the node's answer to ``command`` holds ``answer`` (or ``or_answer``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(port), *command.split()],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if answer in asked.stdout or (or_answer and or_answer in asked.stdout):
            return
        time.sleep(0.05)
    raise RuntimeError(f"Redis Cluster node {port} did not answer {answer} in {seconds:.0f} s")
