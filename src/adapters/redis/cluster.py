"""Commands to a Redis Cluster: one `RedisLink` per master node, each command sent to the node
that serves the slot of its first key.

The link learns which node serves which of the 16,384 slots (``CLUSTER SLOTS``) from the seed
address at its first command. A ``MOVED`` reply (the slot has moved to another node for good)
sends the command again at once to the node it names, which serves that slot from then on, and
has the whole map learnt again in the background, for other slots have likely moved too.
``ASK`` (the slot is moving and the key has gone already) sends ``ASKING`` and the command to
the named node in one write, and does not change the map; ``TRYAGAIN`` (a command's keys are
split by a slot on the move) sends it again after a short pause. All these are bounded: a
command that is still sent on after `REDIRECTS` redirections or `RETRIES` pauses, or that a
node answers with ``CLUSTERDOWN``, fails with `ConnectionError`, as for an unreachable node,
which `client.translated` turns into the core's `StoreUnavailable`; so does a slot no node
serves. Once redirected, a command has `REDIRECTED_TIMEOUTS` times the link's timeout in all
after the first node's answer (the pauses and the other nodes' answers together) before it
fails with `TimeoutError`, which is translated alike. A node that cannot be reached makes the
link learn the map again (at most once a second, in the background, should a replica have taken
over). A node that has left the map has its connection closed at each map learnt while no
command waits on it (the link itself is kept, should the node come back or a command still hold
it).

A script's keys share one slot (`keys`), so a script runs on one node; it is loaded there
(``EVAL``) when that node does not know it. Commands without keys (``PING``, ``INFO``) go to
one of the masters. The service's line keys share the hash tag ``{line}``: one node carries
the whole line, and the seat-map versions and the attempt counters spread over the others.

`RedisClusterLink` is a `RedisLink` to the adapters (same `call`, `script`, `ping`, `aclose`,
`connections_opened`), so that they and the wiring take either.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
from collections.abc import Sequence
from typing import Any

import attrs
from redis import exceptions as errors

from adapters.redis.link import Arg, RedisAddress, RedisLink, Script

SLOTS = 16384
REDIRECTS = 5  # MOVED and ASK a command may follow
RETRIES = 5  # TRYAGAIN a command may wait out, the pause doubled each time
FIRST_RETRY_PAUSE = 0.02  # seconds
REDIRECTED_TIMEOUTS = 1.0  # a redirected command's time in all, in the link's timeouts
RELEARN_AFTER_FAILURE = 1.0  # seconds between learning the map again for unreachable nodes
KNOWN_SLOTS = 16384  # key names whose slot is kept (then forgotten all at once)
SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}

_EVALS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
_KEYLESS = frozenset(
    {
        "PING", "ECHO", "INFO", "SCRIPT", "FUNCTION", "CLUSTER", "TIME", "CONFIG",
        "CLIENT", "COMMAND", "DBSIZE", "FLUSHALL", "FLUSHDB", "KEYS", "SCAN", "HELLO",
        "AUTH", "LASTSAVE", "MEMORY", "SLOWLOG", "LATENCY", "READONLY", "READWRITE",
    }
)  # fmt: skip
_known_slots: dict[str, int] = {}


def is_cluster_url(url: str) -> bool:
    return url.startswith(tuple(SCHEMES))


def cluster_address(url: str) -> RedisAddress:
    """The seed node of ``redis+cluster://[user:password@]host[:port]`` (or ``rediss+cluster``
    for TLS, with ``rediss://``'s options). Raises `ValueError` for another form, or a
    database other than 0 (a cluster has only that one)."""
    for scheme, plain in SCHEMES.items():
        if url.startswith(scheme):
            address = RedisAddress.from_url(plain + url.removeprefix(scheme))
            break
    else:
        raise ValueError(f"not a redis+cluster:// or rediss+cluster:// URL: {url!r}")
    if address.db != 0:
        raise ValueError(f"a Redis Cluster has only database 0, not {address.db}")
    return address


def key_slot(key: Arg) -> int:
    """The cluster slot of ``key``: CRC16 of the key, or of the text between its first ``{``
    and the first ``}`` after it when that is not empty (its hash tag), modulo 16,384."""
    if isinstance(key, str):  # the service's keys, a few thousand names: kept
        slot = _known_slots.get(key)
        if slot is None:
            if len(_known_slots) >= KNOWN_SLOTS:
                _known_slots.clear()
            slot = _known_slots[key] = _slot(key.encode())
        return slot
    return _slot(_bytes(key))


def command_slot(command: Sequence[Arg]) -> int | None:
    """The slot of a command's first key; `None` for a command without keys. The first key is
    the first argument, but for a script's (``EVAL``, ``EVALSHA``): the first after numkeys."""
    name = command[0]
    name = (name.decode() if isinstance(name, bytes) else str(name)).upper()
    if name in _EVALS:
        return key_slot(command[3]) if int(command[2]) > 0 else None
    if name in _KEYLESS or len(command) < 2:
        return None
    return key_slot(command[1])


