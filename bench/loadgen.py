"""A small HTTP/1.1 load driver on asyncio streams: keep-alive connections, one request in
flight per connection, latency per request. Lean on purpose, so that it is not the bottleneck;
`ceiling` measures how many requests per second it can drive at all, against a server that
answers without doing anything."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import attrs


class HttpError(Exception):
    pass


@attrs.define
class Connection:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}",
            f"Content-Length: {len(payload)}",
        ]
        if payload:
            lines.append("Content-Type: application/json")
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await self.reader.readexactly(length) if length else b""
        if not data:
            return status, None
        try:
            return status, json.loads(data)
        except ValueError:  # a body that is not JSON (a server's bare 500): its text
            return status, data.decode(errors="replace")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@attrs.define
class Tally:
    """Latencies and answers of one run."""

    latencies: list[float] = attrs.Factory(list)
    statuses: Counter[str] = attrs.Factory(Counter)
    elapsed: float = 0.0

    def record(self, started: float, label: str) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[label] += 1

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else 0.0

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


Step = Callable[[Connection, int], Awaitable[str]]


async def drive(
    host: str, port: int, connections: int, step: Step, *, seconds: float, limit: int | None = None
) -> Tally:
    """Run ``step`` on ``connections`` keep-alive connections until ``seconds`` pass or
    ``limit`` steps are done; ``step`` returns a label for its outcome."""
    tally = Tally()
    counter = iter(range(limit if limit is not None else 10**12))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        connection = Connection(host, port)
        try:
            while time.perf_counter() < deadline:
                n = next(counter, None)
                if n is None:
                    return
                started = time.perf_counter()
                try:
                    label = await step(connection, n)
                except (OSError, asyncio.IncompleteReadError, HttpError) as e:
                    label = f"transport error: {type(e).__name__}"
                    await connection.close()
                tally.record(started, label)
        finally:
            await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    tally.elapsed = time.perf_counter() - start
    return tally


async def ceiling(connections: int, seconds: float) -> float:
    """Requests per second this driver sustains against a server that does nothing."""
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def get(connection: Connection, _: int) -> str:
        status, _body = await connection.request("GET", "/")
        return str(status)

    async with server:
        tally = await drive("127.0.0.1", port, connections, get, seconds=seconds)
    return tally.throughput
