"""Network namespaces as hosts, on one bridge of the lab's own.

Every name the lab gives begins with `PREFIX`, and every address it assigns comes from
`SUBNET`, a private range it uses only when no interface of anyone else's has an address in
it. The bridge has `GATEWAY` in the root namespace (where PostgreSQL, Redis and the lab's
clients are); each host is a namespace with a veth on the bridge and one address.

`remove_leftovers` deletes whatever of `PREFIX` is left: the processes in its namespaces,
the namespaces (their veths go with them) and its links; `leftovers` lists what remains.
`exclusive` lets one lab at a time run, so that what carries the prefix is never another
live lab's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial

import attrs

PREFIX = "chlab"
SUBNET = ipaddress.IPv4Network("10.231.0.0/24")
GATEWAY = SUBNET[1]
BRIDGE = f"{PREFIX}-br"
LOCK_NAME = b"\0concert-hosts-lab"  # an abstract socket: released when its owner dies


class LabError(Exception):
    """The lab cannot go on; the message says why in one line."""


def ip(*args: str, check: bool = True) -> str:
    """``ip ARGS``: its output; raises `LabError` with ip's message when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _json(*args: str) -> list[dict[str, object]]:
    text = ip("-j", *args, check=False).strip()
    found = json.loads(text) if text else []
    return found if isinstance(found, list) else []


def namespaces() -> list[str]:
    """The lab's namespaces (``PREFIX-*``) that exist now."""
    names = [str(entry.get("name", "")) for entry in _json("netns", "list")]
    return sorted(name for name in names if name.startswith(f"{PREFIX}-"))


def links() -> list[str]:
    """The lab's links in the root namespace (the bridge, the hosts' veths)."""
    names = [str(entry.get("ifname", "")) for entry in _json("link", "show")]
    return sorted(name for name in names if name.startswith(f"{PREFIX}-"))


def pids_in(namespace: str) -> list[int]:
    return [int(word) for word in ip("netns", "pids", namespace, check=False).split()]


def kill_everything_in(namespace: str, seconds: float = 10) -> list[int]:
    """SIGKILL every process in ``namespace`` (ours: it is one the lab made) until none is
    left, or ``seconds`` have passed; the pids still there then."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        found = pids_in(namespace)
        if not found or time.monotonic() > deadline:
            return found
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return pids_in(namespace)


def _delete(kind: str, name: str) -> None:
    ip(kind, "delete", name, check=False)


def remove_leftovers() -> list[str]:
    """Delete the processes in the lab's namespaces, the namespaces and the lab's links, each
    step on its own (an ``ip`` that fails or hangs is noted, the next step still runs); what
    could not be removed."""
    problems: list[str] = []

    def step(what: str, action: Callable[[], object]) -> object:
        try:
            return action()
        except (OSError, subprocess.SubprocessError, ValueError, LabError) as e:
            problems.append(f"{what}: {type(e).__name__}: {e}")
            return None

    found = step("namespaces not listed", namespaces)
    for namespace in found if isinstance(found, list) else []:
        stuck = step(f"namespace {namespace} not emptied", partial(kill_everything_in, namespace))
        if stuck:
            problems.append(f"processes {stuck} in namespace {namespace} outlived SIGKILL")
        # not checked: what is left is listed below (a veth goes with its namespace, later)
        step(f"namespace {namespace} not deleted", partial(_delete, "netns", namespace))
    linked = step("links not listed", links)
    for link in linked if isinstance(linked, list) else []:
        step(f"link {link} not deleted", partial(_delete, "link", link))
    left = step("leftovers not listed", leftovers)
    return problems + (left if isinstance(left, list) else [])


def leftovers() -> list[str]:
    """What of the lab's exists: namespaces and links."""
    return [f"namespace {name}" for name in namespaces()] + [f"link {name}" for name in links()]


def check_subnet_is_free() -> None:
    """Raise `LabError` when an interface not of the lab's has an address in `SUBNET`."""
    for entry in _json("-4", "address", "show"):
        name = str(entry.get("ifname", ""))
        if name.startswith(f"{PREFIX}-"):
            continue
        infos = entry.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            address = ipaddress.ip_address(str(info.get("local", "0.0.0.0")))
            if address in SUBNET:
                raise LabError(
                    f"{SUBNET} is in use ({address} on {name}): the lab will not share it"
                )


@contextlib.contextmanager
def exclusive(wait_seconds: float) -> Iterator[None]:
    """Hold the lab's lock (one lab at a time on this machine), waiting for it a while."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + wait_seconds
    try:
        for attempt in range(int(wait_seconds / 0.5) + 2):
            try:
                lock.bind(LOCK_NAME)
                break
            except OSError:
                if attempt == 0:
                    print(f"hosts lab: another one runs; waiting {wait_seconds:.0f} s at most")
            if time.monotonic() > deadline:
                raise LabError(f"another hosts lab is still running after {wait_seconds:.0f} s")
            time.sleep(0.5)
        else:
            raise LabError(f"another hosts lab is still running after {wait_seconds:.0f} s")
        yield
    finally:
        lock.close()


@attrs.frozen
class Namespace:
    """A host: a network namespace with one address on the bridge."""

    name: str
    address: ipaddress.IPv4Address

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]


class Network:
    """The bridge and the namespaces on it, made by `create` and `add`, removed by `remove`."""

    def __init__(self) -> None:
        self.members: list[Namespace] = []

    def create(self) -> None:
        check_subnet_is_free()
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("address", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")

    def add(self, short: str, host_number: int) -> Namespace:
        """The namespace ``PREFIX-short`` with address number ``host_number`` of `SUBNET`."""
        namespace = Namespace(f"{PREFIX}-{short}", SUBNET[host_number])
        veth = namespace.name  # the end on the bridge; the other end is eth0 inside
        ip("netns", "add", namespace.name)
        self.members.append(namespace)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace.name)
        ip("link", "set", veth, "master", BRIDGE, "up")
        inside = ("-n", namespace.name)
        ip(*inside, "address", "add", f"{namespace.address}/{SUBNET.prefixlen}", "dev", "eth0")
        ip(*inside, "link", "set", "eth0", "up")
        ip(*inside, "link", "set", "lo", "up")
        return namespace

    def remove(self) -> list[str]:
        self.members.clear()
        return remove_leftovers()