def _slot(data: bytes) -> int:
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % SLOTS


class RedisClusterLink(RedisLink):
    """Commands to a Redis Cluster (`call`, `script`), as a `RedisLink` gives them to one
    server. Connects at its first command, in the event loop of the caller; build one per
    process and event loop."""

    def __init__(self, seed: RedisAddress, *, timeout: float = 2.0) -> None:
        super().__init__(seed, timeout=timeout)  # never connects: the nodes' links do
        self._seed = seed
        self._timeout = timeout
        self._nodes: dict[str, RedisLink] = {}  # by host:port
        self._slots: list[RedisLink | None] | None = None  # by slot, once learnt
        self._masters: list[RedisLink] = []
        self._learning: asyncio.Task[None] | None = None
        self._learnt_at = -RELEARN_AFTER_FAILURE
        self._closed = False
        self.maps_learnt = 0
        self.redirected: collections.Counter[str] = collections.Counter()  # MOVED, ASK...

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 2.0) -> RedisClusterLink:
        return cls(cluster_address(url), timeout=timeout)

    @property
    def connections_opened(self) -> int:
        """The connections opened to all nodes."""
        return sum(link.connections_opened for link in getattr(self, "_nodes", {}).values())

    @connections_opened.setter
    def connections_opened(self, value: int) -> None:
        """`RedisLink`'s constructor sets it; the nodes' links count instead."""

    async def call(self, *command: Arg) -> Any:
        return await self._routed(command_slot(command), command)

    def script(self, source: str) -> Script:
        return _ClusterScript(self, source)

    async def call_after(self, first: Sequence[Arg], *command: Arg) -> Any:
        raise NotImplementedError("a cluster link sends ASKING itself, to the node asked")

    async def ping(self) -> None:
        """Every master answers ``PING``: the service's keys are spread over them all. A
        master that does not (failed over, say) has the map learnt again, so that the next
        ping asks the masters as they are."""
        await self._learnt()
        try:
            await asyncio.gather(*(link.call("PING") for link in self._masters))
        except (errors.ConnectionError, errors.TimeoutError):
            self._relearn_soon()
            raise

    async def aclose(self) -> None:
        self._closed = True  # for good: nothing learns or connects again
        learning, self._learning = self._learning, None
        if learning is not None and not learning.done():
            learning.cancel()
            if learning.get_loop() is asyncio.get_running_loop():
                await asyncio.wait((learning,))
        nodes, self._nodes = list(self._nodes.values()), {}
        self._slots, self._masters = None, []
        for link in nodes:
            await link.aclose()

    def node(self, slot: int) -> str | None:
        """The host:port of the node that serves ``slot`` as far as this link knows."""
        link = self._slots[slot] if self._slots is not None else None
        return next((where for where, known in self._nodes.items() if known is link), None)

    async def _routed(
        self, slot: int | None, command: Sequence[Arg], source: str | None = None
    ) -> Any:
        """``command``'s reply from the node that serves ``slot``, following the cluster's
        redirections; ``source``: the script's, to load it on a node that does not know it."""
        slots = self._slots
        if slots is None:
            slots = await self._learnt()
        link = slots[slot] if slot is not None else self._masters[0]
        if link is None:
            raise errors.ConnectionError(f"no node of the Redis Cluster serves slot {slot}")
        try:
            return await link.call(*command)
        except errors.ResponseError as e:  # the command did not run, or its own error
            error = e
        except (errors.ConnectionError, errors.TimeoutError):
            self._relearn_soon()
            raise
        limit = self._timeout * REDIRECTED_TIMEOUTS
        try:
            async with asyncio.timeout(limit):
                return await self._redirected(slot, command, source, link, error)
        except TimeoutError:  # the deadline's: a node's own is `errors.TimeoutError`
            self._relearn_soon()
            raise errors.TimeoutError(
                f"the Redis Cluster did not answer a redirected command within {limit} s"
            ) from None

    async def _redirected(
        self,
        slot: int | None,
        command: Sequence[Arg],
        source: str | None,
        link: RedisLink | None,
        error: errors.ResponseError,
    ) -> Any:
        """After ``link`` answered ``command`` with ``error``: the command sent on as the
        error says (to the named node, again after a pause, or as ``EVAL``), or the error."""
        asking, redirects, retries = False, 0, 0
        while True:
            kind, _, rest = str(error).partition(" ")
            if kind in ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"):
                self.redirected[kind] += 1
            if isinstance(error, errors.NoScriptError) and source is not None:
                command, source = ("EVAL", source, *command[2:]), None  # there, as asked
            elif kind in ("MOVED", "ASK") and link is not None:
                redirects += 1
                if redirects > REDIRECTS:
                    raise errors.ConnectionError(
                        f"the Redis Cluster redirected a command {REDIRECTS} times: {error}"
                    ) from error
                where = rest.partition(" ")[2]
                if where.startswith(":"):  # the node does not know its own address
                    where = f"{_host(link)}{where}"
                link, asking = self._node_at(where), kind == "ASK"
                if kind == "MOVED":
                    if self._slots is not None and slot is not None:
                        self._slots[slot] = link  # the cluster's own word for this slot
                    self._learn_soon()
            elif kind == "TRYAGAIN":
                if retries == RETRIES:
                    raise errors.ConnectionError(
                        f"the Redis Cluster asked {RETRIES} times to try again: {error}"
                    ) from error
                await asyncio.sleep(FIRST_RETRY_PAUSE * 2**retries)
                retries += 1
                slots = await self._learnt()
                link = slots[slot] if slot is not None else self._masters[0]
                asking = False
            elif kind == "CLUSTERDOWN":
                self._relearn_soon()
                raise errors.ConnectionError(f"the Redis Cluster is down: {error}") from error
            else:
                raise error
            if link is None:
                raise errors.ConnectionError(f"no node of the Redis Cluster serves slot {slot}")
            try:
                if asking:
                    return await link.call_after(("ASKING",), *command)
                return await link.call(*command)
            except errors.ResponseError as e:
                error = e
            except (errors.ConnectionError, errors.TimeoutError):
                self._relearn_soon()
                raise

    async def _learnt(self, *, again: bool = False) -> list[RedisLink | None]:
        """The slot map: learnt now if not yet (or ``again``), by one `_learn` that all the
        commands asking meanwhile share."""
        if self._slots is not None and not again:
            return self._slots
        if self._closed:
            raise errors.ConnectionError("the link to the Redis Cluster was closed")
        learning = self._learning
        if learning is None or learning.done():
            learning = self._learning = asyncio.get_running_loop().create_task(self._learn())
        try:
            await asyncio.shield(learning)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller itself is cancelled
            raise errors.ConnectionError("the link to the Redis Cluster was closed") from None
        if self._slots is None:
            raise errors.ConnectionError("the link to the Redis Cluster was closed")
        return self._slots

    def _relearn_soon(self) -> None:
        """Learn the map again in the background, after a failure: at most once a
        `RELEARN_AFTER_FAILURE`."""
        if asyncio.get_running_loop().time() - self._learnt_at >= RELEARN_AFTER_FAILURE:
            self._learn_soon()

    def _learn_soon(self) -> None:
        """Learn the map again in the background, unless that is under way."""
        learning = self._learning
        if self._closed or (learning is not None and not learning.done()):
            return
        learning = self._learning = asyncio.get_running_loop().create_task(self._learn())
        learning.add_done_callback(_retrieved)

    async def _learn(self) -> None:
        """Ask the seed, else each node known, which node serves which slots."""
        self._learnt_at = asyncio.get_running_loop().time()
        seed = f"{self._seed.host}:{self._seed.port}" if self._seed.path is None else ""
        masters = set(map(id, self._masters))
        asked = [seed] if seed else []
        asked += [w for w, link in self._nodes.items() if w != seed and id(link) in masters]
        asked += [w for w, link in self._nodes.items() if w != seed and id(link) not in masters]
        failure: Exception | None = None
        for where in asked:
            link = self._node_at(where)
            try:
                ranges = await link.call("CLUSTER", "SLOTS")
                learnt = self._map(ranges, where.rpartition(":")[0])
            except (errors.ConnectionError, errors.TimeoutError) as e:
                failure = e
                continue
            except (errors.ResponseError, ValueError, TypeError, IndexError) as e:
                # not in cluster mode ("cluster support disabled"), or an answer not a map
                failure = errors.ConnectionError(f"{where} gives no slot map: {e}")
                continue
            self._slots, self._masters = learnt
            self.maps_learnt += 1
            self._close_departed(seed)
            return
        raise errors.ConnectionError(
            f"no node of the Redis Cluster answers (asked {', '.join(asked)}): {failure}"
        )

    def _map(
        self, ranges: list[list[Any]], asked_host: str
    ) -> tuple[list[RedisLink | None], list[RedisLink]]:
        slots: list[RedisLink | None] = [None] * SLOTS
        masters: dict[str, RedisLink] = {}
        for first, last, master, *_replicas in ranges:
            host, port = master[0], master[1]
            where = f"{host if host and host != '?' else asked_host}:{port}"
            link = masters.get(where) or self._node_at(where)
            masters[where] = link
            slots[first : last + 1] = [link] * (last + 1 - first)
        if not masters:
            raise errors.ConnectionError("the Redis Cluster serves no slot")
        return slots, list(masters.values())

    def _close_departed(self, seed: str) -> None:
        """Close the connections of nodes that are neither the seed nor a master of the map,
        but for those a command still waits on (closed at a later map, or at `aclose`)."""
        masters = set(map(id, self._masters))
        for where, link in self._nodes.items():
            if where != seed and id(link) not in masters:
                link.close_if_idle()

    def _node_at(self, where: str) -> RedisLink:
        """The link to the node at host:port, made at first need with the seed's options."""
        if self._closed:
            raise errors.ConnectionError("the link to the Redis Cluster was closed")
        link = self._nodes.get(where)
        if link is None:
            host, _, port = where.rpartition(":")
            address = attrs.evolve(self._seed, host=host.strip("[]"), port=int(port), path=None)
            link = self._nodes[where] = RedisLink(address, timeout=self._timeout)
        return link


class _ClusterScript(Script):
    """A Lua script run on the node that serves its first key's slot, loaded there when that
    node does not know it."""

    def __init__(self, link: RedisClusterLink, source: str) -> None:
        super().__init__(link, source)
        self._cluster = link

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Arg] = ()) -> Any:
        slot = key_slot(keys[0]) if keys else None
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        return await self._cluster._routed(slot, command, self._source)


def _host(link: RedisLink) -> str:
    return link._address.host


def _retrieved(task: asyncio.Task[None]) -> None:
    """A background `_learn` that failed: the commands to the nodes it could not reach fail
    by themselves."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()


def _bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int):
        return b"%d" % arg
    return repr(arg).encode()
